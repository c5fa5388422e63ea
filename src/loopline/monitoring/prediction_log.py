"""The prediction log: every answered request, spooled, buffered in memory and written in
batches.

:meth:`PredictionLogger.log_request` is on the model server's hot path, before the answer
is sent. It writes one record - the request body and the answer as sent, behind a small
header (:mod:`.spool`: one ``write``, no fsync, no JSON work) - to this logger's local
spool segment, appends one tuple to a ``collections.deque`` and returns: no conversion,
no SQL on the caller's thread. A background thread wakes when ``max_rows`` requests are
waiting, every ``interval`` seconds, on :meth:`~PredictionLogger.flush` and at exit; it
turns the waiting requests into rows (one per input row), groups them by model and hour,
writes one Parquet file per group into the artifact store (content-addressed, fsynced and
renamed into place by the store) and then records, in one transaction, one index row per
file in ``prediction_batches``, with the file's request-id range and fingerprints
(:mod:`.rid_index`) so that labels find their files without reading the others, and the
spool segment's flush mark (``prediction_spool``: the byte offset up to which its records
are stored). A batch is durable once :meth:`~PredictionLogger.flush` returned: the file
is in the store and its index row committed.

A process killed before its next batch (SIGKILL, the OOM killer) loses nothing it
answered: a ``write`` is in the page cache, which outlives the process. When a logger
starts (the model server starts one), its writer thread first takes the segments that no
live process holds (:meth:`PredictionLogger.recover`), replays their records past their
flush mark through the same conversion into the same files and index, and deletes them:
each request is written once, as the mark moves in the transaction of its index row. A
power loss can still lose the requests not yet written in a batch: an fsync per request
would cost about 0.2 ms of a 0.28 ms request. ``log`` (``ll.monitor.log_prediction``)
spools its call as JSON; values JSON would change (a numpy number, a tuple, a datetime)
are never coerced: such a request stays in memory only, counted in ``unspooled``, with one
warning.

A request whose rows Arrow or Parquet cannot store (a value no column type holds, columns
whose types clash) is dropped on its own, counted in ``dropped`` and named in one logged
error; the rest of its batch is written. Only a failing store (the artifact store or the
database) puts a batch back in the queue, to be retried: a request that cannot be
converted now never can, and retrying it would stop the log for every model.

A file's columns: the model's input columns under their own names (every column any of
its requests sent, None where one did not: :mod:`.log_columns`), and ``_request_id``,
``_ts`` (epoch seconds), ``_version``, ``_latency_ms`` (the model server's: from the
request's arrival to its answer made, the send not in it), ``_row`` (index of the row in its
request) and ``_prediction`` (``_score`` too when an output is a dict with a ``score`` or
``probability``). :func:`read_predictions` reads them back with DuckDB.

Example:
    >>> # logger = PredictionLogger(ctx)
    >>> # logger.log("r-1", "flights", "3", [{"temp": 41.0}], [1], latency_ms=1.2)
    >>> # logger.flush(); read_predictions("flights").shape
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import io
import json
import logging
import math
import os
import struct
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence, Set
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from loopline.core.artifacts import LocalArtifactStore
from loopline.core.context import Context, get_context
from loopline.core.db import reading
from loopline.errors import InvalidInput
from loopline.monitoring.log_columns import META_COLUMNS, LogColumns, RawInputs
from loopline.monitoring.rid_index import index_columns
from loopline.monitoring.spool import MAGIC, Segment, Spool, read_records, store_folder
from loopline.monitoring.tables import prediction_batches, prediction_spool
from loopline.serving.inputs import parse_accepted

log = logging.getLogger("loopline.monitoring")

#: ``(ts, request id, model, version, inputs, outputs, latency ms, segment, end)``: the
#: last two say where the request's spool record ends (None, 0: it has none). A model
#: server's request has its spool record (bytes) as ``inputs`` and :data:`SERVED` as
#: ``outputs``: held until the next batch, bytes are never walked by the collector, where
#: the parsed rows and predictions (~7 objects a request) made its collections cost
#: ~14 us a request (a young one every ~300 requests took ~1 ms, an older one ~40 ms).
_Entry = tuple[float, str, str, str, Any, Any, float, Segment | None, int]
#: The ``outputs`` of a model server's entry: its ``inputs`` are its spool record.
SERVED = object()
#: A server's spool record: b"R", ts, latency, then the lengths of its meta (model,
#: version, the signature's names and types as JSON) and of the request body; the answer
#: as sent takes the rest.
_SERVED = struct.Struct("<cddII")
#: An SDK call's spool record: b"E" then the call as JSON (NaN and Infinity allowed).
_CALLED = b"E"
#: What turning entries into a Parquet file raises when the data cannot be stored (no Arrow
#: type holds a value, values of one column clash, Parquet has no form for a type): errors
#: of the entries, which no retry cures. The store's own errors are not among them.
_DATA_ERRORS = (pa.ArrowException, ValueError, TypeError, OverflowError)


def _hour(ts: float) -> float:
    return float(math.floor(ts / 3600.0) * 3600)


def entries_to_table(entries: Sequence[_Entry]) -> pa.Table:
    """Rows (one per input row) of logged requests as an Arrow table: every input column
    any request sent (None where one did not), then :data:`META_COLUMNS` (see
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


def _nonfinite(value: Any) -> bool:
    """Whether ``value`` - plain JSON data: dicts with text keys, lists, text, int, float,
    bool, None, of exactly these types - holds a NaN or an infinity; TypeError for
    anything else (a tuple, a numpy number, a datetime), which JSON would change."""
    t = type(value)
    if t is float:
        return not math.isfinite(value)
    if t is str or t is int or t is bool or value is None:
        return False
    if t is list:
        return any([_nonfinite(v) for v in value])  # a list, not a generator: check all
    if t is dict:
        for k in value:
            if type(k) is not str:
                raise TypeError(f"a key of type {type(k).__name__}: {k!r:.40}")
        return any([_nonfinite(v) for v in value.values()])
    raise TypeError(f"a value of type {t.__name__}: {value!r:.40}")


#: orjson refuses these rather than turning them into text (a datetime, a dataclass, a
#: subclass of str, int, dict or list: an IntEnum); numpy numbers it refuses by default.
_STRICT = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_STRICT |= orjson.OPT_PASSTHROUGH_SUBCLASS


def _call_record(call: list[Any]) -> bytes:
    """The spool record of a :meth:`PredictionLogger.log` call; TypeError when its values
    are not plain JSON data (replayed, they would come back as something else).

    The usual call is encoded by orjson and read back equal: plain data (a tuple would
    come back a list, a NaN None, a UUID text). Only the others are walked.
    """
    try:
        data = orjson.dumps(call, option=_STRICT)
        if orjson.loads(data) == call:
            return _CALLED + data
    except TypeError:
        pass
    _nonfinite(call)  # TypeError for what is no plain data
    # NaN, infinity, an int past 64 bits, a lone surrogate: the standard module holds them
    return _CALLED + json.dumps(call, separators=(",", ":")).encode()


def _served_record(ts: float, latency_ms: float, meta: bytes, body: bytes, answer: bytes) -> bytes:
    """A model server's spool record: the header, ``meta`` (model, version, the
    signature's names and types as JSON), the request ``body`` and the ``answer`` as sent."""
    return b"".join((_SERVED.pack(b"R", ts, latency_ms, len(meta), len(body)), meta, body, answer))


@functools.lru_cache(maxsize=256)
def _served_meta(meta: bytes) -> tuple[str, str, list[str] | None, list[str] | None]:
    """A record's model, version, names and types (the same few per server: decoded once)."""
    model, version, names, types = orjson.loads(meta)
    return model, version, names, types


def _served(record: bytes) -> tuple[float, float, str, str, str, RawInputs, Any]:
    """The time, latency, model, version, request id, inputs and predictions of a model
    server's spool record, its body parsed as the server parsed it when it answered
    (raises on a record of another kind)."""
    kind, ts, latency, meta_len, body_len = _SERVED.unpack_from(record)
    if kind != b"R":
        raise ValueError(f"a spool record of unknown kind {kind!r}")
    at = _SERVED.size
    model, version, names, types = _served_meta(record[at : at + meta_len])
    body = record[at + meta_len : at + meta_len + body_len]
    answer = orjson.loads(record[at + meta_len + body_len :])
    shape, rows = parse_accepted(body)
    inputs = RawInputs(shape, rows, names, types)
    return ts, latency, model, version, answer["request_id"], inputs, answer["predictions"]


def _replayed(payload: bytes, seg: Segment, end: int) -> _Entry:
    """The queue entry of a spool record (raises on one that is not a record): a model
    server's is queued as its record, as the server queued it (parsed here once to check
    it, then again when its batch is made)."""
    if payload[:1] == _CALLED:
        ts, rid, model, version, inputs, outputs, latency = json.loads(payload[1:])
        return (ts, rid, model, version, inputs, outputs, latency, seg, end)
    ts, latency, model, version, rid, _, _ = _served(payload)
    return (ts, rid, model, version, payload, SERVED, latency, seg, end)


def _marks(entries: Sequence[_Entry], owed: dict[Segment, int]) -> dict[Segment, int]:
    """Per spool segment, the end of the last of ``entries`` in it (or ``owed``, if later)."""
    marks = dict(owed)
    for e in entries:
        seg = e[7]
        if seg is not None and e[8] > marks.get(seg, 0):
            marks[seg] = e[8]
    return marks


class PredictionLogger:
    """Buffers predictions in memory and writes them as Parquet batches in a thread; each
    request is in the local spool first (see the module), from which a later logger
    replays what a killed process had not written.

    ``max_rows`` requests waiting wake the writer; ``interval`` seconds bound how long a
    request waits; ``max_buffer`` requests waiting make :meth:`log` drop the oldest (counted
    in ``dropped``) rather than grow without bound when the store is down. ``dropped`` also
    counts the requests whose rows could not be stored (see the module). ``unspooled``
    counts the requests kept in memory only (a value JSON does not hold as it is, a spool
    that cannot be written); ``recovered`` the requests replayed from dead processes'
    spools. ``spool=False``: no spool (memory only, as before the spool existed).

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
        spool: bool = True,
    ) -> None:
        self.ctx = ctx or get_context()
        self.max_rows = max_rows
        self.interval = interval
        self.max_buffer = max_buffer
        self.dropped = 0
        self.unspooled = 0
        self.recovered = 0
        self.written_files = 0
        self.written_rows = 0
        self._buf: deque[_Entry] = deque()
        # Held while a request goes to the spool and the queue, so that the queue's order
        # is the spool's: a flush mark past one entry is past every entry before it.
        self._lock = threading.Lock()
        self._owed: dict[Segment, int] = {}
        self._meta: dict[tuple[str, str], tuple[Any, Any, bytes]] = {}
        self._spool = self._open_spool() if spool else None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._flush_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        if start:
            self.start()

    def _open_spool(self) -> Spool | None:
        settings = self.ctx.settings
        folder = store_folder(settings.spool_dir, settings.metadata_uri, settings.artifacts_uri)
        try:
            return Spool(folder)
        except OSError as exc:
            log.error(
                "the prediction log cannot spool to %s (%s): answered requests are kept in "
                "memory only until written, and lost if the process is killed; set "
                "LOOPLINE_SPOOL to a writable local folder",
                folder,
                exc,
            )
            return None

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
        """Queue one answered request, written to the spool first (one ``write``, no
        fsync); returns at once (no conversion, no SQL). A request whose values JSON would
        change (a numpy number, a tuple, a datetime: pass Python values) is queued in memory
        only, counted in ``unspooled``, with one warning.

        Example:
            >>> # logger.log("r-1", "flights", 3, [{"temp": 41.0}], [1], latency_ms=0.9)
        """
        ts, version = time.time(), str(version)
        record = None
        if self._spool is not None:
            try:
                call = [ts, request_id, model, version, inputs, outputs, latency_ms]
                record = _call_record(call)
            except TypeError as exc:
                self._not_spooled(f"request {request_id!r} holds {exc}; pass plain Python values")
        self._queue(ts, request_id, model, version, inputs, outputs, latency_ms, record)

    def log_request(
        self,
        request_id: str,
        model: str,
        version: str,
        names: list[str] | None,
        latency_ms: float,
        types: Sequence[str] | None = None,
        *,
        body: bytes,
        answer: bytes,
    ) -> None:
        """:meth:`log` for the model server: the request ``body`` and the ``answer`` as
        sent (JSON with ``predictions`` and ``request_id``) make one spool record behind a
        small header, queued as it is: no JSON work here. The writer thread parses the
        body as the server did (``serving.inputs``) into rows named by ``names``, each
        value of its column's type in ``types`` (the signature's).

        Example:
            >>> # logger.log_request(rid, "flights", "3", ["temp"], 0.9, ["float"],
            >>> #                    body=b'{"inputs": [[41]]}', answer=out)
        """
        ts = time.time()
        meta = self._meta.get((model, version))
        if meta is None or meta[0] is not names or meta[1] is not types:
            encoded = orjson.dumps([model, version, names, types])
            meta = self._meta[model, version] = (names, types, encoded)
        record = _served_record(ts, latency_ms, meta[2], body, answer)
        self._queue(ts, request_id, model, version, record, SERVED, latency_ms, record)

    def _queue(
        self,
        ts: float,
        request_id: str,
        model: str,
        version: str,
        inputs: Any,
        outputs: Any,
        latency_ms: float,
        record: bytes | None,
    ) -> None:
        """Spool ``record`` (None: memory only) and queue the entry, under the lock that
        keeps the queue in the spool's order."""
        buf, spool = self._buf, self._spool
        with self._lock:
            seg, end = None, 0
            if record is not None and spool is not None:
                try:
                    seg, end = spool.append(record)
                except OSError as exc:
                    self._not_spooled(f"the spool cannot be written: {exc}")
            buf.append((ts, request_id, model, version, inputs, outputs, latency_ms, seg, end))
            n = len(buf)
        if n >= self.max_rows:
            if n > self.max_buffer:
                buf.popleft()
                self.dropped += 1
            self._wake.set()

    def _not_spooled(self, why: str) -> None:
        self.unspooled += 1
        if self.unspooled == 1:  # one line, not one per request: `unspooled` counts them
            log.warning(
                "the prediction log keeps a request in memory only (lost if the process is "
                "killed before it is written; counted in `unspooled`): %s",
                why,
            )

    # -- the writer ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background writer (done by the constructor unless ``start=False``);
        its first work is :meth:`recover`.

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
        recovered = False
        while not self._stop.is_set():
            if not recovered:  # retried every interval: the store may be down at start
                recovered = self._attempt(self.recover, "replaying the prediction log's spool")
            self._wake.wait(self.interval)
            self._wake.clear()
            self._attempt(self.flush, "writing the prediction log")

    def _attempt(self, work: Any, what: str) -> bool:
        try:
            work()
        except Exception:  # the writer must outlive a store outage; rows stay buffered
            log.exception("%s failed; retrying", what)
            self._stop.wait(min(self.interval, 1.0))
            return False
        return True

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
            if not entries and not self._owed:
                return 0
            try:
                files = self._convert(entries)
            except BaseException:
                self._buf.extendleft(reversed(entries))  # not lost: retried on the next flush
                raise
            marks = _marks(entries, self._owed)
            try:
                rows = self._write(files, marks)
            except BaseException:
                # Not lost: retried on the next flush, in their order; the entries that
                # could not be converted were dropped and counted once, not again - the
                # spool's mark moves past them with the next flush's.
                kept = {id(e) for f in files for e in f.entries}
                self._buf.extendleft(reversed([e for e in entries if id(e) in kept]))
                self._owed = marks
                raise
            self._owed = {}
            self._release_done()
            return rows

    def _release_done(self) -> None:
        """Delete the segments written in full and no longer written to, then their marks."""
        if self._spool is not None:
            with self._lock:  # the request path may be starting a segment
                done = self._spool.release_done()
            self._forget(done)

    def _forget(self, segments: Sequence[Segment]) -> None:
        # After the files are gone: a mark without its file is a stray row, a file without
        # its mark would be replayed from its start.
        if segments:
            names = [s.name for s in segments]
            with self.ctx.engine.begin() as conn:
                conn.execute(
                    sa.delete(prediction_spool).where(prediction_spool.c.segment.in_(names))
                )

    def recover(self) -> int:
        """Replay the spool segments that dead processes left in this store's spool folder
        (records past their flush mark, through the same conversion and files), then delete
        them; return the number of requests replayed. The writer thread does it first.

        Example:
            >>> # logger.recover()  -> requests a killed server had answered, now written
        """
        if self._spool is None:
            return 0
        total = 0
        for seg in self._spool.orphans():
            try:
                count = self._replay(seg)
            except BaseException:
                seg.close(delete=False)  # kept, for the next try
                raise
            seg.close(delete=True)
            self._forget([seg])
            total += count
            log.warning(
                "the prediction log recovered %d requests from %s, left by a process that "
                "ended before writing them",
                count,
                seg.path,
            )
        self.recovered += total
        return total

    def _replay(self, seg: Segment) -> int:
        with reading(self.ctx.engine) as conn:
            mark = conn.execute(
                sa.select(prediction_spool.c.flushed).where(prediction_spool.c.segment == seg.name)
            ).scalar()
        seg.flushed = len(MAGIC) if mark is None else int(mark)
        batch: list[_Entry] = []
        count = 0
        for end, payload in read_records(seg.path, seg.flushed):
            try:
                batch.append(_replayed(payload, seg, end))
            except Exception as exc:  # whole (its CRC holds) yet not a request: skipped
                self.dropped += 1
                log.error("a record of %s is no logged request, skipped: %s", seg.path, exc)
            count += 1
            if len(batch) >= self.max_rows:
                self._store(batch, {seg: end})
                batch = []
            seg.flushed = end
        self._store(batch, {seg: seg.flushed})
        return count

    def _store(self, entries: list[_Entry], marks: dict[Segment, int]) -> None:
        with self._flush_lock:
            self._write(self._convert(entries), marks)

    def _convert(self, entries: list[_Entry]) -> list[_File]:
        """The Parquet files of ``entries``, by model and hour; the entries that cannot be
        stored are dropped, counted and named in one logged error."""
        groups: dict[tuple[str, float], list[_Entry]] = {}
        for e in entries:
            groups.setdefault((e[2], _hour(e[0])), []).append(e)
        bad: list[tuple[_Entry, Exception]] = []
        files = [
            f for (model, hour), items in groups.items() for f in _files(model, hour, items, bad)
        ]
        if bad:
            self.dropped += len(bad)
            (first, exc), *_ = bad
            models = sorted({e[2] for e, _ in bad})
            log.error(
                "the prediction log cannot store %d of %d requests (models %s): dropped them, "
                "wrote the others; the first, request %r of %r: %s: %s",
                len(bad),
                len(entries),
                ", ".join(map(repr, models)),
                first[1],
                first[2],
                type(exc).__name__,
                exc,
            )
        return files

    def _write(self, files: list[_File], marks: dict[Segment, int]) -> int:
        """Store ``files``, then in one transaction their index rows and the spool ``marks``
        (each segment's records up to there are stored): a kill before the commit replays
        them, after it does not."""
        index: list[dict[str, Any]] = []
        rows = 0
        for f in files:
            digest = self.ctx.artifacts.put_bytes(f.data)
            stamps = [e[0] for e in f.entries]
            index.append(
                {
                    "model": f.model,
                    "hour": f.hour,
                    "digest": digest,
                    "rows": f.rows,
                    "requests": len(f.entries),
                    "ts_min": min(stamps),
                    "ts_max": max(stamps),
                    "created": time.time(),
                    "schema_digest": f.schema,
                    **index_columns([e[1] for e in f.entries]),
                }
            )
            rows += f.rows
        if index or marks:
            with self.ctx.engine.begin() as conn:
                if index:
                    conn.execute(sa.insert(prediction_batches), index)
                _set_marks(conn, marks)
        for seg, end in marks.items():
            seg.flushed = max(seg.flushed, end)
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
        try:
            self.flush()
        finally:
            # The segments written in full go; the others (the store failed) stay for the
            # next logger to replay.
            if self._spool is not None:
                with self._lock:
                    spool, self._spool = self._spool, None
                    done = spool.close()
                self._forget(done)

    def __enter__(self) -> PredictionLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _set_marks(conn: sa.Connection, marks: dict[Segment, int]) -> None:
    now = time.time()
    t = prediction_spool
    for seg, end in marks.items():
        moved = conn.execute(
            sa.update(t).where(t.c.segment == seg.name).values(flushed=end, updated=now)
        )
        if moved.rowcount == 0:  # its first flush: only this process writes its mark
            conn.execute(sa.insert(t).values(segment=seg.name, flushed=end, updated=now))


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
