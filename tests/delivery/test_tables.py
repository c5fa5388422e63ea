"""The migrations create exactly the tables of delivery/ and serving/ tables: 0007_serving,
and 0020_feedback_labels the labels model-server workers hand to each other."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from loopline.core.db import create_engine_for
from loopline.core.db_migrations import current_revision, upgrade
from loopline.delivery.tables import gate_verdicts
from loopline.serving.tables import (
    canary_windows,
    deployment_events,
    deployments,
    feedback_labels,
)
from tests.schema_diff import schema_diffs

NAMES = {t.name for t in (gate_verdicts, deployments, deployment_events, canary_windows)}


def test_migration_creates_exactly_the_tables_modules(db_uri: str) -> None:
    engine = create_engine_for(db_uri)
    upgrade(engine)
    assert set(sa.inspect(engine).get_table_names()) >= NAMES
    diffs = schema_diffs(engine, NAMES)
    engine.dispose()
    assert diffs == []


def test_the_migration_downgrades_cleanly(db_uri: str) -> None:
    from alembic import command

    from loopline.core.db_migrations import alembic_config

    engine = create_engine_for(db_uri)
    upgrade(engine, "0007_serving")
    command.downgrade(alembic_config(engine), "0006_pipelines")
    assert not NAMES & set(sa.inspect(engine).get_table_names())
    assert current_revision(engine) == "0006_pipelines"
    upgrade(engine, "0007_serving")
    assert set(sa.inspect(engine).get_table_names()) >= NAMES
    engine.dispose()


def test_0020_creates_the_labels_workers_hand_over_and_downgrades_cleanly(db_uri: str) -> None:
    from alembic import command

    from loopline.core.db_migrations import alembic_config

    engine = create_engine_for(db_uri)
    upgrade(engine)
    assert schema_diffs(engine, {feedback_labels.name}) == []
    command.downgrade(alembic_config(engine), "0019_version_description")
    assert feedback_labels.name not in sa.inspect(engine).get_table_names()
    upgrade(engine, "0020_feedback_labels")
    assert schema_diffs(engine, {feedback_labels.name}) == []
    engine.dispose()


def test_0021_keeps_the_labels_and_makes_their_ids_grow_for_ever(tmp_path: Any) -> None:
    """SQLite reused a deleted newest label's id, which the workers had read past."""
    from alembic import command

    from loopline.core.db_migrations import alembic_config

    engine = create_engine_for(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(engine, "0020_feedback_labels")
    row = {"name": "churn", "revision": 1, "worker": "w", "request_id": "r", "label": "1"}
    with engine.begin() as conn:
        conn.execute(sa.insert(feedback_labels).values(received=1.0, **row))
    upgrade(engine)
    with engine.begin() as conn:
        assert conn.execute(sa.select(feedback_labels.c.id)).scalars().all() == [1]
        conn.execute(feedback_labels.delete())
        conn.execute(sa.insert(feedback_labels).values(received=2.0, **row))
        assert conn.execute(sa.select(feedback_labels.c.id)).scalars().all() == [2]
    assert schema_diffs(engine, {feedback_labels.name}) == []
    command.downgrade(alembic_config(engine), "0020_feedback_labels")
    assert current_revision(engine) == "0020_feedback_labels"
    engine.dispose()
