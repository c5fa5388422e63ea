"""The prediction log's Parquet files: a batch of queued entries turned into the files the
writer stores, one per model and hour.

:func:`entries_to_table` builds a file's table (columns: :mod:`.log_columns`);
:func:`schema_digest` fingerprints its columns for the index (a read names one file of each
column layout); ``_files`` sets apart the entries whose rows Arrow or Parquet cannot store,
so that one bad request is dropped alone and the rest of its batch is written. Apart from
the writer (:mod:`.prediction_log`), which queues, spools, stores and indexes: this is the
conversion alone, on data only, with no store, database or thread.

Example:
    >>> t = entries_to_table([(0.0, "r", "m", "1", [{"x": 1.0}], [0], 2.0)])
    >>> len(_parquet_bytes(t)) > 0, len(schema_digest(t.schema))
    (True, 64)
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from loopline.monitoring.log_columns import LogColumns
from loopline.monitoring.log_records import SERVED, _Entry, _served

#: What turning entries into a Parquet file raises when the data cannot be stored (no Arrow
#: type holds a value, values of one column clash, Parquet has no form for a type): errors
#: of the entries, which no retry cures. The store's own errors are not among them.
_DATA_ERRORS = (pa.ArrowException, ValueError, TypeError, OverflowError)


def _hour(ts: float) -> float:
    return float(math.floor(ts / 3600.0) * 3600)


def entries_to_table(entries: Sequence[_Entry]) -> pa.Table:
    """Rows (one per input row) of logged requests as an Arrow table: every input column
    any request sent (None where one did not), then :data:`~.log_columns.META_COLUMNS` (see
    :class:`~loopline.monitoring.log_columns.LogColumns`).

    Example:
        >>> t = entries_to_table([(0.0, "r", "m", "1", [{"x": 1.0}], [0], 2.0)])
        >>> t.column("_prediction").to_pylist(), t.column("x").to_pylist()
        ([0], [1.0])
    """
    columns = LogColumns()
    for ts, rid, _model, version, inputs, outputs, latency, *_ in entries:
        if outputs is SERVED:
            *_, inputs, outputs = _served(inputs)
        columns.add(inputs, rid, ts, version, latency, outputs)
    return columns.table()


def schema_digest(schema: pa.Schema) -> str:
    """A fingerprint of a prediction file's column names, types and order (no metadata):
    two files with one fingerprint have the same columns, as DuckDB reads them.

    Example:
        >>> def digest(x: pa.DataType) -> str:
        ...     return schema_digest(pa.schema([("x", x), ("_ts", pa.float64())]))
        >>> digest(pa.float64()) == digest(pa.float64()), digest(pa.float64()) == digest(pa.int64())
        (True, False)
    """
    text = schema.to_string(show_field_metadata=False, show_schema_metadata=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _parquet_bytes(table: pa.Table, distinct: Sequence[str] = ()) -> bytes:
    """``table`` as zstd Parquet; the ``distinct`` columns (values mostly each other's
    distinct: request ids) without a dictionary, which Parquet would build of every value
    for nothing (a label file is half as big, and quicker to write)."""
    sink = io.BytesIO()
    coded = [c for c in table.column_names if c not in distinct] if distinct else True
    pq.write_table(table, sink, compression="zstd", use_dictionary=coded)
    return sink.getvalue()


class _File:
    """One Parquet file to store: its entries (one model and hour), bytes, row count and
    columns' fingerprint."""

    __slots__ = ("data", "entries", "hour", "model", "rows", "schema")

    def __init__(self, model: str, hour: float, entries: list[_Entry], table: pa.Table) -> None:
        self.model, self.hour, self.entries = model, hour, entries
        self.data = _parquet_bytes(table)
        self.rows = table.num_rows
        self.schema = schema_digest(table.schema)


def _files(
    model: str, hour: float, entries: list[_Entry], bad: list[tuple[_Entry, Exception]]
) -> list[_File]:
    """The files of one model and hour: one, unless some entries cannot be stored. Then
    each entry is converted alone; those that fail go to ``bad``, the others are written
    one file per column layout (entries that are fine alone may clash with each other: a
    column of numbers in one request and of text in another)."""
    try:
        return [_File(model, hour, entries, entries_to_table(entries))]
    except _DATA_ERRORS:
        pass
    layouts: dict[pa.Schema, list[tuple[_File, pa.Table]]] = {}
    for e in entries:
        try:
            table = entries_to_table([e])
            alone = _File(model, hour, [e], table)  # Parquet's refusals show here too
        except _DATA_ERRORS as exc:
            bad.append((e, exc))
            continue
        layouts.setdefault(table.schema, []).append((alone, table))
    files: list[_File] = []
    for same in layouts.values():
        if len(same) == 1:
            files.append(same[0][0])
            continue
        try:
            merged = pa.concat_tables([table for _, table in same])
            files.append(_File(model, hour, [f.entries[0] for f, _ in same], merged))
        except _DATA_ERRORS:  # each was stored alone above: keep those files, never lose them
            files.extend(f for f, _ in same)
    return files
