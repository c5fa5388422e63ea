"""The 0006_pipelines migration creates exactly the tables of pipeline_tables.py."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from loopline.core.db import create_engine_for, upgrade
from loopline.core.schema import metadata
from loopline.training.pipeline_tables import ALL_TABLES, step_runs

NAMES = {t.name for t in ALL_TABLES}


def _mentions(diff: object) -> bool:
    items = diff if isinstance(diff, list) else [diff]
    for item in items:
        for part in item if isinstance(item, tuple) else (item,):
            table = part if isinstance(part, sa.Table) else getattr(part, "table", None)
            if getattr(table, "name", None) in NAMES or (isinstance(part, str) and part in NAMES):
                return True
    return False


def test_migration_creates_exactly_the_tables_module(db_uri: str) -> None:
    engine = create_engine_for(db_uri)
    upgrade(engine)
    assert set(sa.inspect(engine).get_table_names()) >= NAMES
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = [d for d in compare_metadata(ctx, metadata) if _mentions(d)]
    engine.dispose()
    assert diffs == []


def test_step_status_is_constrained(db_uri: str) -> None:
    engine = create_engine_for(db_uri)
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO pipeline_runs (id, pipeline, target, params, executor, status, "
                "started_at) VALUES ('r1', 'p', 'm:p', '{}', 'local', 'running', 0)"
            )
        )
    row = {
        "pipeline_run_id": "r1",
        "step": "s",
        "position": 0,
        "function": "m:s",
        "status": "exploded",
        "attempts": 0,
        "upstream": "[]",
    }
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(step_runs.insert().values(**row))
    engine.dispose()
