"""registry: metrics linked to logged models

Revision ID: 0017_logged_model_metrics
Revises: 0016_loop_leader
Create Date: 2026-11-28

``logged_model_metrics`` holds the metric points a run linked to a logged model (MLflow 3's
``log_metric(..., model_id=...)``, autolog's ``training_*`` metrics, the run's points that
``log_model`` links to the model it logs), each with the dataset it was computed on when
the client named one. A point is keyed as in MLflow (model, key, timestamp, step, run), so
a point sent again is kept once. The value is stored as the run's copy is: NaN as 0 with
``is_nan``, +/-inf as +/- the largest float. Kept identical to
``loopline/training/registry_tables.py``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017_logged_model_metrics"
down_revision = "0016_loop_leader"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "logged_model_metrics",
        sa.Column("model_id", sa.String(64), nullable=False),
        sa.Column("key", sa.String(250), nullable=False),
        sa.Column("timestamp", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("step", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("value", sa.Double, nullable=False),
        sa.Column("is_nan", sa.Boolean, nullable=False),
        sa.Column("dataset_name", sa.String(500), nullable=True),
        sa.Column("dataset_digest", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint(
            "model_id", "key", "timestamp", "step", "run_id", name="pk_logged_model_metrics"
        ),
    )


def downgrade() -> None:
    op.drop_table("logged_model_metrics")
