"""The 0006_pipelines migration creates exactly the tables of pipeline_tables.py."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from loopline.core.db import create_engine_for
from loopline.core.db_migrations import upgrade
from loopline.training.pipeline_tables import ALL_TABLES, step_runs
from tests.schema_diff import schema_diffs

NAMES = {t.name for t in ALL_TABLES}


def test_migration_creates_exactly_the_tables_module(db_uri: str) -> None:
    engine = create_engine_for(db_uri)
    upgrade(engine)
    assert set(sa.inspect(engine).get_table_names()) >= NAMES
    diffs = schema_diffs(engine, NAMES)
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
