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
``probability``). :func:`~.log_reads.read_predictions` reads them back with DuckDB.

Example:
    >>> # logger = PredictionLogger(ctx)
    >>> # logger.log("r-1", "flights", "3", [{"temp": 41.0}], [1], latency_ms=1.2)
    >>> # logger.flush(); read_predictions("flights").shape
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import orjson
import sqlalchemy as sa

from loopline.core.context import Context, get_context
from loopline.core.db import reading
from loopline.monitoring.log_files import _File, _files, _hour
from loopline.monitoring.log_records import (
    SERVED,
    _call_record,
    _Entry,
    _replayed,
    _served_record,
)
from loopline.monitoring.rid_index import index_columns
from loopline.monitoring.spool import MAGIC, Segment, Spool, read_records, store_folder
from loopline.monitoring.tables import prediction_batches, prediction_spool

log = logging.getLogger("loopline.monitoring")


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
