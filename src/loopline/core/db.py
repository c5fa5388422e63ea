"""The metadata database: engine creation by URI, and migrations to the newest schema.

SQLite (the embedded default) runs in WAL mode with a busy timeout and ``synchronous=FULL``
so that a committed transaction survives a crash of the process or the machine. Reads
(:func:`reading`) take no lock; a write that waits out the busy timeout behind another
process raises :class:`BackendUnavailable` saying so (:func:`lock_wait_error`).
PostgreSQL is used as is; its connection errors are turned into :class:`BackendUnavailable`
naming ``LOOPLINE_URI``. Pooled connections are pinged before use, so a restarted server is
reconnected to; :func:`run_transaction` also retries a transaction cut off by a restart.

Example:
    >>> engine = create_engine_for("sqlite:///:memory:")
    >>> upgrade(engine)
    >>> current_revision(engine) == head_revision()
    True
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.engine.url import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError

from loopline.config import display_uri
from loopline.core.schema_revision import HEAD_REVISION as _HEAD_REVISION
from loopline.errors import BackendUnavailable, ConfigError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SUPPORTED_SCHEMES = ("sqlite", "postgresql")
_upgrade_lock = threading.Lock()
T = TypeVar("T")

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


#: PostgreSQL advisory lock (transaction-scoped) that queues migrations of one database.
MIGRATION_LOCK_ID = 7_274_231


def alembic_config(engine: Engine, connection: Connection | None = None) -> Config:
    """An Alembic config bound to ``engine`` and Loopline's migration scripts.

    With ``connection``, migrations run on it inside the caller's transaction (which has
    taken :func:`lock_migrations`) instead of a transaction of their own.
    """
    from alembic.config import Config  # Alembic loads only when migrating (import cost)

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def lock_migrations(conn: Connection) -> None:
    """Queue behind any other migration of this database until ``conn``'s transaction ends.

    PostgreSQL: a transaction-scoped advisory lock; SQLite: the transaction's
    ``BEGIN IMMEDIATE`` already holds the write lock.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})")


def migrate_in(conn: Connection, revision: str = "head") -> None:
    """Move the schema to ``revision`` (up or down) inside ``conn``'s transaction.

    Nothing is committed here: a caller that fails later rolls the migration back with
    its own work (``restore`` loads a backup this way). The caller holds
    :func:`lock_migrations`.

    Example:
        >>> engine = create_engine_for("sqlite:///:memory:")
        >>> with engine.begin() as conn:
        ...     migrate_in(conn, "0002_tracking")
        >>> current_revision(engine)
        '0002_tracking'
    """
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    current = MigrationContext.configure(conn).get_current_revision()
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    target = script.get_current_head() if revision == "head" else revision
    if current == target:
        return
    cfg = alembic_config(conn.engine, conn)
    order = [s.revision for s in script.walk_revisions()]  # newest first
    if current is not None and order.index(current) < order.index(str(target)):
        command.downgrade(cfg, str(target))
    else:
        command.upgrade(cfg, str(target))


@cache
def head_revision() -> str:
    """The newest migration revision shipped with this version of Loopline."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(MIGRATIONS_DIR))
    head = script.get_current_head()
    assert head is not None, "migration chain has no head"
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    from alembic.runtime.migration import MigrationContext

    with _translate_connect_errors(engine), reading(engine) as conn:
        return MigrationContext.configure(conn).get_current_revision()


@cache
def known_revisions() -> tuple[str, ...]:
    """Every migration revision this version of Loopline ships, oldest first.

    Example:
        >>> known_revisions()[0]
        '0001_core'
    """
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(MIGRATIONS_DIR))
    return tuple(reversed([s.revision for s in script.walk_revisions()]))


def check_known_revision(engine: Engine, revision: str | None) -> None:
    """Refuse a database whose schema revision this Loopline does not ship.

    Such a database was written by a newer Loopline: Alembic's own error ("Can't locate
    revision identified by ...") said nothing of that, and ``loopline doctor`` advised
    ``loopline db upgrade``, which is what fails.

    Example:
        >>> check_known_revision(create_engine_for("sqlite:///:memory:"), "0001_core")
    """
    if revision is None or revision in known_revisions():
        return
    from loopline import __version__

    safe = shown_url(engine)
    raise ConfigError(
        f"the metadata database {safe} is at schema revision {revision!r}, which this "
        f"Loopline ({__version__}, newest revision {known_revisions()[-1]!r}) does not "
        "know: a newer Loopline has migrated it",
        hint="upgrade Loopline to the version that uses this database (an older one "
        "cannot read it), or set LOOPLINE_URI to another database",
    )


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database to ``revision`` (default: the newest).

    Raises :class:`ConfigError` when the database is at a revision this Loopline does not
    ship (a newer Loopline migrated it).

    Example:
        >>> upgrade(create_engine_for("sqlite:///:memory:"))
    """
    upgrade_reporting(engine, revision)


def upgrade_reporting(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """:func:`upgrade`, returning the revisions before and after, read under the migration
    lock: of two concurrent upgrades, the one that found the schema already migrated
    reports no change (``loopline db upgrade`` prints them).

    Example:
        >>> upgrade_reporting(create_engine_for("sqlite:///:memory:"))[0] is None
        True
    """
    from alembic.runtime.migration import MigrationContext

    with _upgrade_lock, _translate_connect_errors(engine), engine.begin() as conn:
        lock_migrations(conn)
        before = MigrationContext.configure(conn).get_current_revision()
        check_known_revision(engine, before)  # read under the lock: a newer one may have won
        migrate_in(conn, revision)
        after = MigrationContext.configure(conn).get_current_revision()
    return before, after


#: The newest migration's revision id (:data:`loopline.core.schema_revision.HEAD_REVISION`,
#: a module without imports, so that a quick path can read it too). ``ensure_schema``
#: compares the database with it without importing Alembic (which costs ~0.15 s of every
#: command's start-up to import and to parse the migration scripts); a test keeps it equal
#: to Alembic's own head.
HEAD_REVISION = _HEAD_REVISION

_VERSION_QUERY = sa.text("SELECT version_num FROM alembic_version")


def _stored_revision(engine: Engine) -> str | None:
    """The revision in ``alembic_version``; None when the table is missing or empty.

    Read without the write lock (:data:`READ_ONLY`): every command's start asks this.
    """
    with _translate_connect_errors(engine), reading(engine) as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        rows = conn.execute(_VERSION_QUERY).scalars().all()
    return rows[0] if len(rows) == 1 else None


def ensure_schema(engine: Engine) -> None:
    """Migrate the database if it is behind; cheap when it is already current.

    Example:
        >>> ensure_schema(create_engine_for("sqlite:///:memory:"))
    """
    stored = _stored_revision(engine)
    if stored == HEAD_REVISION:
        return
    if stored is None:
        from loopline.core.sqlite_schema import create_if_empty

        with _translate_connect_errors(engine):
            if create_if_empty(engine):  # a new SQLite file: the newest schema in one step
                return
    upgrade(engine)


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


class _translate_connect_errors:
    """Turn driver connection failures into a one-line error naming LOOPLINE_URI."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if isinstance(exc, OperationalError):
            safe = shown_url(self.engine)
            reason = driver_reason(exc)
            raise BackendUnavailable(
                f"cannot reach the metadata database {safe}: {reason}",
                hint="check LOOPLINE_URI and that the database server is running",
            ) from exc


# -- retrying a transaction across a database restart ------------------------------------


def is_transient(engine: Engine, exc: DBAPIError) -> bool:
    """Whether ``exc`` is worth retrying: the connection broke, or PostgreSQL could not be
    reached, was shutting down or starting up (its ``OperationalError`` class). SQLite's
    errors are not: its ``OperationalError`` also means a missing table.

    Example:
        >>> # is_transient(engine, exc)  -> True for "connection refused" on PostgreSQL
    """
    if exc.connection_invalidated:
        return True
    return engine.dialect.name == "postgresql" and isinstance(exc, OperationalError)


def run_transaction(engine: Engine, work: Callable[[Connection], T], *, retry_s: float) -> T:
    """Run ``work(conn)`` in one transaction, retried while PostgreSQL restarts.

    A transaction that failed before its COMMIT was sent is simply run again (it was rolled
    back). One whose COMMIT was cut off may or may not have committed: its transaction id,
    taken at the start, is looked up with ``txid_status`` once the server answers again, and
    the work is run again only if it did not commit - so it is never applied twice. Retries
    stop after ``retry_s`` seconds with :class:`BackendUnavailable` naming ``LOOPLINE_URI``;
    other errors rise as they are. On SQLite this is one plain transaction.

    Example:
        >>> engine = create_engine_for("sqlite:///:memory:")
        >>> run_transaction(engine, lambda conn: conn.exec_driver_sql("SELECT 1").scalar(),
        ...                 retry_s=5)
        1
    """
    postgres = engine.dialect.name == "postgresql"
    deadline = time.monotonic() + retry_s
    pause = 0.05
    while True:
        xid: int | None = None
        committing = False
        try:
            with engine.connect() as conn, conn.begin():
                if postgres:
                    xid = conn.exec_driver_sql("SELECT txid_current()").scalar_one()
                result = work(conn)
                committing = True  # the block's end sends COMMIT
            return result
        except DBAPIError as exc:
            if not is_transient(engine, exc):
                raise
            # A cut-off COMMIT is settled first (with a full retry window of its own): a
            # caller told "unavailable" retries the work, which must not apply it twice.
            if (
                committing
                and xid is not None
                and _committed(engine, xid, time.monotonic() + retry_s, retry_s)
            ):
                return result
            if time.monotonic() > deadline:
                raise _unavailable(engine, exc, retry_s) from exc
        time.sleep(pause)
        pause = min(pause * 2, 1.0)


def _committed(engine: Engine, xid: int, deadline: float, retry_s: float) -> bool:
    """Whether transaction ``xid`` committed, asked again until the server answers."""
    pause = 0.05
    while True:
        try:
            with reading(engine) as conn:
                status = conn.execute(sa.text("SELECT txid_status(:x)"), {"x": xid}).scalar()
        except DBAPIError as exc:
            if not is_transient(engine, exc):
                raise
            if time.monotonic() > deadline:
                raise _unavailable(engine, exc, retry_s) from exc
        else:
            if status != "in progress":  # committed, aborted, or too old to know (None)
                return status == "committed"
        time.sleep(pause)
        pause = min(pause * 2, 1.0)


def _unavailable(engine: Engine, exc: DBAPIError, retry_s: float) -> BackendUnavailable:
    safe = shown_url(engine)
    reason = driver_reason(exc)
    return BackendUnavailable(
        f"the metadata database {safe} did not answer for {retry_s:g} s: {reason}",
        hint="check that the database server runs (LOOPLINE_URI), or raise LOOPLINE_DB_RETRY_S",
    )
