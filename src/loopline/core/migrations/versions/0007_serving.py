"""delivery and serving: gate verdicts, deployments, deployment events, canary windows

Revision ID: 0007_serving
Revises: 0006_pipelines
Create Date: 2026-11-26

Kept identical to ``loopline/delivery/tables.py`` and ``loopline/serving/tables.py``
(``tests/delivery/test_tables.py`` compares them).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_serving"
down_revision = "0006_pipelines"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gate_verdicts",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("blessed", sa.Boolean(create_constraint=False), nullable=False),
        sa.Column("champion_version", sa.Integer, nullable=True),
        sa.Column("dataset", sa.String(300), nullable=False),
        sa.Column("reasons", sa.Text, nullable=False),
        sa.Column("metrics", sa.Text, nullable=False),
        sa.Column("thresholds", sa.Text, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_gate_verdicts"),
    )
    op.create_index("ix_gate_verdicts_name_version", "gate_verdicts", ["name", "version"])
    op.create_table(
        "deployments",
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("strategy", sa.String(20), nullable=False),
        sa.Column("stable_version", sa.Integer, nullable=False),
        sa.Column("candidate_version", sa.Integer, nullable=True),
        sa.Column("standby_version", sa.Integer, nullable=True),
        sa.Column("fallback_version", sa.Integer, nullable=True),
        sa.Column("traffic", sa.Float, nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("step_started", sa.Float, nullable=False),
        sa.Column("policy", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=True),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("updated", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_deployments"),
    )
    op.create_table(
        "deployment_events",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("before", sa.Text, nullable=True),
        sa.Column("after", sa.Text, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("analysis", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_deployment_events"),
    )
    op.create_index("ix_deployment_events_name", "deployment_events", ["name"])
    op.create_table(
        "canary_windows",
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("revision", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("worker", sa.String(64), nullable=False),
        sa.Column("stats", sa.Text, nullable=False),
        sa.Column("updated", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("name", "revision", "worker", name="pk_canary_windows"),
    )


def downgrade() -> None:
    op.drop_table("canary_windows")
    op.drop_index("ix_deployment_events_name", "deployment_events")
    op.drop_table("deployment_events")
    op.drop_table("deployments")
    op.drop_index("ix_gate_verdicts_name_version", "gate_verdicts")
    op.drop_table("gate_verdicts")
