"""The prediction log's columns: every column any request sent, in the rows' order."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from loopline.core.context import Context
from loopline.monitoring.log_columns import META_COLUMNS, LogColumns, RawInputs, split_output
from loopline.monitoring.log_reads import read_predictions
from loopline.monitoring.prediction_log import PredictionLogger
from tests.monitoring.test_prediction_log import served

Request = tuple[Any, str, float, str, float, Any]


def row_by_row(requests: list[Request]) -> pa.Table:
    """What the columns must hold, made the plain way: a dict per row, every key any row
    has (first seen first), None where a row has none."""
    records: list[dict[str, Any]] = []
    scored = False
    for inputs, rid, ts, version, latency, outputs in requests:
        if isinstance(inputs, RawInputs):
            rows = inputs.records()
        else:
            given = inputs if isinstance(inputs, list) else [inputs]
            rows = [dict(r) if isinstance(r, dict) else {"_input": r} for r in given]
        outs = outputs if isinstance(outputs, list) else [outputs]
        for i, row in enumerate(rows):
            value, score = split_output(outs[i] if i < len(outs) else None)
            row.update(zip(META_COLUMNS, (rid, ts, version, latency, i, value), strict=True))
            if score is not None:
                row["_score"], scored = score, True
            records.append(row)
    keys = list(dict.fromkeys(k for r in records for k in r if k not in (*META_COLUMNS, "_score")))
    keys += [*META_COLUMNS, "_score"] if scored else list(META_COLUMNS)
    return pa.table({k: [r.get(k) for r in records] for k in keys})


def columns_of(requests: list[Request]) -> pa.Table:
    cols = LogColumns()
    for request in requests:
        cols.add(*request)
    return cols.table()


SIG = ["x", "k"]
TYPES = ["float", "int"]
CASES: dict[str, list[Request]] = {
    "one layout, a run": [
        (RawInputs("split", (["x", "k"], [[float(i), i]]), None), f"r{i}", 1.0, "1", 2.0, [i])
        for i in range(5)
    ],
    "a column only later requests send": [
        (RawInputs("split", (["x"], [[1.0]]), None), "r1", 1.0, "1", 2.0, [0]),
        (RawInputs("split", (["x", "y"], [[2.0, 3.0]]), None), "r2", 1.0, "1", 2.0, [1]),
        ([{"z": "t"}], "r3", 1.0, "1", 2.0, [0]),
        (RawInputs("split", (["x"], [[4.0], [5.0]]), None), "r4", 1.0, "1", 2.0, [0, 1]),
    ],
    "layouts alternating": [
        (
            RawInputs("split", (["a", "b"] if i % 2 else ["b", "a"], [[i, -i]]), None),
            f"r{i}",
            float(i),
            "1",
            2.0,
            [i],
        )
        for i in range(6)
    ],
    "signature types, lists and records": [
        (RawInputs("lists", [[1, 4.0], [2, 5.0]], SIG, TYPES), "a", 1.0, "1", 2.0, [0, 1]),
        (RawInputs("records", [{"x": 2**63, "k": 3.0}], SIG, TYPES), "b", 1.0, "1", 2.0, [0]),
        (RawInputs("split", (["k", "x"], [[6.0, 7]]), SIG, TYPES), "c", 1.0, "2", 2.0, [1]),
    ],
    "ragged and repeated names go in as dicts": [
        (RawInputs("lists", [[1.0], [2.0, 3.0, 9.0]], SIG, None), "a", 1.0, "1", 2.0, [0, 1]),
        (RawInputs("split", (["x", "x"], [[1.0, 2.0]]), None), "b", 1.0, "1", 2.0, [0]),
    ],
    "lists without names, plain rows, scores, no rows": [
        (RawInputs("lists", [[1, 2]], None), "a", 1.0, "1", 2.0, [{"label": 1, "score": 0.2}]),
        ([[3, 4]], "b", 1.0, "1", 2.0, 0),
        (RawInputs("split", (["x"], []), None), "c", 1.0, "1", 2.0, []),
        ([{"x": 1.0}, {"x": 2.0}], "d", 1.0, "1", 2.0, [{"prediction": 3}]),
    ],
    "an input named as a column of the log gives way": [
        (
            [{"_ts": "mine", "_score": 1, "x": 1.0}],
            "a",
            5.0,
            "1",
            2.0,
            [{"label": 1, "score": 0.5}],
        ),
    ],
}


@pytest.mark.parametrize("case", list(CASES))
def test_columns_hold_what_rows_one_by_one_hold(case: str) -> None:
    assert columns_of(CASES[case]).equals(row_by_row(CASES[case]))


def test_a_column_only_later_requests_send_is_kept_with_none_before() -> None:
    table = columns_of(CASES["a column only later requests send"])
    assert table.column_names[:3] == ["x", "y", "z"]
    assert table.column("y").to_pylist() == [None, 3.0, None, None, None]
    assert table.column("x").to_pylist() == [1.0, 2.0, None, 4.0, 5.0]
    assert table.column("_row").to_pylist() == [0, 0, 0, 0, 1]


def test_signature_types_are_applied_per_request() -> None:
    table = columns_of(CASES["signature types, lists and records"])
    assert table.column("x").to_pylist() == [1.0, 2.0, float(2**63), 7.0]
    assert table.column("k").type == pa.int64()
    assert table.column("k").to_pylist() == [4, 5, 3, 6]


def test_a_batch_whose_later_requests_send_another_column_keeps_it(embedded_ctx: Context) -> None:
    """The log once took a file's columns from its first request alone: a column that only
    later requests of the batch sent was dropped from the file without a word."""
    with PredictionLogger(embedded_ctx, start=False) as logger:
        logger.log("p1", "m", "1", [{"x": 1.0}], [0], 1.0)
        logger.log("p2", "m", "1", [{"x": 2.0, "extra": 5.0}], [1], 1.0)
        served(logger, "s1", {"dataframe_split": {"columns": ["x"], "data": [[3.0]]}})
        served(logger, "s2", {"dataframe_split": {"columns": ["x", "late"], "data": [[4.0, 6.0]]}})
    frame = read_predictions("m").set_index("_request_id")
    assert frame.loc[["p1", "p2", "s1", "s2"], "x"].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert frame.loc["p2", "extra"] == 5.0 and frame.loc["s2", "late"] == 6.0
    assert frame.loc[["p1", "s1", "s2"], "extra"].isna().all()
    assert frame.loc[["p1", "p2", "s1"], "late"].isna().all()
