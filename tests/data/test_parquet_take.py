"""Rows of a Parquet file by position: one read, or a batch of row groups at a time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loopline.data.parquet_take import take_rows

N = 1_000


def _file(path: Path, rows: int, row_group: int = 100) -> Path:
    rng = np.random.default_rng(3)
    floats = rng.normal(size=rows)
    table = pa.table(
        {
            "x": pa.array(floats, mask=np.arange(rows) % 7 == 0),  # some nulls
            "y": pa.array(floats.astype("float32")),
            "n": pa.array(np.arange(rows), mask=np.arange(rows) % 5 == 0),
            "s": pa.array([f"s{i}" for i in range(rows)]),
            "t": pa.array(
                pd.date_range("2024-01-01", periods=rows, freq="s", tz="UTC"),
                pa.timestamp("us", tz="UTC"),
            ),
        }
    )
    pq.write_table(table, path, row_group_size=row_group)
    return path


def _expected(path: Path, columns: list[str], positions: np.ndarray) -> dict[str, list[Any]]:
    rows = pq.read_table(path, columns=columns).to_pylist()
    return {c: [rows[p][c] if p >= 0 else None for p in positions] for c in columns}


def _values(column: Any) -> list[Any]:
    """Plain values, ``None`` for a missing one (NaN in a NumPy column)."""
    if isinstance(column, np.ndarray):
        return [None if np.isnan(v) else float(v) for v in column]
    return list(column.to_pylist())


@pytest.mark.parametrize("batch_bytes", [1 << 30, 2_000, 1], ids=["one-read", "batches", "tiny"])
def test_rows_come_back_in_the_order_asked(tmp_path: Path, batch_bytes: int) -> None:
    path = _file(tmp_path / "f.parquet", N)
    rng = np.random.default_rng(0)
    positions = rng.integers(-200, N, 5_000)  # negatives ask for no row
    columns = ["t", "x", "s", "n", "y"]
    got = take_rows(str(path), columns, positions, batch_bytes=batch_bytes)
    assert list(got) == columns
    want = _expected(path, columns, positions)
    for c in columns:
        if c in ("x", "y"):
            assert isinstance(got[c], np.ndarray)  # floats: NaN where no row, like pandas
            assert got[c].dtype == ("float64" if c == "x" else "float32")
            assert _values(got[c]) == pytest.approx(want[c])
        else:
            assert _values(got[c]) == want[c]


@pytest.mark.parametrize("batch_bytes", [1 << 30, 1], ids=["one-read", "tiny"])
def test_a_file_without_rows_gives_nulls(tmp_path: Path, batch_bytes: int) -> None:
    path = _file(tmp_path / "empty.parquet", 0)
    got = take_rows(str(path), ["x", "s"], np.array([-1, -1]), batch_bytes=batch_bytes)
    assert np.isnan(got["x"]).all() and len(got["x"]) == 2
    assert _values(got["s"]) == [None, None]


def test_no_positions_no_rows(tmp_path: Path) -> None:
    path = _file(tmp_path / "f.parquet", 10)
    got = take_rows(str(path), ["x", "s"], np.empty(0, dtype=np.int64))
    assert len(got["x"]) == 0 and len(got["s"]) == 0
