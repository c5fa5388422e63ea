"""Reading the prediction log back: the index of its files, and their rows with DuckDB.

:func:`read_predictions` (``ll.monitor.read_predictions``) reads a model's logged rows in a
time range, or its newest N, naming only the files that can hold them
(:func:`newest_since`, :func:`newest_files`, :func:`layout_files`). The label join
(:mod:`.labels`) reads the request-id index (:func:`index_ranges`, :func:`index_hashes`)
and the files (:func:`local_files`) through the same process-wide DuckDB database
(:func:`duck`). Apart from the writer (:mod:`.prediction_log`): the readers run in other
processes (a page of live metrics, the monitoring jobs) and share none of its state but
the store and the index table; before reading, this process's own writer is flushed.

Example:
    >>> with duck() as con:
    ...     con.execute("SELECT 1").fetchone()
    (1,)
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator, Sequence, Set
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from loopline.core.artifacts import LocalArtifactStore
from loopline.core.context import Context, get_context
from loopline.core.db import reading
from loopline.errors import InvalidInput
from loopline.monitoring.log_columns import META_COLUMNS
from loopline.monitoring.prediction_log import flush_default
from loopline.monitoring.tables import prediction_batches


def _ts(value: float | pd.Timestamp | str | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return float(stamp.timestamp())


def batch_files(
    ctx: Context, model: str | None, start: float | None, end: float | None
) -> list[str]:
    """The digests of the prediction files of ``model`` (all models: None) in a time range.

    Example:
        >>> # batch_files(ctx, "flights", None, None)[:1]
    """
    return [f.digest for f in _batches(ctx, model, start, end)]


def _batches(
    ctx: Context, model: str | None, start: float | None, end: float | None
) -> list[sa.Row[Any]]:
    """The index rows (id, digest, rows, ts_min, ts_max) of the prediction files of
    ``model`` (all models: None) with rows in a time range, oldest file first."""
    t = prediction_batches
    # Not schema_digest: in SQLite it follows rid_hashes (~40 kB a file) in the row, and
    # reaching it walks the blob's overflow pages (8.7 ms instead of 1.2 ms at 500 files).
    q = sa.select(t.c.id, t.c.digest, t.c.rows, t.c.ts_min, t.c.ts_max).order_by(t.c.id)
    with reading(ctx.engine) as conn:
        return list(conn.execute(_in_range(q, model, start, end)))


def _in_range(
    q: sa.Select[Any], model: str | None, start: float | None, end: float | None
) -> sa.Select[Any]:
    """``q`` on the prediction files of ``model`` (all models: None) with rows in a range."""
    t = prediction_batches
    if model is not None:
        q = q.where(t.c.model == model)
    if start is not None:
        q = q.where(t.c.ts_max >= start)
    if end is not None:
        q = q.where(t.c.ts_min < end)
    return q


def layout_files(
    ctx: Context, model: str | None, start: float | None, end: float | None
) -> set[int]:
    """The row ids of the first prediction file (of ``model``, with rows in a time range)
    of each column layout (``schema_digest``), and of every file without one (indexed
    before it was recorded): together they have every column of the range's files, in
    the order and of the types a read of them all gives. Read from the index
    ``(model, schema_digest)`` alone in the usual case (no range), not from the rows.

    Example:
        >>> # layout_files(ctx, "flights", None, None)  -> {1, 57}
    """
    t = prediction_batches
    firsts = _in_range(sa.select(sa.func.min(t.c.id)), model, start, end)
    firsts = firsts.where(t.c.schema_digest.is_not(None)).group_by(t.c.schema_digest)
    unknown = _in_range(sa.select(t.c.id), model, start, end)
    unknown = unknown.where(t.c.schema_digest.is_(None))
    with reading(ctx.engine) as conn:
        return {int(i) for q in (firsts, unknown) for (i,) in conn.execute(q)}


def newest_since(
    files: Sequence[sa.Row[Any]], start: float | None, end: float | None, last: int
) -> float | None:
    """The time from which the ``last`` newest rows of the prediction ``files`` (their
    index rows, :func:`_batches`) in a time range were logged, at the latest (None: from
    the start).

    A file's rows were logged from its ``ts_min`` to its ``ts_max``. The newest files (by
    ``ts_max``) wholly in the range that together hold ``last`` rows hold that many rows
    logged at their lowest ``ts_min`` or later, so the newest ``last`` rows are all from
    then on. (A file that the range cuts is not counted: some of its rows are outside.)

    Example:
        >>> # newest_since(_batches(ctx, "flights", None, None), None, None, 20_000)
    """
    inside = [
        f for f in files if (start is None or f.ts_min >= start) and (end is None or f.ts_max < end)
    ]
    held, since = 0, None
    for f in sorted(inside, key=lambda f: f.ts_max, reverse=True):
        held += f.rows
        since = f.ts_min if since is None else min(since, f.ts_min)
        if held >= last:
            return float(since)
    return start


def newest_files(files: Sequence[Any], since: float, layouts: Set[int]) -> list[Any]:
    """Of the prediction ``files`` (index rows, oldest first, :func:`_batches`), those a
    read of the rows logged from ``since`` on names, oldest first: the files that can hold
    such rows (``ts_max >= since``) and the ``layouts`` files (by row id,
    :func:`layout_files`: the first of each column layout, every one without a layout).

    The others are left out: their rows are all older, and their columns (names, types,
    order) are those of an earlier file named, so a ``union_by_name`` read of what is left
    has the columns, in the order, of a read of every file - at a cost that grows with
    the column layouts the log has, not with its files.

    Example:
        >>> from types import SimpleNamespace as F
        >>> log = [F(id=i, ts_max=float(i)) for i in range(1, 7)]
        >>> [f.id for f in newest_files(log, 5.5, {1, 2, 4})]
        [1, 2, 4, 6]
    """
    return [f for f in files if f.ts_max >= since or f.id in layouts]


def index_ranges(
    ctx: Context, model: str | None
) -> list[tuple[int, str, str | None, str | None, bool]]:
    """``(row id, digest, rid_min, rid_max, several)`` of every prediction file (of
    ``model``): the small part of the request-id index, read whole. ``several``: the file
    has more rows than requests, so some request in it has several rows (a request has
    one row at least: the server and ``log_prediction`` refuse an empty one).

    Example:
        >>> # [digest for _, digest, lo, hi, _ in index_ranges(ctx, "flights")][:1]
    """
    t = prediction_batches
    q = sa.select(
        t.c.id, t.c.digest, t.c.rid_min, t.c.rid_max, (t.c.rows > t.c.requests).label("several")
    ).order_by(t.c.id)
    if model is not None:
        q = q.where(t.c.model == model)
    with reading(ctx.engine) as conn:
        return [(int(r[0]), str(r[1]), r[2], r[3], bool(r[4])) for r in conn.execute(q)]


def index_hashes(
    ctx: Context, ids: Sequence[int], table: sa.Table = prediction_batches
) -> dict[int, bytes | None]:
    """The request-id fingerprints of the prediction files with these row ids (or of the
    files of another ``table`` with a ``rid_hashes`` column: ``label_batches``).

    Example:
        >>> # index_hashes(ctx, [1, 2])[1][:4]  -> b'LLF1'
    """
    t = table
    q = sa.select(t.c.id, t.c.rid_hashes).where(t.c.id.in_(list(ids)))
    with reading(ctx.engine) as conn:
        return {int(r[0]): None if r[1] is None else bytes(r[1]) for r in conn.execute(q)}


@contextmanager
def local_files(ctx: Context, digests: Sequence[str]) -> Iterator[list[str]]:
    """Local paths of stored files for DuckDB (downloaded to a temporary folder from S3).

    Example:
        >>> # with local_files(ctx, digests) as paths: duckdb.read_parquet(paths)
    """
    store = ctx.artifacts
    if isinstance(store, LocalArtifactStore):
        yield [str(store.local_path(d)) for d in digests]
        return
    with tempfile.TemporaryDirectory(prefix="loopline-predlog-") as tmp:
        paths = []
        for d in dict.fromkeys(digests):
            paths.append(str(store.get_file(d, Path(tmp) / f"{d}.parquet")))
        yield paths


_duck_db: tuple[int, Any] | None = None
_duck_lock = threading.Lock()


@contextmanager
def duck() -> Iterator[Any]:
    """A DuckDB connection to the process's in-memory database, closed after use (its
    registered tables and views with it). Opening a database takes ~14 ms (its thread
    pool, its catalog), a connection to an open one next to nothing: a page of live
    metrics reads predictions and labels, and paid for two databases.

    Example:
        >>> with duck() as con:
        ...     con.execute("SELECT 41 + 1").fetchone()
        (42,)
    """
    import duckdb

    global _duck_db
    with _duck_lock:
        # A forked child (a model server's worker) opens its own: the parent's threads
        # are not in it.
        if _duck_db is None or _duck_db[0] != os.getpid():
            _duck_db = (os.getpid(), duckdb.connect())
        con = _duck_db[1].cursor()
    try:
        yield con
    finally:
        con.close()


def read_predictions(
    model: str,
    start: float | pd.Timestamp | str | None = None,
    end: float | pd.Timestamp | str | None = None,
    *,
    last: int | None = None,
) -> pd.DataFrame:
    """The logged predictions of ``model`` between ``start`` and ``end`` (or the ``last``
    N rows), oldest first, as a DataFrame (one row per input row).

    Example:
        >>> # ll.monitor.read_predictions("flights", start="2026-11-26 10:00")
    """
    if last is not None and last < 1:
        raise InvalidInput(
            f"The 'last' parameter of read_predictions must be >= 1. Got {last!r} instead.",
            field="last",
        )
    ctx = get_context()
    flush_default()
    lo, hi = _ts(start), _ts(end)
    files = _batches(ctx, model, lo, hi)
    if not files:
        return pd.DataFrame(columns=list(META_COLUMNS))
    where = []
    params: list[Any] = []
    # The newest ``last`` rows were logged since a time the index tells: with it as a
    # filter DuckDB skips the older files' row groups by their statistics and sorts a few
    # rows, not the whole log. Of the older files, one of each column layout is named, so
    # the columns (their order and types, those of old files too) are those of every file
    # in the range; naming all of them cost a footer read each (0.14 s at 500 files).
    since = lo if last is None else newest_since(files, lo, hi, last)
    if last is not None and since is not None:
        files = newest_files(files, since, layout_files(ctx, model, lo, hi))
    digests = [f.digest for f in files]
    if since is not None:
        where.append("_ts >= ?")
        params.append(since)
    if hi is not None:
        where.append("_ts < ?")
        params.append(hi)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    with local_files(ctx, digests) as paths, duck() as con:
        source = f"SELECT * FROM read_parquet(?, union_by_name=true) {clause}"
        if last is None:
            sql = f"{source} ORDER BY _ts, _row"
        else:
            sql = (
                f"SELECT * FROM ({source} ORDER BY _ts DESC, _row DESC LIMIT ?) ORDER BY _ts, _row"
            )
            params.append(last)
        frame: pd.DataFrame = con.execute(sql, [paths, *params]).df()
    return frame
