"""What Alembic finds different between a migrated database and the tables modules, for
some tables: the check every migration's test makes (the migration creates exactly the
tables a module declares)."""

from __future__ import annotations

from collections.abc import Collection

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from loopline.core.schema import metadata


def _mentions(diff: object, names: Collection[str]) -> bool:
    items = diff if isinstance(diff, list) else [diff]
    for item in items:
        for part in item if isinstance(item, tuple) else (item,):
            table = part if isinstance(part, sa.Table) else getattr(part, "table", None)
            if getattr(table, "name", None) in names or getattr(part, "name", None) in names:
                return True
            if isinstance(part, str) and part in names:
                return True
    return False


def schema_diffs(engine: sa.Engine, names: Collection[str]) -> list[object]:
    """Alembic's differences (types compared) that concern the tables named ``names``."""
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return [d for d in compare_metadata(ctx, metadata) if _mentions(d, names)]
