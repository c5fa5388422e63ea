"""The metadata database: engine creation by URI, and the connections and transactions
the rest of Loopline reads and writes through.

SQLite (the embedded default) runs in WAL mode with a busy timeout and ``synchronous=FULL``
so that a committed transaction survives a crash of the process or the machine. Reads
(:func:`reading`) take no lock; a write that waits out the busy timeout behind another
process raises :class:`BackendUnavailable` saying so (:func:`lock_wait_error`).
PostgreSQL is used as is; its connection errors are turned into :class:`BackendUnavailable`
naming ``LOOPLINE_URI``. Pooled connections are pinged before use, so a restarted server is
reconnected to; :func:`~loopline.core.db_retry.run_transaction` also retries a transaction
cut off by a restart.

The pieces: this module makes engines and connections; :mod:`loopline.core.db_migrations`
brings a database's schema to the newest revision (``upgrade``, ``ensure_schema``), and
:mod:`loopline.core.db_retry` retries a transaction across a database restart.

Example:
    >>> engine = create_engine_for("sqlite:///:memory:")
    >>> with reading(engine) as conn:
    ...     conn.exec_driver_sql("PRAGMA journal_mode").scalar()
    'memory'
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.engine.url import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError

from loopline.config import display_uri
from loopline.errors import BackendUnavailable, ConfigError

SUPPORTED_SCHEMES = ("sqlite", "postgresql")

#: Execution option of a connection whose transactions only read. On SQLite they begin
#: DEFERRED, reading a WAL snapshot without the write lock (every other transaction begins
#: IMMEDIATE: see ``_sqlite_engine``): such a read neither queues behind a writer nor holds
#: one up, even when its process is stopped (^Z) in the middle of it. A write in such a
#: transaction fails ("database is locked") instead of waiting: mark only reads.
READ_ONLY = "loopline_read_only"


def reading(engine: Engine) -> Connection:
    """A connection of ``engine`` whose transactions only read (:data:`READ_ONLY`): on
    SQLite they neither wait for a writer nor hold one up. For ``with`` blocks that never
    commit (all they could write would be rolled back at their end anyway).

    Example:
        >>> engine = create_engine_for("sqlite:///:memory:")
        >>> with reading(engine) as conn:
        ...     conn.exec_driver_sql("SELECT 1").scalar()
        1
    """
    return engine.connect().execution_options(**{READ_ONLY: True})


@contextmanager
def read_on(bind: Engine | Connection) -> Iterator[Connection]:
    """A connection to read on: one of ``bind``'s pool (:func:`reading`), or ``bind`` itself,
    a connection its caller holds open between transactions (marked :data:`READ_ONLY` by
    the caller, so that on SQLite it takes no write lock). On a held connection the block
    is a transaction of its own, rolled back at its end, so each block reads what was
    committed before it began, by any process.

    Example:
        >>> engine = create_engine_for("sqlite:///:memory:")
        >>> with reading(engine) as held:
        ...     with read_on(held) as conn:
        ...         conn.exec_driver_sql("SELECT 1").scalar()
        ...     held.in_transaction()
        1
        False
    """
    if isinstance(bind, Engine):
        with reading(bind) as conn:
            yield conn
        return
    transaction = bind.begin()
    try:
        yield bind
    finally:
        transaction.rollback()


@contextmanager
def begin(bind: Engine | Connection) -> Iterator[Connection]:
    """A transaction, committed at the end of the block and rolled back if it raises, on a
    connection of ``bind``'s pool or on ``bind`` itself: a connection its caller holds
    open between transactions, saving the pool's checkout and checkin (~15 us, as much as
    a metric point's insert), stays open and usable after either end.

    Example:
        >>> engine = create_engine_for("sqlite:///:memory:")
        >>> with engine.connect() as held:
        ...     with begin(held) as conn:
        ...         conn.exec_driver_sql("SELECT 1").scalar()
        ...     held.in_transaction()
        1
        False
    """
    if isinstance(bind, Engine):
        with bind.begin() as conn:
            yield conn
        return
    with bind.begin():
        yield bind


def driver_reason(exc: DBAPIError) -> str:
    """The first line of what the database driver said behind ``exc``: the reason to show.

    Example:
        >>> import sqlite3
        >>> failed = sqlite3.OperationalError("disk I/O error")
        >>> driver_reason(OperationalError("SELECT 1", {}, failed))
        'disk I/O error'
    """
    text = str(exc.orig).strip() if exc.orig is not None else ""
    return text.splitlines()[0] if text else str(exc)


def shown_url(engine: Engine) -> str:
    """``engine``'s database URL as messages may show it: without the password, be it in
    the user part or a ``password=`` query parameter (:func:`loopline.config.display_uri`).

    Example:
        >>> shown_url(sa.create_engine("postgresql+psycopg://u:pw@db/x?password=pw"))
        'postgresql+psycopg://u:***@db/x?password=***'
    """
    return display_uri(engine.url.render_as_string(hide_password=False))


def like_literal(text: str) -> str:
    r"""``text`` as part of a LIKE pattern that matches only itself (use ``escape="\\"``):
    ``%``, ``_`` and the escape character are escaped.

    Example:
        >>> like_literal("a_b%c")
        'a\\_b\\%c'
    """
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


#: Seconds a new PostgreSQL connection may take - to connect and to be answered - unless
#: ``LOOPLINE_URI`` sets ``?connect_timeout=N``. Without a bound, a server that accepts the
#: connection and never answers (hung, or a proxy in front of a stopped one) hangs every
#: command, and ``loopline doctor``, for good.
PG_CONNECT_TIMEOUT_S = 10

_PG_HINT = "use postgresql://user:password@host:5432/database"


def _pg_url(url: sa.URL, uri: str) -> sa.URL:
    """``url`` for SQLAlchemy's psycopg (3) driver; ConfigError naming LOOPLINE_URI for a
    PostgreSQL URI that Loopline cannot use."""
    shown = display_uri(uri)
    if url.drivername not in ("postgresql", "postgresql+psycopg"):
        raise ConfigError(
            f"LOOPLINE_URI={shown!r} asks for the driver {url.drivername!r}: Loopline talks "
            "to PostgreSQL through psycopg (3) only",
            hint=_PG_HINT,
        )
    if not url.database and "dbname" not in url.query:
        # libpq would fall back to a database named after the user (often 'postgres'), and
        # Loopline's tables would land there.
        raise ConfigError(f"LOOPLINE_URI={shown!r} names no database", hint=_PG_HINT)
    return url.set(drivername="postgresql+psycopg")


def create_engine_for(uri: str, *, busy_timeout_ms: int = 30_000) -> Engine:
    """Create a SQLAlchemy engine for a ``sqlite://`` or ``postgresql://`` URI.

    Raises :class:`ConfigError` naming ``LOOPLINE_URI`` for any other scheme (``postgres://``
    is named as such), a port that is no number, another PostgreSQL driver than psycopg, and
    a PostgreSQL URI without a database. A PostgreSQL connection waits at most
    :data:`PG_CONNECT_TIMEOUT_S` seconds, unless the URI sets ``connect_timeout``.

    Example:
        >>> create_engine_for("sqlite:///:memory:").dialect.name
        'sqlite'
    """
    try:
        url = make_url(uri)
    except (ArgumentError, ValueError) as exc:  # ValueError: a port that is no number
        raise ConfigError(
            f"LOOPLINE_URI={display_uri(uri)!r} is not a database URI",
            hint="use sqlite:///path/to/file.db or postgresql://user:pw@host:port/db",
        ) from exc
    backend = url.get_backend_name()
    if backend == "postgres":  # Heroku's and some tools' spelling; SQLAlchemy has none of it
        raise ConfigError(
            "LOOPLINE_URI begins with 'postgres://', which SQLAlchemy does not read",
            hint="write postgresql:// instead: the rest of the URI stays as it is",
        )
    if backend not in SUPPORTED_SCHEMES:
        raise ConfigError(
            f"LOOPLINE_URI has unknown scheme {url.drivername!r}",
            hint="use sqlite:///path/to/file.db, postgresql://... or http(s)://server",
        )
    if backend == "sqlite":
        return _sqlite_engine(url, busy_timeout_ms)
    url = _pg_url(url, uri)
    connect_args = (
        {} if "connect_timeout" in url.query else {"connect_timeout": PG_CONNECT_TIMEOUT_S}
    )
    return sa.create_engine(
        url, pool_pre_ping=True, pool_size=5, max_overflow=10, connect_args=connect_args
    )


def enable_wal(cursor: Any, wait_s: float) -> None:
    """Switch the SQLite database of ``cursor`` to WAL, retrying "database is locked" for
    up to ``wait_s`` seconds.

    On a new file the switch writes the file's header, so it needs the exclusive lock. When
    several processes open the same new file at once, one of them can get "database is
    locked" at once, without the busy timeout's wait: it holds the shared lock that the
    others need to let go of, and SQLite refuses it rather than deadlock. (Seen about once
    in 500 process starts, 8 at a time, each on a new file.) Retried, it finds the file
    switched, or switches it.

    Example:
        >>> import sqlite3
        >>> enable_wal(sqlite3.connect(":memory:").cursor(), 1.0)
    """
    import sqlite3

    deadline = time.monotonic() + wait_s
    pause = 0.001
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _sqlite_engine(url: sa.URL, busy_timeout_ms: int) -> Engine:
    database = url.database or ""
    if database and database != ":memory:":
        folder = Path(database).expanduser().resolve().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BackendUnavailable(
                f"cannot create the folder {folder} for LOOPLINE_URI: {exc.strerror}",
                hint="set LOOPLINE_URI or LOOPLINE_HOME to a writable place",
            ) from exc
    kwargs: dict[str, Any] = {"connect_args": {"timeout": busy_timeout_ms / 1000}}
    if database in ("", ":memory:"):
        # One shared connection, or every new connection would see an empty database.
        kwargs["poolclass"] = sa.pool.StaticPool
        kwargs["connect_args"]["check_same_thread"] = False
    engine = sa.create_engine(url, **kwargs)

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's BEGIN (below) drive transactions instead of pysqlite's own.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        enable_wal(cur, busy_timeout_ms / 1000)
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # IMMEDIATE takes the write lock up front: two writers queue on busy_timeout
        # instead of one failing with "database is locked" when it upgrades a read lock.
        # A transaction marked READ_ONLY never upgrades: it reads a snapshot, lock-free.
        read_only = conn.get_execution_options().get(READ_ONLY, False)
        sql = "BEGIN" if read_only else "BEGIN IMMEDIATE"
        # Straight to the driver: SQLAlchemy's statement handling cost more than the BEGIN
        # itself on a one-point write. Its errors come out as through SQLAlchemy: a lock
        # held past the busy timeout as BackendUnavailable (see _on_error), others wrapped.
        raw: Any = conn.connection.dbapi_connection
        try:
            raw.execute(sql)
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                raw.rollback()  # as SQLAlchemy does after a failed statement outside a transaction
            locked = lock_wait_error(exc, database or None)
            if locked is not None:
                raise locked from exc  # SQLAlchemy chains a handler's error to the driver's
            raise sa.exc.DBAPIError.instance(sql, None, exc, sqlite3.Error) from exc

    @sa.event.listens_for(engine, "handle_error")
    def _on_error(context: sa.engine.ExceptionContext) -> None:
        # Every caller (SDK, CLI, server) gets a lock held past the busy timeout as
        # BackendUnavailable saying what to do, not the driver's "database is locked".
        locked = lock_wait_error(context.original_exception, database or None)
        if locked is not None:
            raise locked from context.sqlalchemy_exception

    return engine


#: SQLite's words for a lock another process held past the busy timeout ("locking
#: protocol": a WAL reader that found the lock it needs held through all its retries).
_LOCK_WAIT_REASONS = ("database is locked", "locking protocol")


def lock_wait_error(exc: BaseException, database: str | None = None) -> BackendUnavailable | None:
    """The error to show when ``exc`` is SQLite giving up on a lock another process held
    past the busy timeout (``database``: the file, when known); None for any other error.

    A stopped (^Z) or hung process in the middle of a write is the usual cause; the
    driver's own words ("database is locked") say nothing of that, nor what to do.

    Example:
        >>> import sqlite3
        >>> error = lock_wait_error(sqlite3.OperationalError("database is locked"))
        >>> error.message.startswith("the SQLite database stayed locked by another process")
        True
        >>> lock_wait_error(sqlite3.OperationalError("no such table: runs")) is None
        True
    """
    import sqlite3

    orig = exc.orig if isinstance(exc, OperationalError) else exc
    if not isinstance(orig, sqlite3.OperationalError):
        return None
    reason = str(orig).strip()
    if reason not in _LOCK_WAIT_REASONS:
        return None
    where = f" {database}" if database else ""
    return BackendUnavailable(
        f"the SQLite database{where} stayed locked by another process for longer than the"
        f" busy timeout ({reason})",
        hint="a process is stopped (^Z) or hung in the middle of a write: resume it (fg) or"
        f" end it (`fuser -v {database or 'FILE'}` lists the processes that have the"
        " database open)",
    )
