"""Labels that arrive late and out of order; unknown request ids; business events."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

import loopline as ll
from loopline.core.context import Context
from loopline.monitoring.prediction_log import PredictionLogger
from loopline.monitoring.wire import LabelsRequest


def _traffic(ctx: Context, n: int = 200) -> None:
    with PredictionLogger(ctx, start=False) as logger:
        for i in range(n):
            logger.log(f"r{i}", "m", "1", [{"x": float(i)}], [i % 2], 1.0)


def test_labels_late_out_of_order_and_relabelled_join_the_newest(ctx: Context) -> None:
    _traffic(ctx)
    rng = np.random.default_rng(0)
    ids = [f"r{i}" for i in rng.permutation(200)]
    for chunk in np.array_split(np.array(ids), 3):  # three late deliveries, shuffled
        report = ll.monitor.log_labels(list(chunk), [int(r[1:]) % 2 for r in chunk], model="m")
        assert report.unmatched == 0 and report.matched == len(chunk)
    ll.monitor.log_labels(["r0"], [1])  # a correction arrives later still: it wins
    labels = ll.monitor.read_labels().set_index("request_id")
    assert len(labels) == 200
    assert labels.loc["r0", "label_num"] == 1.0 and labels.loc["r3", "label_num"] == 1.0
    window = ll.monitor.performance("m", window=1000)[0]
    assert window.labelled == 200 and window.metrics["accuracy"] == pytest.approx(199 / 200)


def test_labels_for_unknown_request_ids_are_reported_not_dropped(ctx: Context) -> None:
    _traffic(ctx, 10)
    report = ll.monitor.log_labels(["r1", "ghost-1", "r2", "ghost-2"], [1, 0, 0, 1])
    assert (report.matched, report.unmatched) == (2, 2)
    assert report.unmatched_ids == ["ghost-1", "ghost-2"]
    assert set(ll.monitor.read_labels()["request_id"]) >= {"ghost-1", "ghost-2"}
    assert ll.monitor.log_labels(["r1"], [1], model="other").unmatched == 1


def test_a_request_labelled_row_by_row_is_listed_once_among_the_unknown_ids(
    ctx: Context,
) -> None:
    # unmatched_ids repeated an unknown id once per labelled row; the counts stay of labels.
    _traffic(ctx, 10)
    ids = ["ghost", "ghost", "ghost", "r1", "ghost-2", "ghost"]
    report = ll.monitor.log_labels(ids, [1, 0, 1, 1, 0, 1], rows=[0, 1, 2, 0, 0, 3])
    assert (report.received, report.matched, report.unmatched) == (6, 1, 5)
    assert report.unmatched_ids == ["ghost", "ghost-2"]
    assert report.to_dict()["unmatched_ids"] == ["ghost", "ghost-2"]
    # Past 20 labels: the first 20 distinct ids, not 20 labels of the first few.
    many = [f"g{i // 3}" for i in range(90)]
    assert ll.monitor.log_labels(many, [1] * 90, rows=[i % 3 for i in range(90)]).unmatched_ids == [
        f"g{i}" for i in range(20)
    ]


def test_labels_need_one_label_per_id(embedded_ctx: Context) -> None:
    with pytest.raises(ll.InvalidInput, match="2 request ids and 1 labels"):
        ll.monitor.log_labels(["a", "b"], [1])


def test_business_events_sum_per_window_and_version(ctx: Context) -> None:
    _traffic(ctx, 20)
    ll.monitor.log_business("rebooking_cost", 120.0, request_id="r1")
    ll.monitor.log_business("rebooking_cost", 30.5, request_id="r2")
    ll.monitor.log_business("ignored_elsewhere", 1.0, request_id="nope")
    window = ll.monitor.performance("m", window=1000)[0]
    assert window.business == {"rebooking_cost": 150.5}
    with pytest.raises(ll.InvalidInput, match="value"):
        ll.monitor.log_business("x", float("nan"))


def test_a_label_counts_only_for_the_model_it_was_sent_for(ctx: Context) -> None:
    # churn and fraud answer the same request ids; fraud's labels must not become churn's
    with PredictionLogger(ctx, start=False) as logger:
        for i in range(10):
            logger.log(f"r-{i}", "churn", "1", [{"x": float(i)}], [i % 2], 1.0)
            logger.log(f"r-{i}", "fraud", "1", [{"y": float(i)}], [0], 1.0)
    ids = [f"r-{i}" for i in range(10)]
    ll.monitor.log_labels(ids, [i % 2 for i in range(9)] + [0], model="churn")
    ll.monitor.log_labels(ids, [1] * 10, model="fraud")  # arrives later: newest overall
    [churn] = ll.monitor.performance("churn", window=100)
    [fraud] = ll.monitor.performance("fraud", window=100)
    assert churn.labelled == 10 and churn.metrics["accuracy"] == pytest.approx(0.9)
    assert fraud.labelled == 10 and fraud.metrics["accuracy"] == 0.0
    mine = ll.monitor.read_labels("churn").set_index("request_id")
    assert len(mine) == 10 and set(mine["model"]) == {"churn"}
    assert mine.loc["r-9", "label_num"] == 0.0
    # a label sent for no model in particular still counts for every model
    ll.monitor.log_labels(["r-9"], [1])
    assert ll.monitor.performance("churn", window=100)[0].metrics["accuracy"] == 1.0


def test_label_batches_written_before_the_model_was_stored_count_for_any_model(
    ctx: Context,
) -> None:
    import time

    import pyarrow as pa
    import sqlalchemy as sa

    from loopline.monitoring.log_files import _parquet_bytes
    from loopline.monitoring.tables import label_batches

    _traffic(ctx, 4)
    old = pa.table(  # the columns of a batch before the model column existed
        {
            "request_id": pa.array(["r0", "r1", "r2", "r3"], pa.string()),
            "label": pa.array(["0", "1", "0", "0"], pa.string()),
            "label_num": pa.array([0.0, 1.0, 0.0, 0.0], pa.float64()),
            "arrived": pa.array([time.time()] * 4, pa.float64()),
            "seq": pa.array(range(4), pa.int64()),
        }
    )
    digest = ctx.artifacts.put_bytes(_parquet_bytes(old))
    with ctx.engine.begin() as conn:
        conn.execute(
            sa.insert(label_batches).values(digest=digest, rows=4, matched=4, created=time.time())
        )
    assert ll.monitor.read_labels("m")["model"].isna().all()
    assert ll.monitor.performance("m", window=100)[0].metrics["accuracy"] == 0.75
    ll.monitor.log_labels(["r3"], [1], model="m")  # a newer batch, with the column
    labels = ll.monitor.read_labels("m").set_index("request_id")
    assert len(labels) == 4 and labels.loc["r3", "model"] == "m"
    assert ll.monitor.performance("m", window=100)[0].metrics["accuracy"] == 1.0


# What POST /api/v1/monitor/labels refuses with a 422, the embedded SDK refuses too.
REFUSED_LABELS = [
    ([None], [1], "request_ids[0]"),
    ([5], [1], "request_ids[0]"),
    ([""], [1], "request_ids[0]"),
    (["r" * 201], [1], "request_ids[0]"),
    (["r0", "r1"], [1, float("inf")], "labels[1]"),
    (["r0"], [float("nan")], "labels[0]"),
    (["r0"], [{"x": 1}], "labels[0]"),
    (["r0"], [[1, 0]], "labels[0]"),
    (["r0"], ["x" * 1001], "labels[0]"),
]
REFUSED_IDS = ["none-id", "int-id", "empty-id", "long-id", "inf", "nan", "dict", "list", "long"]


@pytest.mark.parametrize(("ids", "labels", "field"), REFUSED_LABELS, ids=REFUSED_IDS)
def test_the_sdk_refuses_what_the_server_refuses(
    ctx: Context, ids: list[Any], labels: list[Any], field: str
) -> None:
    _traffic(ctx, 4)
    with pytest.raises(ll.InvalidInput) as err:
        ll.monitor.log_labels(ids, labels, model="m")
    assert err.value.field == field and field in str(err.value)
    assert ll.monitor.read_labels().empty  # nothing stored
    with pytest.raises(ValidationError):  # the server's body: the same rule
        LabelsRequest.model_validate({"request_ids": ids, "labels": labels})


def test_a_business_event_counts_only_for_the_model_it_was_sent_for(ctx: Context) -> None:
    # churn and fraud answer the same request ids, as in the labels' test above
    with PredictionLogger(ctx, start=False) as logger:
        for i in range(3):
            logger.log(f"r-{i}", "churn", "1", [{"x": float(i)}], [0], 1.0)
            logger.log(f"r-{i}", "fraud", "1", [{"y": float(i)}], [0], 1.0)
    ll.monitor.log_business("chargeback", 40.0, request_id="r-1", model="fraud")
    ll.monitor.log_business("offer_cost", 5.0, request_id="r-1", model="churn")
    ll.monitor.log_business("any_model", 1.0, request_id="r-2")
    [churn] = ll.monitor.performance("churn", window=100)
    [fraud] = ll.monitor.performance("fraud", window=100)
    assert churn.business == {"offer_cost": 5.0, "any_model": 1.0}
    assert fraud.business == {"chargeback": 40.0, "any_model": 1.0}


def test_an_event_without_a_request_counts_in_the_hour_it_arrived(ctx: Context) -> None:
    # The window is the hour, not the span between its first and last prediction: an event
    # that arrives after the hour's last answered request was never counted.
    _traffic(ctx, 5)
    ll.monitor.log_business("refund", 12.5, model="m")
    ll.monitor.log_business("refund", 99.0, model="other")
    [w] = ll.monitor.performance("m", window="hour", by_version=False)
    assert w.business == {"refund": 12.5}
