"""What ``log_labels`` stores, column by column, against the plain construction it was
written with: the label file's rows and the index row of ``label_batches``. The quicker
paths for common label lists (all numbers, all texts, no null) must store the same."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

import loopline as ll
from loopline.core.context import Context
from loopline.monitoring.labelled_requests import logged_rows
from loopline.monitoring.prediction_log import PredictionLogger
from loopline.monitoring.rid_index import index_columns
from loopline.monitoring.tables import label_batches
from loopline.monitoring.wire import checked_labels


def _traffic(ctx: Context, model: str = "m", prediction: Any = 1) -> None:
    with PredictionLogger(ctx, start=False) as logger:
        for i in range(30):
            rows = [{"x": float(i)}] * (1 + i % 3 if i >= 20 else 1)
            logger.log(f"r{i}", model, "1", rows, [prediction] * len(rows), 1.0)


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, bool | int | float) else None


def _expected(
    ids: list[str], labels: list[Any], model: str | None, rows: Any, arrived: float
) -> pa.Table:
    """The label file as ``log_labels`` built it, one Python value at a time."""
    n = len(ids)
    per_label = None if rows is None or isinstance(rows, str) else rows
    return pa.table(
        {
            "request_id": pa.array(ids, pa.string()),
            "label": pa.array([None if v is None else str(v) for v in labels], pa.string()),
            "label_num": pa.array([_number(v) for v in labels], pa.float64()),
            "arrived": pa.array([arrived] * n, pa.float64()),
            "seq": pa.array(range(n), pa.int64()),
            "model": pa.array([model] * n, pa.string()),
            "row": pa.nulls(n, pa.int64()) if per_label is None else pa.array(rows, pa.int64()),
            "all_rows": pa.array([rows == "all"] * n, pa.bool_()),
        }
    )


def _stored(ctx: Context) -> tuple[pa.Table, dict[str, Any]]:
    """The newest label file and its index row."""
    t = label_batches
    with ctx.engine.connect() as conn:
        row = conn.execute(sa.select(t).order_by(t.c.id.desc()).limit(1)).mappings().one()
    table = pq.read_table(pa.BufferReader(ctx.artifacts.get_bytes(row["digest"])))
    return table, dict(row)


IDS = [f"r{i}" for i in range(30)] + ["ghost-1", "r3", "ghost-2"]
CASES: dict[str, tuple[list[Any], Any, Any]] = {
    "ints": ([i % 3 for i in range(33)], None, 1),
    "big ints": ([2**53 + 1, -(2**63), 2**70, *range(30)], None, 1),
    "floats": ([i / 7 for i in range(33)], None, 0.5),
    "texts": ([f"class-{i % 4}" for i in range(33)], None, "a"),
    "bools": ([i % 2 == 0 for i in range(33)], None, True),
    "ints and nulls": ([None if i % 5 == 0 else i for i in range(33)], None, 1),
    "mixed": ([1, 2.5, True, None, "x", *range(28)], None, "a"),
    "numpy": (list(np.arange(33, dtype=np.int64)), None, 1),
    "rows": ([1] * 33, [i % 4 for i in range(33)], 1),
    "rows with nulls": ([1] * 33, [None if i % 2 else 0 for i in range(33)], 1),
    "all rows": ([0.25] * 33, "all", 1.0),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_label_file_and_its_index_row_hold_what_was_sent(
    embedded_ctx: Context, case: str
) -> None:
    labels, rows, prediction = CASES[case]
    _traffic(embedded_ctx, prediction=prediction)
    for model in ("m", None):
        report = ll.monitor.log_labels(IDS, labels, model=model, rows=rows)
        table, index = _stored(embedded_ctx)
        plain = [v.item() if isinstance(v, np.generic) else v for v in labels]
        assert table.equals(_expected(IDS, plain, model, rows, index["created"]))
        assert table.column("arrived")[0].as_py() == index["created"]
        assert {k: index[k] for k in ("rid_min", "rid_max", "rid_hashes")} == index_columns(IDS)
        assert (index["rows"], index["model"]) == (33, model)
        assert index["matched"] == report.matched
        assert (report.unmatched, report.duplicates) == (2, 1)  # r3 twice, for one row


def test_the_report_counts_rows_as_before(embedded_ctx: Context) -> None:
    _traffic(embedded_ctx)
    assert logged_rows(IDS, "m") == {f"r{i}": 1 + i % 3 if i >= 20 else 1 for i in range(30)}
    report = ll.monitor.log_labels(IDS, [1] * 33, model="m")
    # r20, r22, r23, ... have several rows; a label for the whole request names none of them
    several = [f"r{i}" for i in range(20, 30) if i % 3]
    assert (report.matched, report.unmatched, report.no_row) == (24, 2, 7)
    assert report.no_row_ids == several
    assert report.unmatched_ids == ["ghost-1", "ghost-2"]


@pytest.mark.parametrize(
    ("labels", "field"),
    [
        ([1, 2, "3", 4], "labels[2]"),  # a text label for a model that predicts numbers
        ([1.5, None, "x"], "labels[2]"),
        (["a", "b"], "labels[0]"),
    ],
)
def test_a_numeric_model_refuses_the_first_text_label(
    embedded_ctx: Context, labels: list[Any], field: str
) -> None:
    _traffic(embedded_ctx)
    ids = IDS[: len(labels)]
    with pytest.raises(ll.InvalidInput) as err:
        ll.monitor.log_labels(ids, labels, model="m")
    assert err.value.field == field
    ll.monitor.log_labels(ids, labels)  # for no model in particular: stored
    assert _stored(embedded_ctx)[0].column("label").to_pylist() == [
        None if v is None else str(v) for v in labels
    ]


class _Str(str):
    pass


class _Float(float):
    pass


@pytest.mark.parametrize(
    ("ids", "labels", "field"),
    [
        (["a"] * 50 + [""], [1] * 51, "request_ids[50]"),
        (["a"] * 50 + ["x" * 201], [1] * 51, "request_ids[50]"),
        (["a", None, ""], [1] * 3, "request_ids[1]"),
        (["a"] * 3, [1, 2, float("nan")], "labels[2]"),
        (["a"] * 3, [1.0, float("-inf"), 2.0], "labels[1]"),
        (["a"] * 3, ["ok", "y" * 1001, "ok"], "labels[1]"),
        (["a"] * 3, [1, b"x", 2], "labels[1]"),
        (["a"] * 3, [1, _Float("inf"), 2], "labels[1]"),
    ],
)
def test_the_first_bad_value_is_named(ids: list[Any], labels: list[Any], field: str) -> None:
    with pytest.raises(ll.InvalidInput) as err:
        checked_labels(ids, labels)
    assert err.value.field == field


def test_values_of_a_subclass_pass_as_their_base_type() -> None:
    checked_labels([_Str("r-1"), "r-2"], [_Float(1.5), _Str("a")])


@pytest.mark.parametrize(
    ("rows", "field"),
    [
        ([0, 1, -1], "rows[2]"),
        ([0, 2**31, 1], "rows[1]"),
        ([0, True, 1], "rows[1]"),
        ([0, None, 2.0], "rows[2]"),
    ],
)
def test_the_first_bad_row_is_named(rows: list[Any], field: str) -> None:
    with pytest.raises(ll.InvalidInput) as err:
        checked_labels(["a"] * 3, [1] * 3, rows)
    assert err.value.field == field
    checked_labels(["a"] * 3, [1] * 3, [0, None, 2**31 - 1])
