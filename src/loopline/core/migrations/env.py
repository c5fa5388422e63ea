"""Alembic environment: runs Loopline's migrations on the engine handed in by core.db_migrations."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection

from loopline.core.db_migrations import lock_migrations
from loopline.core.schema import metadata

config = context.config
engine = config.attributes.get("engine")
if engine is None:  # run by the alembic command line with sqlalchemy.url set
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    context.run_migrations()


# A connection handed in (core.db_migrations.migrate_in) is inside its caller's transaction, which
# holds the migration lock and commits or rolls back the migration with its own work.
handed = config.attributes.get("connection")
if handed is not None:
    _run(handed)
else:
    # Migrations of one database never run side by side: on PostgreSQL a transaction-scoped
    # advisory lock queues concurrent first-time migrations (SQLite's BEGIN IMMEDIATE does
    # the same there); the loser then finds the schema current and does nothing.
    with engine.begin() as connection:
        lock_migrations(connection)
        _run(connection)
