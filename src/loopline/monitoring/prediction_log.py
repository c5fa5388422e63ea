"""The prediction log: every answered request, buffered in memory and written in batches.

:meth:`PredictionLogger.log` is on the model server's hot path. It appends one tuple to a
``collections.deque`` (atomic under the GIL, no lock) and returns: no I/O, no conversion,
no SQL on the caller's thread. A background thread wakes when ``max_rows`` requests are
waiting, every ``interval`` seconds, on :meth:`~PredictionLogger.flush` and at exit; it
turns the waiting requests into rows (one per input row), groups them by model and hour,
writes one Parquet file per group into the artifact store (content-addressed, fsynced and
renamed into place by the store) and then records one index row per file in
``prediction_batches``, with the file's request-id range and fingerprints
(:mod:`.rid_index`) so that labels find their files without reading the others. A batch
is durable once :meth:`~PredictionLogger.flush` returned:
the file is in the store and its index row committed.

A file's columns: the model's input columns under their own names, and ``_request_id``,
``_ts`` (epoch seconds), ``_version``, ``_latency_ms``, ``_row`` (index of the row in its
request) and ``_prediction`` (``_score`` too when an output is a dict with a ``score`` or
``probability``). :func:`read_predictions` reads them back with DuckDB.

Example:
    >>> # logger = PredictionLogger(ctx)
    >>> # logger.log("r-1", "flights", "3", [{"temp": 41.0}], [1], latency_ms=1.2)
    >>> # logger.flush(); read_predictions("flights").shape
"""

from __future__ import annotations

import atexit
import io
import logging
import math
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from loopline.core.artifacts import LocalArtifactStore
from loopline.core.context import Context, get_context
from loopline.errors import InvalidInput
from loopline.monitoring.rid_index import index_columns
from loopline.monitoring.tables import prediction_batches

log = logging.getLogger("loopline.monitoring")

#: Columns every prediction file has besides the model's inputs.
META_COLUMNS = ("_request_id", "_ts", "_version", "_latency_ms", "_row", "_prediction")

_Entry = tuple[float, str, str, str, Any, Any, float]


def _hour(ts: float) -> float:
    return float(math.floor(ts / 3600.0) * 3600)


def _split_output(out: Any) -> tuple[Any, float | None]:
    if isinstance(out, dict):
        score = out.get("score", out.get("probability"))
        value = out.get("prediction", out.get("label", score))
        return value, None if score is None else float(score)
    return out, None


class RawInputs:
    """A request body as the model server parsed it, turned into rows on the writer thread."""

    __slots__ = ("names", "rows", "shape")

    def __init__(self, shape: str, rows: Any, names: list[str] | None) -> None:
        self.shape, self.rows, self.names = shape, rows, names

    def records(self) -> list[dict[str, Any]]:
        """One dict per row: ``records`` as sent, ``lists`` by the signature's names,
        ``split`` by its ``columns``.

        Example:
            >>> RawInputs("split", (["a"], [[1], [2]]), None).records()
            [{'a': 1}, {'a': 2}]
        """
        if self.shape == "split":
            columns, data = self.rows
            return [dict(zip(columns, row, strict=False)) for row in data]
        if self.shape == "lists":
            if self.names:
                return [dict(zip(self.names, row, strict=False)) for row in self.rows]
            return [{"_input": list(row)} for row in self.rows]
        return list(self.rows)


def entries_to_table(entries: Sequence[_Entry]) -> pa.Table:
    """Rows (one per input row) of logged requests as an Arrow table.

    Example:
        >>> t = entries_to_table([(0.0, "r", "m", "1", [{"x": 1.0}], [0], 2.0)])
        >>> t.column("_prediction").to_pylist(), t.column("x").to_pylist()
        ([0], [1.0])
    """
    records: list[dict[str, Any]] = []
    scored = False
    for ts, rid, _model, version, inputs, outputs, latency in entries:
        if isinstance(inputs, RawInputs):
            inputs = inputs.records()
        rows = inputs if isinstance(inputs, list) else [inputs]
        outs = outputs if isinstance(outputs, list) else [outputs]
        for i, row in enumerate(rows):
            value, score = _split_output(outs[i] if i < len(outs) else None)
            rec = dict(row) if isinstance(row, dict) else {"_input": row}
            rec.update(
                _request_id=rid,
                _ts=ts,
                _version=version,
                _latency_ms=latency,
                _row=i,
                _prediction=value,
            )
            if score is not None:
                rec["_score"] = score
                scored = True
            records.append(rec)
    if scored:
        for rec in records:
            rec.setdefault("_score", None)
    return pa.Table.from_pylist(records)


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


class PredictionLogger:
    """Buffers predictions in memory and writes them as Parquet batches in a thread.

    ``max_rows`` requests waiting wake the writer; ``interval`` seconds bound how long a
    request waits; ``max_buffer`` requests waiting make :meth:`log` drop the oldest (counted
    in ``dropped``) rather than grow without bound when the store is down.

    Example:
        >>> # with PredictionLogger(ctx, interval=1.0) as logger:
        >>> #     logger.log("r-1", "flights", "3", [{"temp": 41.0}], [1], 0.8)
    """

    def __init__(
        self,
        ctx: Context | None = None,
        *,
        max_rows: int = 10_000,
        interval: float = 5.0,
        max_buffer: int = 1_000_000,
        start: bool = True,
    ) -> None:
        self.ctx = ctx or get_context()
        self.max_rows = max_rows
        self.interval = interval
        self.max_buffer = max_buffer
        self.dropped = 0
        self.written_files = 0
        self.written_rows = 0
        self._buf: deque[_Entry] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._flush_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        if start:
            self.start()

    # -- the hot path ----------------------------------------------------------------------

    def log(
        self,
        request_id: str,
        model: str,
        version: str | int,
        inputs: list[dict[str, Any]] | Any,
        outputs: list[Any] | Any,
        latency_ms: float,
    ) -> None:
        """Queue one answered request; returns at once (no I/O, no conversion).

        Example:
            >>> # logger.log("r-1", "flights", 3, [{"temp": 41.0}], [1], latency_ms=0.9)
        """
        buf = self._buf
        buf.append((time.time(), request_id, model, str(version), inputs, outputs, latency_ms))
        n = len(buf)
        if n >= self.max_rows:
            if n > self.max_buffer:
                buf.popleft()
                self.dropped += 1
            self._wake.set()

    def log_request(
        self,
        request_id: str,
        model: str,
        version: str,
        shape: str,
        rows: Any,
        names: list[str] | None,
        outputs: list[Any],
        latency_ms: float,
    ) -> None:
        """:meth:`log` for the model server: the parsed body as it is (``shape``, ``rows``
        from ``serving.inputs.parse``), turned into named rows on the writer thread.

        Example:
            >>> # logger.log_request(rid, "flights", "3", "records", [{"temp": 41.0}],
            >>> #                    None, [1], 0.9)
        """
        self.log(request_id, model, version, RawInputs(shape, rows, names), outputs, latency_ms)

    # -- the writer ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background writer (done by the constructor unless ``start=False``).

        Example:
            >>> # PredictionLogger(ctx, start=False).start()
        """
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="loopline-predlog", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # the writer must outlive a store outage; rows stay buffered
                log.exception("writing the prediction log failed; retrying")
                self._stop.wait(min(self.interval, 1.0))

    def _take(self) -> list[_Entry]:
        buf = self._buf
        return [buf.popleft() for _ in range(len(buf))]

    def flush(self) -> int:
        """Write everything waiting now; return the number of rows written (durable then).

        Example:
            >>> # logger.flush()
        """
        with self._flush_lock:
            entries = self._take()
            if not entries:
                return 0
            try:
                return self._write(entries)
            except BaseException:
                self._buf.extendleft(reversed(entries))  # not lost: retried on the next flush
                raise

    def _write(self, entries: list[_Entry]) -> int:
        groups: dict[tuple[str, float], list[_Entry]] = {}
        for e in entries:
            groups.setdefault((e[2], _hour(e[0])), []).append(e)
        index: list[dict[str, Any]] = []
        rows = 0
        for (model, hour), items in groups.items():
            table = entries_to_table(items)
            digest = self.ctx.artifacts.put_bytes(_parquet_bytes(table))
            stamps = [e[0] for e in items]
            index.append(
                {
                    "model": model,
                    "hour": hour,
                    "digest": digest,
                    "rows": table.num_rows,
                    "requests": len(items),
                    "ts_min": min(stamps),
                    "ts_max": max(stamps),
                    "created": time.time(),
                    **index_columns([e[1] for e in items]),
                }
            )
            rows += table.num_rows
        with self.ctx.engine.begin() as conn:
            conn.execute(sa.insert(prediction_batches), index)
        self.written_files += len(index)
        self.written_rows += rows
        return rows

    def close(self) -> None:
        """Stop the writer and write what is left.

        Example:
            >>> # logger.close()
        """
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        atexit.unregister(self.close)
        self.flush()

    def __enter__(self) -> PredictionLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_default: PredictionLogger | None = None
_default_lock = threading.Lock()


def get_logger() -> PredictionLogger:
    """The process's prediction logger on the current context (started on first use).

    Example:
        >>> # get_logger().log("r-1", "flights", "3", [{"temp": 41.0}], [1], 0.9)
    """
    global _default
    with _default_lock:
        ctx = get_context()
        if _default is None or _default.ctx is not ctx:
            if _default is not None:
                _default.close()
            _default = PredictionLogger(ctx)
        return _default


def flush_default() -> None:
    """Flush the process's prediction logger if there is one (before reading the log).

    Example:
        >>> flush_default()
    """
    if _default is not None and _default.ctx is get_context():
        _default.flush()


# -- readers -------------------------------------------------------------------------------


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
    t = prediction_batches
    q = sa.select(t.c.digest).order_by(t.c.id)
    if model is not None:
        q = q.where(t.c.model == model)
    if start is not None:
        q = q.where(t.c.ts_max >= start)
    if end is not None:
        q = q.where(t.c.ts_min < end)
    with ctx.engine.connect() as conn:
        return [r[0] for r in conn.execute(q)]


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
    with ctx.engine.connect() as conn:
        return [(int(r[0]), str(r[1]), r[2], r[3], bool(r[4])) for r in conn.execute(q)]


def index_hashes(ctx: Context, ids: Sequence[int]) -> dict[int, bytes | None]:
    """The request-id fingerprints of the prediction files with these row ids.

    Example:
        >>> # index_hashes(ctx, [1, 2])[1][:4]  -> b'LLF1'
    """
    t = prediction_batches
    q = sa.select(t.c.id, t.c.rid_hashes).where(t.c.id.in_(list(ids)))
    with ctx.engine.connect() as conn:
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
    import duckdb

    if last is not None and last < 1:
        raise InvalidInput(
            f"The 'last' parameter of read_predictions must be >= 1. Got {last!r} instead.",
            field="last",
        )
    ctx = get_context()
    flush_default()
    lo, hi = _ts(start), _ts(end)
    digests = batch_files(ctx, model, lo, hi)
    if not digests:
        return pd.DataFrame(columns=list(META_COLUMNS))
    where = []
    params: list[Any] = []
    if lo is not None:
        where.append("_ts >= ?")
        params.append(lo)
    if hi is not None:
        where.append("_ts < ?")
        params.append(hi)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    with local_files(ctx, digests) as paths:
        con = duckdb.connect()
        try:
            source = f"SELECT * FROM read_parquet(?, union_by_name=true) {clause}"
            if last is None:
                sql = f"{source} ORDER BY _ts, _row"
            else:
                sql = (
                    f"SELECT * FROM ({source} ORDER BY _ts DESC, _row DESC LIMIT ?) "
                    "ORDER BY _ts, _row"
                )
                params.append(last)
            frame: pd.DataFrame = con.execute(sql, [paths, *params]).df()
        finally:
            con.close()
    return frame
