"""monitoring: the flush marks of the prediction log's local spool

Revision ID: 0024_prediction_spool
Revises: 0023_label_batches_index
Create Date: 2026-12-05

The model server wrote answered requests to the prediction log only every few seconds: a
SIGKILL lost what it had answered since. Each request is now written to a local spool
segment before its answer is sent, and replayed from there after a kill.
``prediction_spool`` holds, per segment file, the byte offset up to which its records are
stored (``flushed``): moved in the same transaction as the ``prediction_batches`` rows of
those records, so that a replay starts right after them and writes each request once.
Kept identical to ``prediction_spool`` in ``loopline/monitoring/tables.py``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024_prediction_spool"
down_revision = "0023_label_batches_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "prediction_spool",
        sa.Column("segment", sa.String(200), nullable=False),
        sa.Column("flushed", sa.BigInteger, nullable=False),
        sa.Column("updated", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("segment", name="pk_prediction_spool"),
    )


def downgrade() -> None:
    op.drop_table("prediction_spool")
