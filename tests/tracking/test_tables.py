from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from loopline.core.context import Context
from loopline.core.schema import metadata
from loopline.tracking.tables import ALL_TABLES, experiments


def test_migration_creates_exactly_the_declared_tables(ctx: Context) -> None:
    names = {t.name for t in ALL_TABLES}
    with ctx.engine.connect() as conn:
        mc = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(mc, metadata)
    ours = [d for d in diffs if _table_of(d) in names]
    assert ours == []
    assert names <= set(sa.inspect(ctx.engine).get_table_names())


def _table_of(diff: object) -> str | None:
    item = diff[0] if isinstance(diff, list) else diff
    assert isinstance(item, tuple)
    for part in item[1:]:
        table = getattr(part, "table", None)
        if isinstance(part, sa.Table):
            return part.name
        if isinstance(table, sa.Table):
            return table.name
        if isinstance(part, str) and part in {t.name for t in metadata.sorted_tables}:
            return part
    return None


def test_default_experiment_is_id_zero(ctx: Context) -> None:
    with ctx.engine.connect() as conn:
        row = conn.execute(sa.select(experiments).where(experiments.c.id == 0)).one()
    assert row.name == "Default"
    assert row.lifecycle_stage == "active"
    assert row.artifact_location == "mlflow-artifacts:/0"
