"""serving: labels a model-server worker passes to the worker or replica that answered

Revision ID: 0020_feedback_labels
Revises: 0019_version_description
Create Date: 2026-11-28

``feedback_labels`` holds the labels sent to ``POST /v1/models/{name}/feedback`` that the
worker which received them could not score: the request was answered by another worker
or replica, whose memory holds its prediction. Each worker reads the rows of the others
for the deployment revisions it serves and scores those it answered
(:mod:`loopline.serving.feedback`); rows are kept for minutes, not for history. Kept
identical to ``loopline/serving/tables.py``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020_feedback_labels"
down_revision = "0019_version_description"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feedback_labels",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("worker", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(200), nullable=False),
        sa.Column("row", sa.Integer, nullable=True),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("received", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback_labels")),
    )
    op.create_index("ix_feedback_labels_received", "feedback_labels", ["received"])


def downgrade() -> None:
    op.drop_index("ix_feedback_labels_received", "feedback_labels")
    op.drop_table("feedback_labels")
