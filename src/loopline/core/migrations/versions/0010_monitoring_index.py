"""monitoring index: request-id index of prediction files, stored drift results

Revision ID: 0010_monitoring_index
Revises: 0009_auth
Create Date: 2026-11-26

``prediction_batches`` gains ``rid_min``, ``rid_max`` and ``rid_hashes`` (sorted fingerprints of
the file's request ids, :mod:`loopline.monitoring.rid_index`); ``drift_results`` keeps the
drift of each window the loop watched. Kept identical to ``loopline/monitoring/tables.py``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_monitoring_index"
down_revision = "0009_auth"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("prediction_batches") as batch:
        batch.add_column(sa.Column("rid_min", sa.String(200), nullable=True))
        batch.add_column(sa.Column("rid_max", sa.String(200), nullable=True))
        batch.add_column(sa.Column("rid_hashes", sa.LargeBinary, nullable=True))
    with op.batch_alter_table("business_events") as batch:
        batch.add_column(sa.Column("model", sa.String(256), nullable=True))
    op.create_table(
        "drift_results",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("window_start", sa.Float, nullable=True),
        sa.Column("window_end", sa.Float, nullable=True),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("reference", sa.String(512), nullable=True),
        sa.Column("drifted", sa.Text, nullable=False),
        sa.Column("scores", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_drift_results"),
    )
    op.create_index("ix_drift_results_model", "drift_results", ["model"])


def downgrade() -> None:
    op.drop_index("ix_drift_results_model", "drift_results")
    op.drop_table("drift_results")
    with op.batch_alter_table("business_events") as batch:
        batch.drop_column("model")
    with op.batch_alter_table("prediction_batches") as batch:
        batch.drop_column("rid_hashes")
        batch.drop_column("rid_max")
        batch.drop_column("rid_min")
