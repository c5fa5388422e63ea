"""The metadata database: engine creation by URI, and migrations to the newest schema.

SQLite (the embedded default) runs in WAL mode with a busy timeout and ``synchronous=FULL``
so that a committed transaction survives a crash of the process or the machine.
PostgreSQL is used as is; its connection errors are turned into :class:`BackendUnavailable`
naming ``LOOPLINE_URI``.

Example:
    >>> engine = create_engine_for("sqlite:///:memory:")
    >>> upgrade(engine)
    >>> current_revision(engine) == head_revision()
    True
"""

from __future__ import annotations

import threading
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.engine.url import make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from loopline.errors import BackendUnavailable, ConfigError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SUPPORTED_SCHEMES = ("sqlite", "postgresql")
_upgrade_lock = threading.Lock()


def create_engine_for(uri: str, *, busy_timeout_ms: int = 30_000) -> Engine:
    """Create a SQLAlchemy engine for a ``sqlite://`` or ``postgresql://`` URI.

    Raises :class:`ConfigError` for any other scheme, naming ``LOOPLINE_URI``.

    Example:
        >>> create_engine_for("sqlite:///:memory:").dialect.name
        'sqlite'
    """
    try:
        url = make_url(uri)
    except ArgumentError as exc:
        raise ConfigError(
            f"LOOPLINE_URI={uri!r} is not a database URI",
            hint="use sqlite:///path/to/file.db or postgresql://user:pw@host:port/db",
        ) from exc
    backend = url.get_backend_name()
    if backend not in SUPPORTED_SCHEMES:
        raise ConfigError(
            f"LOOPLINE_URI has unknown scheme {url.drivername!r}",
            hint="use sqlite:///path/to/file.db, postgresql://... or http(s)://server",
        )
    if backend == "sqlite":
        return _sqlite_engine(url, busy_timeout_ms)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


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
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # IMMEDIATE takes the write lock up front: two writers queue on busy_timeout
        # instead of one failing with "database is locked" when it upgrades a read lock.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def alembic_config(engine: Engine) -> Config:
    """An Alembic config bound to ``engine`` and Loopline's migration scripts."""
    from alembic.config import Config  # Alembic loads only when migrating (import cost)

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


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

    with _translate_connect_errors(engine), engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database to ``revision`` (default: the newest).

    Example:
        >>> upgrade(create_engine_for("sqlite:///:memory:"))
    """
    from alembic import command

    with _upgrade_lock, _translate_connect_errors(engine):
        command.upgrade(alembic_config(engine), revision)


def ensure_schema(engine: Engine) -> None:
    """Migrate the database if it is behind; cheap when it is already current."""
    if current_revision(engine) != head_revision():
        upgrade(engine)


class _translate_connect_errors:
    """Turn driver connection failures into a one-line error naming LOOPLINE_URI."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if isinstance(exc, OperationalError):
            safe = self.engine.url.render_as_string(hide_password=True)
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise BackendUnavailable(
                f"cannot reach the metadata database {safe}: {reason}",
                hint="check LOOPLINE_URI and that the database server is running",
            ) from exc
