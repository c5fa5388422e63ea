"""Migrations of the metadata database to the newest schema: Alembic's config and
revisions, ``upgrade`` under a migration lock, and ``ensure_schema``, which every command's
start runs and which is cheap when the database is current.

Separate from :mod:`loopline.core.db` (engines and connections) because only this module
loads Alembic, and only when a database is behind or a revision is asked for; a database
that is reached but cannot be connected to is a :class:`~loopline.errors.BackendUnavailable`
naming ``LOOPLINE_URI``, and one migrated by a newer Loopline a
:class:`~loopline.errors.ConfigError` saying so.

Example:
    >>> from loopline.core.db import create_engine_for
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
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from loopline.core.db import driver_reason, reading, shown_url
from loopline.core.schema_revision import HEAD_REVISION as _HEAD_REVISION
from loopline.errors import BackendUnavailable, ConfigError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_upgrade_lock = threading.Lock()


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
        >>> from loopline.core.db import create_engine_for
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
        >>> from loopline.core.db import create_engine_for
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
        >>> from loopline.core.db import create_engine_for
        >>> upgrade(create_engine_for("sqlite:///:memory:"))
    """
    upgrade_reporting(engine, revision)


def upgrade_reporting(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """:func:`upgrade`, returning the revisions before and after, read under the migration
    lock: of two concurrent upgrades, the one that found the schema already migrated
    reports no change (``loopline db upgrade`` prints them).

    Example:
        >>> from loopline.core.db import create_engine_for
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
        >>> from loopline.core.db import create_engine_for
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
