"""The migrations create exactly the tables of registry_tables.py, on both backends."""

from __future__ import annotations

import sqlalchemy as sa

from loopline.core.db import create_engine_for
from loopline.core.db_migrations import upgrade
from loopline.training.registry_tables import ALL_TABLES
from tests.schema_diff import schema_diffs

NAMES = {t.name for t in ALL_TABLES}


def test_migrations_create_exactly_the_tables_module(db_uri: str) -> None:
    engine = create_engine_for(db_uri)
    upgrade(engine)
    assert set(sa.inspect(engine).get_table_names()) >= NAMES
    diffs = schema_diffs(engine, NAMES)
    engine.dispose()
    assert diffs == []
