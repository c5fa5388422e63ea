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

Example:
    >>> # leader = leader_for(ctx)
    >>> # if leader.holds() or leader.try_acquire(): run_once(policies)
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from loopline.core.context import Context

#: The advisory lock's two int4 keys: "LOOP" and the lock's purpose (1: the controller).
PG_LOCK_KEYS = (0x4C4F4F50, 1)
_APP_PREFIX = "loopline-loop "


def _me() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Leader(ABC):
    """The loop lock of one store, as seen by this process.

    A subclass must make :meth:`try_acquire` non-blocking, make the lock go away with the
    process (a crash must not leave the loop without a leader), and make :meth:`holds`
    answer False once the lock may have been lost.
    """

    #: How the lock is held, for the server's start-up line and ``loop status``.
    kind: str = ""

    @abstractmethod
    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; True when this process holds it now.

        Example:
            >>> # leader.try_acquire()
        """

    @abstractmethod
    def holds(self) -> bool:
        """True while this process surely holds the lock.

        Example:
            >>> # leader.holds()
        """

    @abstractmethod
    def release(self) -> None:
        """Give the lock up (a no-op when not held).

        Example:
            >>> # leader.release()
        """


class PostgresLeader(Leader):
    """A session advisory lock on a dedicated connection (see the module docstring).

    Example:
        >>> # PostgresLeader(ctx.engine).try_acquire()
    """

    kind = "PostgreSQL advisory lock"

    def __init__(self, engine: Engine) -> None:
        self._engine = sa.create_engine(
            engine.url,
            poolclass=sa.pool.NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args={"application_name": (_APP_PREFIX + _me())[:63]},
        )
        self._conn: Connection | None = None

    def try_acquire(self) -> bool:
        """See :meth:`Leader.try_acquire`.

        Example:
            >>> # PostgresLeader(ctx.engine).try_acquire()
        """
        if self.holds():
            return True
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

    def holds(self) -> bool:
        """See :meth:`Leader.holds`: the lock lives as long as its connection answers.

        Example:
            >>> # leader.holds()
        """
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

    def release(self) -> None:
        """See :meth:`Leader.release`.

        Example:
            >>> # leader.release()
        """
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

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        """See :meth:`Leader.try_acquire`.

        Example:
            >>> # FileLeader(path).try_acquire()
        """
        import fcntl

        if self._fd is not None:
            return True
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

    def holds(self) -> bool:
        """See :meth:`Leader.holds`: a flock stays until released or the process ends.

        Example:
            >>> # leader.holds()
        """
        return self._fd is not None

    def release(self) -> None:
        """See :meth:`Leader.release`.

        Example:
            >>> # leader.release()
        """
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
    _lock = threading.Lock()
    _since: float | None = None

    def __init__(self) -> None:
        self._held = False

    def try_acquire(self) -> bool:
        """See :meth:`Leader.try_acquire`.

        Example:
            >>> # LocalLeader().try_acquire()
        """
        if not self._held and LocalLeader._lock.acquire(blocking=False):
            self._held = True
            LocalLeader._since = time.time()
        return self._held

    def holds(self) -> bool:
        """See :meth:`Leader.holds`.

        Example:
            >>> LocalLeader().holds()
            False
        """
        return self._held

    def release(self) -> None:
        """See :meth:`Leader.release`.

        Example:
            >>> LocalLeader().release()
        """
        if self._held:
            self._held = False
            LocalLeader._since = None
            LocalLeader._lock.release()


def leader_for(ctx: Context) -> Leader:
    """The loop lock of ``ctx``'s metadata store, by its dialect.

    Example:
        >>> # leader_for(get_context()).kind  -> 'file lock'
    """
    engine = ctx.engine
    if engine.dialect.name == "postgresql":
        return PostgresLeader(engine)
    path = sqlite_lock_path(engine)
    return LocalLeader() if path is None else FileLeader(path)


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
    with engine.connect() as conn:
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
