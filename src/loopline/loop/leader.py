"""Leader election: of all the processes that could run the loop on one store, one does.

Several ``loopline server`` processes (replicas behind a load balancer, or a server and a
``loopline loop run``) may share one metadata store; each would retrain on the same
trigger. Before a pass, a process takes the store's loop lock; it keeps it until it stops
or dies, and the others keep trying at every interval.

* **PostgreSQL**: a session advisory lock (``pg_try_advisory_lock``) held on a dedicated
  connection, outside the engine's pool. PostgreSQL drops it when that connection closes,
  so a killed process (even ``SIGKILL``: the kernel closes its socket) frees it. The
  connection's ``application_name`` names the holder (``loopline-loop HOST:PID``), which
  ``pg_stat_activity`` shows to :func:`holder`. A holder whose connection broke has lost
  the lock: :meth:`Leader.holds` checks the connection before every pass.
* **SQLite**: an exclusive ``flock`` on ``<database>.loop.lock`` next to the database
  file; the kernel releases it when the process dies. The holder writes its host, pid and
  start time into the file for :func:`holder`.
* an in-memory SQLite database is private to its process: a process-local lock.

**Fencing.** A lock can go while its holder still works: a PostgreSQL restart, a network
blip or ``pg_terminate_backend`` drops the lock connection in the middle of a pass, another
process takes the lock, and the first one would go on retraining, gating and deploying
next to the new leader. So taking the lock also takes a **leadership term**: the row of
``loop_leader`` gets the next term number and this holder's name. A pass runs inside
:func:`fenced`: every transaction it commits on the store first locks that row
(``SELECT ... FOR UPDATE``) and checks that it still names this term, in the same
transaction as the pass's writes (a commit hook on the engine); a deposed leader's write is
rolled back and raises :class:`~loopline.errors.LostLeadership`, which stops its pass. The
new leader's term is written only once the lock is held, and it waits for a transaction
that holds the row, so every write of the old term commits before the new term or not at
all. :func:`still_leading` checks the lock and the term before each long step (watching,
retraining, gating, deploying).

Example:
    >>> # leader = leader_for(ctx)
    >>> # if leader.holds() or leader.try_acquire():
    >>> #     with fenced(leader): run_once(policies)
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from loopline.core.context import Context
from loopline.core.db import reading
from loopline.errors import LostLeadership
from loopline.monitoring.tables import loop_leader

#: The advisory lock's two int4 keys: "LOOP" and the lock's purpose (1: the controller).
PG_LOCK_KEYS = (0x4C4F4F50, 1)
_APP_PREFIX = "loopline-loop "
#: The ``loop_leader`` row of the loop lock.
TERM_ROW = "loop"


def _me() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Leader(ABC):
    """The loop lock of one store, as seen by this process, and its leadership term.

    A subclass must make :meth:`_lock` non-blocking, make the lock go away with the
    process (a crash must not leave the loop without a leader), and make :meth:`_locked`
    answer False once the lock may have been lost. With an ``engine`` (the store's), taking
    the lock takes the next leadership term too (see the module docstring); without one
    there is no term and :meth:`check` passes.
    """

    #: How the lock is held, for the server's start-up line and ``loop status``.
    kind: str = ""

    def __init__(self, engine: Engine | None = None) -> None:
        self.engine = engine
        #: The leadership term taken with the lock (None: not held, or no engine).
        self.term: int | None = None
        self._holder: str | None = None

    @abstractmethod
    def _lock(self) -> bool:
        """Take the lock without waiting; True if taken."""

    @abstractmethod
    def _locked(self) -> bool:
        """True while this process surely holds the lock."""

    @abstractmethod
    def _unlock(self) -> None:
        """Give the lock up (a no-op when not held)."""

    def try_acquire(self) -> bool:
        """Take the lock (and the next term) if nobody holds it; True when held now.

        Example:
            >>> # leader.try_acquire()
        """
        if self.holds():
            return True
        if not self._lock():
            return False
        try:
            self._take_term()
        except BaseException:  # a lock without a term would fence every write of its pass
            self._unlock()
            raise
        return True

    def holds(self) -> bool:
        """True while this process surely holds the lock.

        Example:
            >>> # leader.holds()
        """
        return self._locked()

    def release(self) -> None:
        """Give the lock up (a no-op when not held).

        Example:
            >>> # leader.release()
        """
        self.term = self._holder = None
        self._unlock()

    def _take_term(self) -> None:
        if self.engine is None:
            return
        holder = f"{_me()}:{uuid.uuid4().hex[:8]}"[:256]
        now = time.time()
        row = loop_leader.c
        with self.engine.begin() as conn:
            term = conn.execute(
                sa.update(loop_leader)
                .where(row.name == TERM_ROW)
                .values(term=row.term + 1, holder=holder, since=now)
                .returning(row.term)
            ).scalar()
            if term is None:  # the store's first leader; only a lock holder gets here
                term = 1
                conn.execute(
                    sa.insert(loop_leader).values(name=TERM_ROW, term=1, holder=holder, since=now)
                )
        self.term, self._holder = int(term), holder

    def check(self, conn: Connection, *, lock: bool = True) -> None:
        """Raise :class:`LostLeadership` unless the store's term is still this process's.

        With ``lock`` the row stays locked (``FOR UPDATE``) until ``conn``'s transaction
        ends, so no new term can be taken before the writes of that transaction commit.

        Example:
            >>> # with engine.begin() as conn: leader.check(conn); conn.execute(write)
        """
        if self.engine is None:
            return
        q = sa.select(loop_leader.c.term, loop_leader.c.holder).where(
            loop_leader.c.name == TERM_ROW
        )
        row = conn.execute(q.with_for_update() if lock else q).first()
        if row is not None and (row.term, row.holder) == (self.term, self._holder):
            return
        now = "no term" if row is None else f"term {row.term} ({row.holder})"
        raise LostLeadership(
            f"this process no longer leads the loop: it took term {self.term} of the loop "
            f"lock, the store is at {now}",
            hint="another process runs the loop now (`loopline loop status`); this one "
            "takes the lock again when it is free",
        )

    def ensure(self) -> None:
        """Raise :class:`LostLeadership` unless the lock is held and the term current:
        before a long step of a pass.

        Example:
            >>> # leader.ensure()
        """
        if not self.holds():
            raise LostLeadership(
                f"this process lost the loop lock ({self.kind}) during a pass",
                hint="the lock's database connection dropped; the loop takes it again "
                "at its next interval if no other process holds it",
            )
        if self.engine is not None:
            with reading(self.engine) as conn:
                self.check(conn, lock=False)


class PostgresLeader(Leader):
    """A session advisory lock on a dedicated connection (see the module docstring).

    Example:
        >>> # PostgresLeader(ctx.engine).try_acquire()
    """

    kind = "PostgreSQL advisory lock"

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self._engine = sa.create_engine(
            engine.url,
            poolclass=sa.pool.NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args={"application_name": (_APP_PREFIX + _me())[:63]},
        )
        self._conn: Connection | None = None

    def _lock(self) -> bool:
        conn = self._engine.connect()
        got = conn.execute(
            sa.text("SELECT pg_try_advisory_lock(:a, :b)"),
            {"a": PG_LOCK_KEYS[0], "b": PG_LOCK_KEYS[1]},
        ).scalar()
        if got:
            self._conn = conn
            return True
        conn.close()
        return False

    def _locked(self) -> bool:
        # The lock lives as long as its connection answers.
        if self._conn is None:
            return False
        try:
            self._conn.execute(sa.text("SELECT 1"))
        except sa.exc.DBAPIError:
            self._drop()
            return False
        return True

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sa.exc.DBAPIError):  # broken: the lock went with it
                conn.close()

    def _unlock(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sa.exc.DBAPIError):  # closing it below frees it too
                self._conn.execute(
                    sa.text("SELECT pg_advisory_unlock(:a, :b)"),
                    {"a": PG_LOCK_KEYS[0], "b": PG_LOCK_KEYS[1]},
                )
        self._drop()
        self._engine.dispose()


def sqlite_lock_path(engine: Engine) -> Path | None:
    """The lock file of a SQLite database file (None for an in-memory database).

    Example:
        >>> sqlite_lock_path(sa.create_engine("sqlite:////tmp/x/meta.db"))
        PosixPath('/tmp/x/meta.db.loop.lock')
    """
    database = engine.url.database or ""
    if database in ("", ":memory:"):
        return None
    path = Path(database).expanduser().resolve()
    return path.with_name(path.name + ".loop.lock")


class FileLeader(Leader):
    """An exclusive ``flock`` on a file next to the SQLite database.

    Example:
        >>> # FileLeader(Path("meta.db.loop.lock")).try_acquire()
    """

    kind = "file lock"

    def __init__(self, path: Path, engine: Engine | None = None) -> None:
        super().__init__(engine)
        self.path = path
        self._fd: int | None = None

    def _lock(self) -> bool:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        info = {"holder": _me(), "since": time.time(), "lock": str(self.path)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        return True

    def _locked(self) -> bool:
        return self._fd is not None  # a flock stays until released or the process ends

    def _unlock(self) -> None:
        import fcntl

        fd, self._fd = self._fd, None
        if fd is not None:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


class LocalLeader(Leader):
    """A process-local lock, for an in-memory database that no other process can see.

    Example:
        >>> leader = LocalLeader()
        >>> leader.try_acquire(), LocalLeader().try_acquire()
        (True, False)
        >>> leader.release()
    """

    kind = "process-local lock"
    _mutex = threading.Lock()
    _since: float | None = None

    def __init__(self, engine: Engine | None = None) -> None:
        super().__init__(engine)
        self._held = False

    def _lock(self) -> bool:
        if not self._held and LocalLeader._mutex.acquire(blocking=False):
            self._held = True
            LocalLeader._since = time.time()
        return self._held

    def _locked(self) -> bool:
        return self._held

    def _unlock(self) -> None:
        if self._held:
            self._held = False
            LocalLeader._since = None
            LocalLeader._mutex.release()


def leader_for(ctx: Context) -> Leader:
    """The loop lock of ``ctx``'s metadata store, by its dialect.

    Example:
        >>> # leader_for(get_context()).kind  -> 'file lock'
    """
    engine = ctx.engine
    if engine.dialect.name == "postgresql":
        return PostgresLeader(engine)
    path = sqlite_lock_path(engine)
    return LocalLeader(engine) if path is None else FileLeader(path, engine)


# -- fencing: the pass in progress and its writes ------------------------------------------

#: The leader whose pass runs in this thread (a context variable: a server's request
#: threads, which share the engine, are not part of the pass and are never fenced).
_passing: ContextVar[Leader | None] = ContextVar("loopline_loop_leader", default=None)


@contextlib.contextmanager
def fenced(leader: Leader) -> Iterator[None]:
    """Run a pass as ``leader``: every transaction the pass commits on the leader's store
    checks the leadership term first (see the module docstring).

    Example:
        >>> # with fenced(leader): run_once(policies)
    """
    engine = leader.engine
    if engine is not None and not sa.event.contains(engine, "commit", _check_on_commit):
        sa.event.listen(engine, "commit", _check_on_commit)
    token = _passing.set(leader)
    try:
        yield
    finally:
        _passing.reset(token)


def still_leading() -> None:
    """Raise :class:`LostLeadership` if the pass running in this thread lost its lock or
    its term: before a long step, so a deposed leader stops before it starts one. A no-op
    outside :func:`fenced` (``ll.loop`` called as a library, ``loopline loop once``).

    Example:
        >>> still_leading()
    """
    leader = _passing.get()
    if leader is not None:
        leader.ensure()


def _check_on_commit(conn: Connection) -> None:
    # Runs inside the transaction, just before COMMIT: raising leaves it to be rolled back.
    leader = _passing.get()
    if leader is not None and leader.engine is not None and conn.engine.url == leader.engine.url:
        leader.check(conn)


def holder(ctx: Context) -> dict[str, Any] | None:
    """Who runs the loop on ``ctx``'s store now: ``{"holder", "since", "lock"}``, or None.

    On SQLite this takes the lock file's shared lock for an instant; a process that tries
    to become leader in that instant tries again at its next interval.

    Example:
        >>> # holder(get_context())  -> {"holder": "web-1:4242", "since": 1764..., ...}
    """
    engine = ctx.engine
    if engine.dialect.name == "postgresql":
        return _pg_holder(engine)
    path = sqlite_lock_path(engine)
    if path is None:
        since = LocalLeader._since
        return None if since is None else {"holder": _me(), "since": since, "lock": "local"}
    return _file_holder(path)


def _pg_holder(engine: Engine) -> dict[str, Any] | None:
    q = sa.text(
        "SELECT a.pid, a.application_name, a.client_addr, a.backend_start "
        "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = :a AND l.objid = :b "
        "AND l.objsubid = 2 AND l.database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    with reading(engine) as conn:
        row = conn.execute(q, {"a": PG_LOCK_KEYS[0], "b": PG_LOCK_KEYS[1]}).first()
    if row is None:
        return None
    name = str(row.application_name or "")
    return {
        "holder": name.removeprefix(_APP_PREFIX) if name.startswith(_APP_PREFIX) else name,
        "since": row.backend_start.timestamp() if row.backend_start is not None else None,
        "lock": f"advisory lock held by PostgreSQL backend {row.pid}",
    }


def _file_holder(path: Path) -> dict[str, Any] | None:
    import fcntl

    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raw = os.pread(fd, 4096, 0)
            try:
                info: dict[str, Any] = json.loads(raw or b"{}")
            except ValueError:  # caught between the holder's truncate and write
                info = {}
            return {
                "holder": info.get("holder", "?"),
                "since": info.get("since"),
                "lock": str(path),
            }
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
