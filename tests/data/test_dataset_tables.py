from __future__ import annotations

import pytest
import sqlalchemy as sa

from loopline.core.db import create_engine_for
from loopline.core.db_migrations import upgrade
from loopline.data import tables
from tests.schema_diff import schema_diffs

DATA_TABLES = {"datasets", "dataset_versions", "dataset_files"}


def test_migration_creates_exactly_the_tables_module(db_uri: str) -> None:
    engine = create_engine_for(db_uri)
    upgrade(engine)
    assert set(sa.inspect(engine).get_table_names()) >= DATA_TABLES
    assert {t.name for t in (tables.datasets, tables.dataset_versions, tables.dataset_files)} == (
        DATA_TABLES
    )
    diffs = schema_diffs(engine, DATA_TABLES)
    engine.dispose()
    assert diffs == []


def test_kind_is_constrained(db_uri: str) -> None:
    engine = create_engine_for(db_uri)
    upgrade(engine)
    with engine.begin() as conn:
        ds_id = conn.execute(
            tables.datasets.insert().values(name="x", created=0.0).returning(tables.datasets.c.id)
        ).scalar_one()
    row = {
        "dataset_id": ds_id,
        "name": "x",
        "version": 1,
        "created": 0.0,
        "hash": "0" * 64,
        "kind": "zip",
        "byte_size": 0,
        "file_count": 0,
        "actor": "t",
    }
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(tables.dataset_versions.insert().values(**row))
    engine.dispose()
