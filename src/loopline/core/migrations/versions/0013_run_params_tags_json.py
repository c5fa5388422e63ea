"""tracking: each run keeps its params and tags as one JSON object too

Revision ID: 0013_run_params_tags_json
Revises: 0012_tracking_without_rowid
Create Date: 2026-11-26

Every get and search page reads whole runs; aggregating each run's params and tags into
JSON at read time cost more than reading the run rows themselves. ``runs`` gains
``params_json`` and ``tags_json``: a copy of the ``params`` and ``tags`` rows of the run as
one JSON object, kept by every write in the same transaction as the rows
(:mod:`loopline.tracking.run_json`). The rows stay the truth that searches filter on.
Existing runs get theirs here. Kept identical to ``loopline/tracking/tables.py``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_run_params_tags_json"
down_revision = "0012_tracking_without_rowid"
branch_labels = None
depends_on = None

# Objects in code-point key order, as loopline.tracking.run_json writes them.
_AGGREGATE = {
    "sqlite": (
        'SELECT json_group_object("key", "value") FROM (SELECT "key", "value" FROM "{table}" '
        'WHERE "run_id" = "runs"."id" ORDER BY "key")'
    ),
    "postgresql": (
        'SELECT json_object_agg("key", "value" ORDER BY "key" COLLATE "C")::text '
        'FROM "{table}" WHERE "run_id" = "runs"."id"'
    ),
}


def upgrade() -> None:
    # Plain ALTER TABLE on both backends: a batch rebuild of ``runs`` on SQLite would drop
    # the old table, and with foreign keys on that deletes every row that refers to a run.
    op.add_column("runs", sa.Column("params_json", sa.Text, nullable=True))
    op.add_column("runs", sa.Column("tags_json", sa.Text, nullable=True))
    aggregate = _AGGREGATE[op.get_bind().dialect.name]
    op.execute(
        f'UPDATE "runs" SET "params_json" = ({aggregate.format(table="params")}), '
        f'"tags_json" = ({aggregate.format(table="tags")})'
    )


def downgrade() -> None:
    # SQLite has had DROP COLUMN since 3.35 (see upgrade for why not a batch rebuild).
    op.execute('ALTER TABLE "runs" DROP COLUMN "tags_json"')
    op.execute('ALTER TABLE "runs" DROP COLUMN "params_json"')
