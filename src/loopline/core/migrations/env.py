"""Alembic environment: runs Loopline's migrations on the engine handed in by core.db."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from loopline.core.schema import metadata

config = context.config
engine = config.attributes.get("engine")
if engine is None:  # run by the alembic command line with sqlalchemy.url set
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    context.run_migrations()
