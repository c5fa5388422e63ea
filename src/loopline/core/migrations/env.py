"""Alembic environment: runs Loopline's migrations on the engine handed in by core.db."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from loopline.core.schema import metadata

config = context.config
engine = config.attributes.get("engine")
if engine is None:  # run by the alembic command line with sqlalchemy.url set
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")

# Migrations of one database never run side by side: on PostgreSQL a transaction-scoped
# advisory lock queues concurrent first-time migrations (SQLite's BEGIN IMMEDIATE does the
# same there); the loser then finds the schema current and does nothing.
MIGRATION_LOCK_ID = 7_274_231

with engine.begin() as connection:
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    context.run_migrations()
