"""registry: version numbers are never reused; tracking: dataset inputs keep their details

Revision ID: 0015_version_counter_inputs
Revises: 0014_run_metrics_json
Create Date: 2026-11-27

``registered_models`` gains ``last_version``, the highest version number the model has
ever had. A new version takes the next number after it, so deleting the newest version
and creating another never hands out its number again (``models:/NAME/3`` and the audit
log's ``NAME/3`` keep naming one model, as in MLflow). Existing models get the highest
number they hold now.

``run_inputs`` gains ``details``: what the MLflow client sent with a dataset input beyond
its name and digest (source, schema, profile, input tags), as a JSON object, so that it
reads back as sent. Kept identical to ``loopline/training/registry_tables.py`` and
``loopline/tracking/tables.py``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_version_counter_inputs"
down_revision = "0014_run_metrics_json"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE (see 0013): a batch rebuild on SQLite would drop the old table.
    op.add_column(
        "registered_models",
        sa.Column("last_version", sa.Integer, nullable=False, server_default="0"),
    )
    op.execute(
        'UPDATE "registered_models" SET "last_version" = COALESCE((SELECT MAX(v."version") '
        'FROM "model_versions" v WHERE v."name" = "registered_models"."name"), 0)'
    )
    op.add_column("run_inputs", sa.Column("details", sa.Text, nullable=True))


def downgrade() -> None:
    # SQLite has had DROP COLUMN since 3.35.
    op.execute('ALTER TABLE "run_inputs" DROP COLUMN "details"')
    op.execute('ALTER TABLE "registered_models" DROP COLUMN "last_version"')
