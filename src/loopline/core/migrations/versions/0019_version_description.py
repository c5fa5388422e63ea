"""data: each dataset version keeps its own description

Revision ID: 0019_version_description
Revises: 0018_run_outputs
Create Date: 2026-11-28

``dataset_versions`` gains ``description``: what the version was registered with. It was
one value on ``datasets``, which every later ``data add --description`` overwrote for all
the versions. Existing versions get their dataset's description, the only one known.
``datasets.description`` is no longer read or written: it stays, because dropping a column
on SQLite before 3.35 means rebuilding the table, which the versions' foreign key to it
forbids. Kept identical to ``loopline/data/tables.py``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019_version_description"
down_revision = "0018_run_outputs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE (see 0013): a batch rebuild on SQLite would drop the old table.
    op.add_column("dataset_versions", sa.Column("description", sa.Text, nullable=True))
    op.execute(
        'UPDATE "dataset_versions" SET "description" = (SELECT d."description" '
        'FROM "datasets" d WHERE d."id" = "dataset_versions"."dataset_id")'
    )


def downgrade() -> None:
    # The dataset's description is its newest version's, as the listing showed it.
    op.execute(
        'UPDATE "datasets" SET "description" = (SELECT v."description" '
        'FROM "dataset_versions" v WHERE v."dataset_id" = "datasets"."id" '
        'ORDER BY v."version" DESC LIMIT 1)'
    )
    # SQLite has had DROP COLUMN since 3.35.
    op.execute('ALTER TABLE "dataset_versions" DROP COLUMN "description"')
