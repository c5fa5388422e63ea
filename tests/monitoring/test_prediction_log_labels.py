"""Labels that arrive late and out of order; unknown request ids; business events."""

from __future__ import annotations

import numpy as np
import pytest

import loopline as ll
from loopline.core.context import Context
from loopline.monitoring.prediction_log import PredictionLogger


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
