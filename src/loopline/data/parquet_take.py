"""Rows of one Parquet file picked by position, in bounded memory.

The point-in-time join finds, for each entity row, the position of its feature row in a
prepared Parquet file (:mod:`loopline.data.pit_join`); this module fetches the feature
values at those positions. Row groups are read a batch at a time, each batch no larger
than ``batch_bytes`` of uncompressed data, so a file larger than memory works.

Floating-point columns come back as NumPy arrays with NaN where there is no row (what
pandas and DuckDB's ``df()`` make of a nullable float column), gathered by NumPy
indexing, which is a few times faster than Arrow's ``take`` with null indices. Other
columns come back as Arrow arrays with nulls.

Example:
    >>> # take_rows("view.parquet", ["clicks"], np.array([4, -1, 0]))  # -1: no row
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

BATCH_BYTES = 512 << 20

Column: TypeAlias = npt.NDArray[Any] | pa.ChunkedArray | pa.Array


def _batches(meta: pq.FileMetaData, batch_bytes: int) -> Iterator[tuple[list[int], int, int]]:
    """``(row groups, first row, end row)`` of consecutive groups under ``batch_bytes``."""
    groups: list[int] = []
    size = start = row = 0
    for g in range(meta.num_row_groups):
        rg = meta.row_group(g)
        if groups and size + rg.total_byte_size > batch_bytes:
            yield groups, start, row
            groups, size, start = [], 0, row
        groups.append(g)
        size += rg.total_byte_size
        row += rg.num_rows
    if groups:
        yield groups, start, row


def _numpy(column: pa.ChunkedArray) -> npt.NDArray[Any]:
    """A float column as one NumPy array (nulls as NaN), without a copy when it can."""
    if column.num_chunks == 1:
        one: npt.NDArray[Any] = column.chunk(0).to_numpy(zero_copy_only=False)
        return one
    many: npt.NDArray[Any] = column.to_numpy()
    return many


def _null_where_negative(positions: npt.NDArray[np.int64]) -> pa.Array:
    missing = positions < 0
    return pa.array(positions, mask=missing if missing.any() else None)


def _take_all(file: pq.ParquetFile, columns: list[str], positions: Any) -> dict[str, Column]:
    """One read of the whole file, then a gather: for files that fit in one batch."""
    part = file.read(columns=columns)
    missing = positions < 0
    anywhere = np.where(missing, 0, positions) if missing.any() else positions
    out: dict[str, Column] = {}
    others = []
    for name in columns:
        column = part.column(name)
        if not pa.types.is_floating(column.type):
            others.append(name)
            continue
        values = _numpy(column)
        if not len(values):  # no feature rows at all: every position is negative
            values = np.full(1, np.nan, dtype=values.dtype)
        taken = values[anywhere]
        taken[missing] = np.nan
        out[name] = taken
    if others:
        rest = part.select(others).take(_null_where_negative(positions))
        out.update((name, rest.column(name)) for name in others)
    return out


def _take_batched(
    file: pq.ParquetFile,
    columns: list[str],
    positions: Any,
    batches: list[tuple[list[int], int, int]],
) -> dict[str, Column]:
    """A batch of row groups at a time: memory stays bounded for a large file."""
    schema = file.schema_arrow
    n = len(positions)
    floats = {
        c: np.full(n, np.nan, dtype=schema.field(c).type.to_pandas_dtype())
        for c in columns
        if pa.types.is_floating(schema.field(c).type)
    }
    others = [c for c in columns if c not in floats]
    pieces: list[pa.Table] = []
    dests: list[npt.NDArray[np.intp]] = []
    for groups, start, end in batches:
        sel = np.flatnonzero((positions >= start) & (positions < end))
        if not len(sel):
            continue
        part = file.read_row_groups(groups, columns=columns)
        local = positions[sel] - start
        for name, out in floats.items():
            out[sel] = _numpy(part.column(name))[local]
        if others:
            pieces.append(part.select(others).take(local))
            dests.append(sel)
    result: dict[str, Column] = dict(floats)
    if others:
        # Put the pieces in entity order; rows without a feature row take a null index.
        source = np.full(n, -1, dtype=np.int64)
        dest = np.concatenate(dests) if dests else np.empty(0, dtype=np.intp)
        source[dest] = np.arange(len(dest), dtype=np.int64)
        rows = pa.concat_tables(pieces) if pieces else schema.empty_table().select(others)
        taken = rows.take(_null_where_negative(source))
        result.update((name, taken.column(name)) for name in others)
    return result


def take_rows(
    path: str,
    columns: Sequence[str],
    positions: npt.NDArray[np.int64],
    *,
    batch_bytes: int = BATCH_BYTES,
) -> dict[str, Column]:
    """The values of ``columns`` at ``positions`` of ``path``; a negative position: none.

    Example:
        >>> # take_rows("f.parquet", ["x"], np.array([2, 0, -1]))["x"]
        >>> # array([0.3, 0.1, nan])
    """
    file = pq.ParquetFile(path, memory_map=True)
    cols = list(columns)
    batches = list(_batches(file.metadata, batch_bytes))
    if len(batches) <= 1:
        found = _take_all(file, cols, positions)
    else:
        found = _take_batched(file, cols, positions, batches)
    return {c: found[c] for c in cols}
