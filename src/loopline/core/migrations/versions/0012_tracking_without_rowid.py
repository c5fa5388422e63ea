"""tracking: params, tags and latest_metrics stored in primary-key order on SQLite

Revision ID: 0012_tracking_without_rowid
Revises: 0011_metric_chunks
Create Date: 2026-11-26

On SQLite the three tables become ``WITHOUT ROWID`` tables: the rows live in the primary
key's b-tree, ordered by (run_id, key), instead of in a rowid table plus a separate index
of the key. Reading a run's params, tags or latest metrics (every get and search) is then
one b-tree walk instead of an index walk plus a lookup per row, and a write updates one
b-tree instead of two. The tables are copied (batch mode) with their rows, keys, foreign
keys and indexes. PostgreSQL has no such option (its primary-key index already serves
these reads): nothing changes there. Kept identical to ``loopline/tracking/tables.py``.
"""

from __future__ import annotations

from alembic import op

revision = "0012_tracking_without_rowid"
down_revision = "0011_metric_chunks"
branch_labels = None
depends_on = None

_TABLES = ("params", "tags", "latest_metrics")


def _rebuild(with_rowid: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in _TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_with_rowid": with_rowid}
        ):
            pass


def upgrade() -> None:
    _rebuild(with_rowid=False)


def downgrade() -> None:
    _rebuild(with_rowid=True)
