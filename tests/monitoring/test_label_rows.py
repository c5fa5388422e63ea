"""Labels for the rows of a batch request: one label per row (``rows=``), for every row
(``rows="all"``), and what becomes of a label that fits no row."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score

import loopline as ll
from loopline.core.context import Context
from loopline.monitoring.label_join import join_labels
from loopline.monitoring.labelled_requests import logged_rows
from loopline.monitoring.prediction_log import PredictionLogger

BATCH = [{"x": 1.0}, {"x": 2.0}, {"x": 3.0}]


def _batches(ctx: Context, model: str = "m") -> None:
    """Request b-1 of 3 rows (predictions 1, 0, 1) and s-1 of one row (prediction 1)."""
    with PredictionLogger(ctx, start=False) as logger:
        logger.log("b-1", model, "1", BATCH, [1, 0, 1], 1.0)
        logger.log("s-1", model, "1", [{"x": 4.0}], [1], 1.0)


def _window(model: str = "m", **kwargs: Any) -> ll.monitor.WindowMetrics:
    [w] = ll.monitor.performance(model, window="day", **kwargs)
    return w


def test_a_label_for_a_whole_batch_request_is_compared_with_no_row(ctx: Context) -> None:
    # One label for a request of 3 rows was compared with all 3 predictions: labelled 3
    # of 3 rows, accuracy 0.667, and nothing said that the label fitted no row.
    _batches(ctx)
    report = ll.monitor.log_labels(["b-1", "s-1"], [1, 1], model="m")
    assert (report.received, report.matched, report.unmatched) == (2, 1, 0)
    assert (report.no_row, report.no_row_ids) == (1, ["b-1"])
    assert len(report.warnings) == 1 and "'b-1'" in report.warnings[0]
    assert "rows=" in report.warnings[0] and "rows='all'" in report.warnings[0]
    w = _window()
    assert (w.requests, w.rows, w.labelled) == (2, 4, 1)  # only s-1's row
    assert (w.no_row_labels, w.out_of_range_labels) == (1, 0)
    assert w.metrics["accuracy"] == 1.0
    assert w.to_dict()["no_row_labels"] == 1 and w.value("no_row_labels") == 1.0
    rule = ll.monitor.AlertRule(metric="no_row_labels", op=">", threshold=0)
    assert [b.value for b in ll.monitor.check_rules([rule], [w])] == [1.0]
    # The newest 2 rows cut b-1, but keep its highest row: still a request of several rows.
    [cut] = ll.monitor.performance("m", window="day", last=2)
    assert (cut.rows, cut.labelled, cut.no_row_labels) == (2, 1, 1)


def test_each_row_of_a_batch_request_takes_its_own_label(ctx: Context) -> None:
    _batches(ctx)
    truth = [1, 1, 1]
    report = ll.monitor.log_labels(["b-1"] * 3 + ["s-1"], [*truth, 0], model="m", rows=[0, 1, 2, 0])
    assert (report.matched, report.no_row, report.out_of_range, report.duplicates) == (4, 0, 0, 0)
    assert report.warnings == []
    w = _window()
    assert (w.requests, w.rows, w.labelled, w.no_row_labels) == (2, 4, 4, 0)
    assert w.metrics["accuracy"] == pytest.approx(accuracy_score([*truth, 0], [1, 0, 1, 1]))
    # A correction of one row wins for that row only.
    ll.monitor.log_labels(["b-1"], [0], model="m", rows=[1])
    corrected = accuracy_score([1, 0, 1, 0], [1, 0, 1, 1])
    assert _window().metrics["accuracy"] == pytest.approx(corrected)
    labels = ll.monitor.read_labels("m")
    assert sorted(labels.loc[labels["request_id"] == "b-1", "row"].tolist()) == [0, 1, 2]
    assert not labels["all_rows"].any()


def test_a_label_sent_for_all_rows_applies_to_every_row(ctx: Context) -> None:
    _batches(ctx)
    report = ll.monitor.log_labels(["b-1", "s-1"], [1, 0], model="m", rows="all")
    assert (report.matched, report.no_row, report.warnings) == (2, 0, [])
    w = _window()
    assert (w.rows, w.labelled, w.no_row_labels) == (4, 4, 0)
    assert w.metrics["accuracy"] == pytest.approx(accuracy_score([1, 1, 1, 0], [1, 0, 1, 1]))
    stored = ll.monitor.read_labels("m").set_index("request_id")
    assert stored.loc["b-1", "all_rows"] and pd.isna(stored.loc["b-1", "row"])
    # A newer label of one row wins over it for that row; a newer 'all' wins again.
    ll.monitor.log_labels(["b-1"], [0], model="m", rows=[1])
    assert _window().metrics["accuracy"] == 0.75
    ll.monitor.log_labels(["b-1"], [1], model="m", rows="all")
    assert _window().metrics["accuracy"] == 0.5
    # A plain label now names no row of b-1 again; its rows keep their own labels only.
    ll.monitor.log_labels(["b-1"], [1], model="m")
    w = _window()
    assert (w.labelled, w.no_row_labels) == (2, 1)  # b-1 row 1 and s-1
    assert w.metrics["accuracy"] == 0.5


def test_a_label_for_a_row_the_request_does_not_have_is_reported(ctx: Context) -> None:
    _batches(ctx)
    report = ll.monitor.log_labels(
        ["b-1", "b-1", "s-1", "ghost"], [1, 0, 1, 1], model="m", rows=[2, 5, 1, 0]
    )
    assert (report.received, report.matched, report.unmatched) == (4, 1, 1)
    assert report.out_of_range == 2
    assert report.out_of_range_rows == [("b-1", 5, 3), ("s-1", 1, 1)]
    assert report.to_dict()["out_of_range_rows"][0] == {"request_id": "b-1", "row": 5, "rows": 3}
    [warning] = report.warnings
    assert "'b-1' row 5: its rows are 0-2" in warning and "'s-1' row 1: its rows are 0-0" in warning
    w = _window()
    assert (w.labelled, w.out_of_range_labels, w.no_row_labels) == (1, 2, 0)
    assert len(ll.monitor.read_labels("m")) == 4  # stored, not dropped


def test_row_labels_that_arrive_before_the_log_is_flushed_join_later(ctx: Context) -> None:
    # The model server has not flushed its buffer yet: the labels are unknown ids, stored.
    logger = PredictionLogger(ctx, start=False)
    logger.log("b-1", "m", "1", BATCH, [1, 0, 1], 1.0)
    logger.log("b-2", "m", "1", BATCH, [0, 0, 0], 1.0)
    report = ll.monitor.log_labels(
        ["b-1", "b-1", "b-1", "b-1", "b-2"], [1, 0, 0, 1, 0], model="m", rows=[0, 1, 2, 3, None]
    )
    assert (report.matched, report.unmatched, report.out_of_range, report.no_row) == (0, 5, 0, 0)
    logger.close()  # flushed now
    w = _window()
    assert (w.requests, w.rows, w.labelled) == (2, 6, 3)
    assert (w.out_of_range_labels, w.no_row_labels) == (1, 1)
    assert w.metrics["accuracy"] == pytest.approx(2 / 3)


def test_a_one_row_request_takes_the_newer_of_its_row_label_and_its_plain_label(
    ctx: Context,
) -> None:
    _batches(ctx)
    ll.monitor.log_labels(["s-1"], [0], model="m")
    ll.monitor.log_labels(["s-1"], [1], model="m", rows=[0])
    assert _window().metrics["accuracy"] == 1.0  # b-1 is labelled as a whole: no row
    ll.monitor.log_labels(["s-1"], [0], model="m")
    w = _window()
    assert (w.labelled, w.metrics["accuracy"]) == (1, 0.0)


def test_duplicates_are_repeats_of_a_request_and_row(ctx: Context) -> None:
    _batches(ctx)
    report = ll.monitor.log_labels(["b-1", "b-1", "b-1"], [1, 0, 1], model="m", rows=[0, 1, 0])
    assert report.duplicates == 1 and report.matched == 3
    assert _window().labelled == 2  # rows 0 and 1; row 0 took the later label
    assert ll.monitor.log_labels(["s-1", "s-1"], [1, 0]).duplicates == 1


BAD_ROWS = [
    ([-1], "rows[0]", "from 0"),
    ([1.0], "rows[0]", "whole number"),
    ([True], "rows[0]", "whole number"),
    (["2"], "rows[0]", "whole number"),
    ([2**31], "rows[0]", "from 0"),
    ([0, 1], "rows", "1 request ids and 2 rows"),
    ("first", "rows", "'first'"),
    (3, "rows", "rows is int"),
    ({"b-1": 0}, "rows", "rows is dict"),
]


@pytest.mark.parametrize(
    ("rows", "field", "words"),
    BAD_ROWS,
    ids=["negative", "float", "bool", "text", "huge", "length", "word", "int", "dict"],
)
def test_bad_rows_are_refused_naming_the_field(
    embedded_ctx: Context, rows: Any, field: str, words: str
) -> None:
    _batches(embedded_ctx)
    with pytest.raises(ll.InvalidInput) as err:
        ll.monitor.log_labels(["b-1"], [1], model="m", rows=rows)
    assert err.value.field == field and words in str(err.value), err.value
    assert ll.monitor.read_labels().empty  # nothing stored


def test_rows_from_a_dataframe(embedded_ctx: Context) -> None:
    # NumPy integers are rows; a missing value of a nullable column is the whole request.
    _batches(embedded_ctx)
    frame = pd.DataFrame(
        {"rid": ["b-1", "b-1", "s-1"], "row": pd.array([0, 2, None], "Int64"), "y": [1, 1, 1]}
    )
    report = ll.monitor.log_labels(frame["rid"], frame["y"], model="m", rows=frame["row"])
    assert (report.matched, report.no_row) == (3, 0)
    as_numpy = ll.monitor.log_labels(["b-1"], [1], model="m", rows=np.array([1], np.int64))
    assert as_numpy.matched == 1
    assert _window().labelled == 4


def test_the_rows_of_many_prediction_files_are_counted(embedded_ctx: Context) -> None:
    # More than 8 candidate files: the DuckDB join counts the rows, as pyarrow does for few.
    for i in range(10):
        with PredictionLogger(embedded_ctx, start=False) as logger:
            logger.log(f"b-{i}", "m", "1", BATCH[: 1 + i % 3], [1] * (1 + i % 3), 1.0)
    ids = [f"b-{i}" for i in range(10)]
    assert logged_rows(ids, "m") == {f"b-{i}": 1 + i % 3 for i in range(10)}
    assert logged_rows(ids[:2], "m") == {"b-0": 1, "b-1": 2}
    report = ll.monitor.log_labels(ids, [1] * 10, model="m")
    assert (report.matched, report.no_row) == (4, 6)  # the requests of one row only


def test_join_labels_without_labels_keeps_the_frame() -> None:
    frame = pd.DataFrame({"_request_id": ["a", "a"], "_row": [0, 1], "x": [1.0, 2.0]})
    out = join_labels(frame, pd.DataFrame(columns=["request_id", "row", "label"]))
    assert out["label"].isna().all() and out["x"].tolist() == [1.0, 2.0]
    assert out["_no_row_label"].sum() == 0 and "label" not in frame.columns


@pytest.mark.parametrize(
    ("ids", "labels", "field", "words"),
    [
        ("r-1", [1], "request_ids", "request_ids is the text 'r-1', not a list"),
        (["r-1"], "1", "labels", "labels is the text '1', not a list"),
        (b"r-1", [1], "request_ids", "request_ids is bytes"),
        ({"r-1"}, [1], "request_ids", "request_ids is set"),
        (["r-1"], {"r-1": 1}, "labels", "labels is dict"),
        (["r-1"], 1, "labels", "labels is int"),
    ],
    ids=["text-ids", "text-labels", "bytes-ids", "set-ids", "dict-labels", "int-labels"],
)
def test_request_ids_and_labels_must_be_lists(
    embedded_ctx: Context, ids: Any, labels: Any, field: str, words: str
) -> None:
    # A text was split into its characters: "r-1" was three request ids, and the error
    # said "got 3 request ids and 1 labels".
    _batches(embedded_ctx)
    with pytest.raises(ll.InvalidInput) as err:
        ll.monitor.log_labels(ids, labels, model="m")
    assert err.value.field == field and words in str(err.value), err.value
    assert ll.monitor.read_labels().empty
    # a tuple, a NumPy array or a Series is a list of ids and labels
    report = ll.monitor.log_labels(("s-1",), np.array([1]), model="m")
    assert report.matched == 1


def test_a_request_id_logged_twice_counts_once_by_its_last_answer(embedded_ctx: Context) -> None:
    # A client retried with its X-Request-ID (or a caller reused an id): the label met
    # both logged answers and labelled counted the request twice.
    ll.monitor.log_prediction("r-1", "m7", 1, [{"x": 1.0}], [1], latency_ms=1.0)
    ll.monitor.log_prediction("r-1", "m7", 2, [{"x": 1.0}], [0], latency_ms=1.0)
    ll.monitor.log_prediction("r-2", "m7", 2, [{"x": 1.0}], [1], latency_ms=1.0)
    ll.monitor.log_prediction("b-1", "m7", 2, BATCH, [1, 1, 1], latency_ms=1.0)
    ll.monitor.log_prediction("b-1", "m7", 2, BATCH[:2], [0, 0], latency_ms=1.0)
    ll.monitor.log_labels(["r-1", "r-2"], [1, 1], model="m7")
    ll.monitor.log_labels(["b-1", "b-1"], [0, 0], model="m7", rows=[0, 1])
    [w] = ll.monitor.performance("m7", window="day", by_version=False)
    # r-1's last answer (0, by version 2) against its label 1; b-1's last logging, 2 rows
    assert (w.requests, w.rows, w.labelled) == (3, 4, 4)
    assert w.metrics["accuracy"] == 0.75
    assert w.relogged_requests == 2
    assert w.to_dict()["relogged_requests"] == 2 and w.value("relogged_requests") == 2.0
    by_version = ll.monitor.performance("m7", window="day")
    assert [(v.version, v.rows, v.labelled) for v in by_version] == [("2", 4, 4)]


def test_last_loggings_keeps_a_frame_without_repeats() -> None:
    from loopline.monitoring.label_join import last_loggings

    frame = pd.DataFrame(
        {"_request_id": ["b", "b", "s"], "_row": [0, 1, 0], "_ts": [1.0, 1.0, 2.0]}
    )
    out = last_loggings(frame)
    assert out.index.tolist() == [0, 1, 2] and out["_relogged"].tolist() == [0, 0, 0]
