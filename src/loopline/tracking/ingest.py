"""Fast metric ingest: an in-memory buffer and a background thread that writes it in batches.

Logging a metric costs the caller one append to a list under a lock (well under 10 µs).
A daemon thread wakes every :data:`FLUSH_INTERVAL_S` seconds, or as soon as
:data:`BATCH_ROWS` points are waiting, takes the whole buffer and writes it with
:func:`loopline.tracking.metrics.write_rows`: one bulk insert and one ``latest_metrics``
upsert per key, in one transaction per batch of at most :data:`MAX_TRANSACTION_ROWS`.

Durability contract: when :meth:`MetricWriter.flush` returns, every point added before the
call is committed. A batch that fails to write goes back to the front of the buffer and is
retried; the error is raised by the next ``flush``. Writers are flushed at run end and at
interpreter exit (``atexit``). When more than :data:`MAX_PENDING_ROWS` points are waiting
(the database is down or too slow), ``add`` flushes in the caller's thread, so memory stays
bounded and the error reaches the caller. A forked child starts with an empty buffer
(the parent writes what was pending) and reconnects.

Example:
    >>> from loopline.core.db import create_engine_for, upgrade
    >>> engine = create_engine_for("sqlite:///:memory:"); upgrade(engine)
    >>> writer = MetricWriter(engine)
    >>> # writer.add((run_id, "loss", 0.5, 1700000000000, 0, 0)); writer.flush()
    >>> writer.close()
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Sequence

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from loopline.errors import BackendUnavailable
from loopline.tracking._dialect import MetricRow
from loopline.tracking.metrics import write_rows

#: The background thread writes at least this often (seconds).
FLUSH_INTERVAL_S = 0.1
#: The background thread is woken early once this many points wait.
BATCH_ROWS = 20_000
#: A batch is written in transactions of at most this many points.
MAX_TRANSACTION_ROWS = 100_000
#: Past this many waiting points, ``add`` writes in the caller's thread (backpressure).
MAX_PENDING_ROWS = 1_000_000
_RETRY_PAUSE_S = 0.5

_live: set[MetricWriter] = set()
_live_lock = threading.Lock()


class MetricWriter:
    """Buffers stored-form metric rows and writes them on a background thread.

    Example:
        >>> # w = MetricWriter(engine); w.add(row); w.flush(); w.close()
    """

    def __init__(self, engine: Engine, *, interval: float = FLUSH_INTERVAL_S) -> None:
        self.engine = engine
        self.interval = interval
        self.written = 0
        self._init_state()
        with _live_lock:
            _live.add(self)

    def _init_state(self) -> None:
        self._lock = threading.Lock()  # guards _buf
        self._write_lock = threading.Lock()  # one batch in flight at a time
        self._buf: list[MetricRow] = []
        self._wake = threading.Event()
        self._stopping = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def add(self, row: MetricRow) -> None:
        """Queue one stored-form row; cheap (a locked append).

        Example:
            >>> # writer.add((run_id, "loss", 0.5, 1700000000000, 3, 0))
        """
        with self._lock:
            buf = self._buf
            buf.append(row)
            pending = len(buf)
        if pending >= BATCH_ROWS:
            self._wake.set()
            if pending >= MAX_PENDING_ROWS:
                self.flush()
        if self._thread is None:
            self._start()

    def extend(self, rows: Sequence[MetricRow]) -> None:
        """Queue many stored-form rows under one lock.

        Example:
            >>> # writer.extend([(run_id, "loss", 0.5, ts, 3, 0),
            >>> #                (run_id, "acc", 0.9, ts, 3, 0)])
        """
        with self._lock:
            buf = self._buf
            buf.extend(rows)
            pending = len(buf)
        if pending >= BATCH_ROWS:
            self._wake.set()
            if pending >= MAX_PENDING_ROWS:
                self.flush()
        if self._thread is None:
            self._start()

    @property
    def pending(self) -> int:
        """How many points wait to be written."""
        with self._lock:
            return len(self._buf)

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            if self._closed:  # used again after close(): live again until the next close
                self._closed = self._stopping = False
                with _live_lock:
                    _live.add(self)
            self._thread = threading.Thread(
                target=self._loop, name="loopline-metric-writer", daemon=True
            )
            self._thread.start()

    def _loop(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            stopping = self._stopping
            try:
                self._drain()
            except Exception as exc:  # kept for the next flush(), which raises it
                self.error = exc
                if stopping:
                    return
                self._wake.wait(_RETRY_PAUSE_S)
                continue
            if stopping:
                return

    def _drain(self) -> None:
        with self._write_lock:
            with self._lock:
                batch, self._buf = self._buf, []
            done = 0
            try:
                while done < len(batch):
                    chunk = (
                        batch
                        if len(batch) <= MAX_TRANSACTION_ROWS
                        else batch[done : done + MAX_TRANSACTION_ROWS]
                    )
                    with self.engine.begin() as conn:
                        write_rows(conn, chunk)
                    done += len(chunk)
                    self.written += len(chunk)
            except BaseException:
                with self._lock:
                    self._buf[:0] = batch[done:]
                raise

    def flush(self) -> None:
        """Write everything queued so far; when this returns, it is committed.

        Raises :class:`BackendUnavailable` when the database cannot take the write; the
        points stay queued and the next flush tries again.

        Example:
            >>> # writer.flush()
        """
        try:
            self._drain()
        except DBAPIError as exc:
            safe = self.engine.url.render_as_string(hide_password=True)
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise BackendUnavailable(
                f"could not write {self.pending} metric points to {safe}: {reason}",
                hint="they are still queued: fix the database (LOOPLINE_URI) and flush again",
            ) from exc
        self.error = None

    def close(self) -> None:
        """Flush, stop the background thread and forget this writer.

        When the final flush fails the writer stays live and usable (its points queued, a
        new thread started on the next ``add``) and the error is raised.

        Example:
            >>> # writer.close()
        """
        thread = self._thread
        self._stopping = True
        self._closed = True
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=60)
        try:
            self.flush()
        except BaseException:
            self._stopping = False
            self._closed = False
            self._thread = None
            raise
        self._thread = None
        with _live_lock:
            _live.discard(self)

    def _after_fork_in_child(self) -> None:
        # The parent still holds (and will write) what was queued; the child starts empty
        # and must not reuse the parent's database connections.
        self._init_state()
        self.engine.dispose(close=False)


def flush_all() -> None:
    """Flush every live writer of this process (used before reads, and at exit).

    Example:
        >>> flush_all()
    """
    with _live_lock:
        writers = list(_live)
    for writer in writers:
        writer.flush()


def _flush_at_exit() -> None:
    with _live_lock:
        writers = list(_live)
    for writer in writers:
        try:
            writer.close()
        except Exception as exc:  # nothing can be raised at exit: say what was lost
            sys.stderr.write(
                f"loopline: {writer.pending} metric points could not be written at exit: {exc}\n"
            )


def _after_fork() -> None:
    global _live_lock
    _live_lock = threading.Lock()
    for writer in list(_live):
        writer._after_fork_in_child()


atexit.register(_flush_at_exit)
os.register_at_fork(after_in_child=_after_fork)
