"""The migrations create exactly the tables of registry_tables.py, on both backends."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from loopline.core.db import create_engine_for, upgrade
from loopline.core.schema import metadata
from loopline.training.registry_tables import ALL_TABLES

NAMES = {t.name for t in ALL_TABLES}


def _mentions(diff: object) -> bool:
    items = diff if isinstance(diff, list) else [diff]
    for item in items:
        for part in item if isinstance(item, tuple) else (item,):
            table = part if isinstance(part, sa.Table) else getattr(part, "table", None)
            if getattr(table, "name", None) in NAMES or (isinstance(part, str) and part in NAMES):
                return True
    return False


def test_migrations_create_exactly_the_tables_module(db_uri: str) -> None:
    engine = create_engine_for(db_uri)
    upgrade(engine)
    assert set(sa.inspect(engine).get_table_names()) >= NAMES
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = [d for d in compare_metadata(ctx, metadata) if _mentions(d)]
    engine.dispose()
    assert diffs == []
