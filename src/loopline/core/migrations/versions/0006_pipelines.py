"""training: pipeline runs, step runs and the step cache

Revision ID: 0006_pipelines
Revises: 0005_registry
Create Date: 2026-11-26

Kept identical to ``loopline/training/pipeline_tables.py`` (a test compares them).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_pipelines"
down_revision = "0005_registry"
branch_labels = None
depends_on = None

_PIPELINE_STATUSES = "status IN ('running', 'finished', 'failed')"
_STEP_STATUSES = "status IN ('pending', 'running', 'finished', 'failed', 'cached', 'skipped')"


def upgrade() -> None:
    op.create_table(
        "pipeline_runs",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("pipeline", sa.String(256), nullable=False),
        sa.Column("target", sa.String(500), nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("executor", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("resumed_from", sa.String(32), nullable=True),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_pipeline_runs"),
        sa.CheckConstraint(_PIPELINE_STATUSES, name=op.f("ck_pipeline_runs_status")),
    )
    op.create_index("ix_pipeline_runs_pipeline", "pipeline_runs", ["pipeline"])
    op.create_table(
        "step_runs",
        sa.Column("pipeline_run_id", sa.String(32), nullable=False),
        sa.Column("step", sa.String(256), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("function", sa.String(500), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("cache_key", sa.String(64), nullable=True),
        sa.Column("code_hash", sa.String(64), nullable=True),
        sa.Column("params", sa.Text, nullable=True),
        sa.Column("upstream", sa.Text, nullable=False),
        sa.Column("inputs", sa.Text, nullable=True),
        sa.Column("output_digest", sa.String(64), nullable=True),
        sa.Column("output_type", sa.String(64), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("run_id", sa.String(32), nullable=True),
        sa.Column("cached_from", sa.String(32), nullable=True),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.PrimaryKeyConstraint("pipeline_run_id", "step", name="pk_step_runs"),
        sa.ForeignKeyConstraint(
            ["pipeline_run_id"],
            ["pipeline_runs.id"],
            name="fk_step_runs_pipeline_run_id_pipeline_runs",
            ondelete="CASCADE",
        ),
        sa.CheckConstraint(_STEP_STATUSES, name=op.f("ck_step_runs_status")),
    )
    op.create_table(
        "step_cache",
        sa.Column("cache_key", sa.String(64), nullable=False),
        sa.Column("step", sa.String(256), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("output_digest", sa.String(64), nullable=False),
        sa.Column("output_type", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(32), nullable=True),
        sa.Column("pipeline_run_id", sa.String(32), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("cache_key", name="pk_step_cache"),
    )


def downgrade() -> None:
    op.drop_table("step_cache")
    op.drop_table("step_runs")
    op.drop_index("ix_pipeline_runs_pipeline", "pipeline_runs")
    op.drop_table("pipeline_runs")
