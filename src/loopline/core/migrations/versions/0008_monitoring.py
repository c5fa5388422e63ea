"""monitoring and the loop: prediction and label batches, business events, alerts, loop state

Revision ID: 0008_monitoring
Revises: 0007_serving
Create Date: 2026-11-26

Kept identical to ``loopline/monitoring/tables.py``
(``tests/monitoring/test_prediction_log.py`` compares them).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_monitoring"
down_revision = "0007_serving"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "prediction_batches",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("hour", sa.Float, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("ts_min", sa.Float, nullable=False),
        sa.Column("ts_max", sa.Float, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_prediction_batches"),
    )
    op.create_index("ix_prediction_batches_model_hour", "prediction_batches", ["model", "hour"])
    op.create_table(
        "label_batches",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("matched", sa.Integer, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_label_batches"),
    )
    op.create_table(
        "business_events",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("event", sa.String(200), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("request_id", sa.String(200), nullable=True),
        sa.Column("ts", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_business_events"),
    )
    op.create_index("ix_business_events_ts", "business_events", ["ts"])
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("rule", sa.String(200), nullable=False),
        sa.Column("severity", sa.String(20), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("delivered", sa.Boolean(create_constraint=False), nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
    )
    op.create_index("ix_alerts_model", "alerts", ["model"])
    op.create_table(
        "loop_state",
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("paused", sa.Boolean(create_constraint=False), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("last_trigger", sa.Float, nullable=True),
        sa.Column("updated", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("model", name="pk_loop_state"),
    )
    op.create_table(
        "loop_events",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("alert_id", sa.Integer, nullable=True),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("model_version", sa.Integer, nullable=True),
        sa.Column("verdict_id", sa.Integer, nullable=True),
        sa.Column("deployment_revision", sa.Integer, nullable=True),
        sa.Column("details", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_loop_events"),
    )
    op.create_index("ix_loop_events_model", "loop_events", ["model"])


def downgrade() -> None:
    op.drop_index("ix_loop_events_model", "loop_events")
    op.drop_table("loop_events")
    op.drop_table("loop_state")
    op.drop_index("ix_alerts_model", "alerts")
    op.drop_table("alerts")
    op.drop_index("ix_business_events_ts", "business_events")
    op.drop_table("business_events")
    op.drop_table("label_batches")
    op.drop_index("ix_prediction_batches_model_hour", "prediction_batches")
    op.drop_table("prediction_batches")
