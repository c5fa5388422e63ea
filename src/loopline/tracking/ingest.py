"""Fast metric ingest: an in-memory buffer and a background thread that writes it in batches.

Logging a metric costs the caller one append to a list under a lock (well under 10 µs).
A daemon thread wakes every :data:`FLUSH_INTERVAL_S` seconds, or as soon as
:data:`BATCH_ROWS` points are waiting, cuts the buffer into numbered batches of at most
the sink's ``max_batch_rows`` points and hands them, one at a time and in order, to a
:class:`MetricSink`: the embedded sink writes each batch in one transaction
(:func:`loopline.tracking.metrics.write_rows`), the remote sink POSTs it to a Loopline
server (:mod:`loopline.tracking.remote`).

Durability contract: when :meth:`MetricWriter.flush` returns, every point added before the
call is committed (acknowledged by the server, in remote mode). A batch that fails to write
stays at the front of the queue, with its number, and is retried as it was: a server that
applied it but whose answer was lost recognises ``(writer id, number)`` and does not apply
it again (see :func:`loopline.tracking.run_data.log_batch`). The error is raised by the next
``flush``. Writers are flushed at run end and at interpreter exit (``atexit``). When more
than :data:`MAX_PENDING_ROWS` points are waiting (the backend is down or too slow), ``add``
flushes in the caller's thread, so memory stays bounded and the error reaches the caller.
A forked child starts with an empty buffer and a new writer id (the parent writes what was
pending) and reconnects.

Example:
    >>> from loopline.core.db import create_engine_for
    >>> from loopline.core.db_migrations import upgrade
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
import uuid
from collections.abc import Sequence
from typing import Protocol

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from loopline.core.db import driver_reason, shown_url
from loopline.core.db_retry import run_transaction
from loopline.errors import BackendUnavailable, LooplineError, remedy
from loopline.tracking._dialect import MetricRow
from loopline.tracking.metrics import write_rows

#: The background thread writes at least this often (seconds).
FLUSH_INTERVAL_S = 0.1
#: The background thread is woken early once this many points wait.
BATCH_ROWS = 20_000
#: A batch for the embedded store is written in transactions of at most this many points.
MAX_TRANSACTION_ROWS = 100_000
#: Past this many waiting points, ``add`` writes in the caller's thread (backpressure).
MAX_PENDING_ROWS = 1_000_000
_RETRY_PAUSE_S = 0.5
#: How long an embedded batch is retried while PostgreSQL restarts (LOOPLINE_DB_RETRY_S).
DEFAULT_DB_RETRY_S = 30.0

_live: set[MetricWriter] = set()
_live_lock = threading.Lock()


class MetricSink(Protocol):
    """Where a :class:`MetricWriter` sends its batches.

    ``write`` must make the batch durable before it returns, raise
    :class:`BackendUnavailable` when the backend cannot take it now (the batch is retried
    later, unchanged, with the same ``writer`` and ``seq``), and raise another
    :class:`LooplineError` when the backend refuses it for good (the batch is dropped).
    A sink that may see a batch twice must apply each ``(writer, seq)`` at most once.
    """

    #: The most points one ``write`` receives.
    max_batch_rows: int

    def write(self, rows: Sequence[MetricRow], writer: str, seq: int) -> None:
        """Make ``rows`` durable.

        Example:
            >>> # sink.write([(run_id, "loss", 0.5, 1700000000000, 3, 0)], "ab12cd34", 1)
        """

    def describe(self) -> str:
        """Where the points go, for error messages (no secrets).

        Example:
            >>> # sink.describe()  -> 'http://127.0.0.1:5000'
        """

    def after_fork(self) -> None:
        """Drop connections inherited from the parent process.

        Example:
            >>> # sink.after_fork()
        """


class EmbeddedSink:
    """Writes batches straight into the metadata database, one transaction each.

    On PostgreSQL a batch cut off by a restart of the server is retried for up to
    ``retry_s`` seconds (``LOOPLINE_DB_RETRY_S``), and never applied twice (see
    :func:`loopline.core.db_retry.run_transaction`).

    Example:
        >>> # MetricWriter(EmbeddedSink(engine, retry_s=30))
    """

    max_batch_rows = MAX_TRANSACTION_ROWS

    def __init__(self, engine: Engine, *, retry_s: float = DEFAULT_DB_RETRY_S) -> None:
        self.engine = engine
        self.retry_s = retry_s

    def write(self, rows: Sequence[MetricRow], writer: str, seq: int) -> None:
        """Write ``rows`` in one transaction (a rolled-back batch leaves nothing behind).

        Example:
            >>> # EmbeddedSink(engine).write(rows, "ab12cd34", 1)
        """
        try:
            run_transaction(self.engine, lambda conn: write_rows(conn, rows), retry_s=self.retry_s)
        except DBAPIError as exc:
            raise BackendUnavailable(driver_reason(exc)) from exc

    def describe(self) -> str:
        """The database URL without its password.

        Example:
            >>> # EmbeddedSink(engine).describe()  -> 'sqlite:///.loopline/loopline.db'
        """
        return shown_url(self.engine)

    def after_fork(self) -> None:
        """Forget the parent's pooled connections without closing them.

        Example:
            >>> # sink.after_fork()
        """
        self.engine.dispose(close=False)


class MetricWriter:
    """Buffers stored-form metric rows and writes them on a background thread.

    Example:
        >>> # w = MetricWriter(engine); w.add(row); w.flush(); w.close()
    """

    def __init__(self, sink: MetricSink | Engine, *, interval: float = FLUSH_INTERVAL_S) -> None:
        self.sink: MetricSink = EmbeddedSink(sink) if isinstance(sink, Engine) else sink
        self.interval = interval
        self.written = 0
        self._init_state()
        with _live_lock:
            _live.add(self)

    def _init_state(self) -> None:
        self._lock = threading.Lock()  # guards _buf
        self._write_lock = threading.Lock()  # one batch in flight at a time; guards _queue
        self._buf: list[MetricRow] = []
        self._queue: list[tuple[int, list[MetricRow]]] = []  # numbered, not yet acknowledged
        self._next_seq = 1
        self.writer_id = uuid.uuid4().hex[:16]
        self._wake = threading.Event()
        self._stopping = False  # the thread drains once more, then ends
        self._abandon = False  # the thread ends without draining (take_pending)
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
        """How many points wait to be written (including a batch being retried).

        Example:
            >>> # writer.pending  -> 0 after writer.flush()
        """
        with self._lock:
            waiting = len(self._buf)
        return waiting + sum(len(rows) for _seq, rows in list(self._queue))

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            if self._closed:  # used again after close(): live again until the next close
                self._closed = self._stopping = self._abandon = False
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
            if self._abandon:
                return
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

    def _cut(self) -> None:
        """Move the buffer into numbered batches (caller holds ``_write_lock``)."""
        with self._lock:
            buf, self._buf = self._buf, []
        size = self.sink.max_batch_rows
        for start in range(0, len(buf), size):
            self._queue.append((self._next_seq, buf[start : start + size]))
            self._next_seq += 1

    def _drain(self) -> None:
        with self._write_lock:
            self._cut()
            while self._queue:
                seq, rows = self._queue[0]
                try:
                    self.sink.write(rows, self.writer_id, seq)
                except BackendUnavailable:
                    raise  # the batch stays first in the queue, with its number
                except LooplineError:
                    self._queue.pop(0)  # refused for good: retrying cannot help
                    raise
                self._queue.pop(0)
                self.written += len(rows)

    def flush(self) -> None:
        """Write everything queued so far; when this returns, it is committed.

        Raises :class:`BackendUnavailable` when the backend cannot take the write; the
        points stay queued and the next flush tries again.

        Example:
            >>> # writer.flush()
        """
        try:
            self._drain()
        except BackendUnavailable as exc:
            raise BackendUnavailable(
                f"could not write {self.pending} metric points to {self.sink.describe()}: "
                f"{exc.message}",
                hint=f"they are still queued: {remedy(exc, 'fix the backend (LOOPLINE_URI)')};"
                " then flush again",
            ) from exc
        except LooplineError as exc:
            raise type(exc)(
                f"metric points were refused by {self.sink.describe()}: {exc.message}",
                hint=exc.hint,
            ) from exc
        self.error = None

    def take_pending(self) -> list[MetricRow]:
        """Stop the background thread and hand over every point not yet written.

        For ending a run in the same transaction as its last points; give the points back
        with :meth:`put_back` if that fails. The writer is no longer flushed at exit.

        Example:
            >>> # rows = writer.take_pending()
        """
        thread = self._thread
        self._closed = True
        self._abandon = True
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=60)
        self._thread = None
        with self._write_lock:
            self._cut()
            rows = [row for _seq, batch in self._queue for row in batch]
            self._queue.clear()
        with _live_lock:
            _live.discard(self)
        return rows

    def put_back(self, rows: Sequence[MetricRow]) -> None:
        """Queue again points that :meth:`take_pending` handed over (ahead of newer ones).

        Example:
            >>> # writer.put_back(rows)
        """
        with self._lock:
            self._buf[:0] = rows
        self._closed = self._stopping = self._abandon = False
        with _live_lock:
            _live.add(self)

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
        # The parent still holds (and will write) what was queued; the child starts empty,
        # under a new writer id, and must not reuse the parent's connections.
        self._init_state()
        self.sink.after_fork()


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
