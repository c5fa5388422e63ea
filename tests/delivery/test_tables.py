"""The 0007_serving migration creates exactly the tables of delivery/ and serving/ tables."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from loopline.core.db import create_engine_for, current_revision, upgrade
from loopline.core.schema import metadata
from loopline.delivery.tables import gate_verdicts
from loopline.serving.tables import canary_windows, deployment_events, deployments

NAMES = {t.name for t in (gate_verdicts, deployments, deployment_events, canary_windows)}


def _mentions(diff: object) -> bool:
    items = diff if isinstance(diff, list) else [diff]
    for item in items:
        for part in item if isinstance(item, tuple) else (item,):
            table = part if isinstance(part, sa.Table) else getattr(part, "table", None)
            if getattr(table, "name", None) in NAMES or (isinstance(part, str) and part in NAMES):
                return True
    return False


def test_migration_creates_exactly_the_tables_modules(db_uri: str) -> None:
    engine = create_engine_for(db_uri)
    upgrade(engine)
    assert set(sa.inspect(engine).get_table_names()) >= NAMES
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = [d for d in compare_metadata(ctx, metadata) if _mentions(d)]
    engine.dispose()
    assert diffs == []


def test_the_migration_downgrades_cleanly(db_uri: str) -> None:
    from alembic import command

    from loopline.core.db import alembic_config

    engine = create_engine_for(db_uri)
    upgrade(engine, "0007_serving")
    command.downgrade(alembic_config(engine), "0006_pipelines")
    assert not NAMES & set(sa.inspect(engine).get_table_names())
    assert current_revision(engine) == "0006_pipelines"
    upgrade(engine, "0007_serving")
    assert set(sa.inspect(engine).get_table_names()) >= NAMES
    engine.dispose()
