"""Tables of pipeline runs, their step runs and the step cache (stage 3).

Only :mod:`loopline.training.pipeline_store` reads or writes them. The migration
``0006_pipelines`` creates exactly these tables (``tests/training/test_pipeline_store.py``
compares the two).

* ``pipeline_runs`` - one row per run of a pipeline; its id is the id of the tracked run.
* ``step_runs`` - one row per step of a pipeline run: status, attempts, cache key, output.
* ``step_cache`` - cache key -> the output digest of a finished step run.

Example:
    >>> step_runs.c.status.type.length
    20
"""

from __future__ import annotations

import sqlalchemy as sa

from loopline.core.schema import metadata

#: Status of a pipeline run.
PIPELINE_STATUSES = ("running", "finished", "failed")
#: Status of a step run. ``pending``/``running`` only while the pipeline runs.
STEP_STATUSES = ("pending", "running", "finished", "failed", "cached", "skipped")

pipeline_runs = sa.Table(
    "pipeline_runs",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("pipeline", sa.String(256), nullable=False, index=True),
    sa.Column("target", sa.String(500), nullable=False),
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("executor", sa.String(20), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("resumed_from", sa.String(32), nullable=True),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.CheckConstraint(sa.column("status").in_(PIPELINE_STATUSES), name="status"),
)

step_runs = sa.Table(
    "step_runs",
    metadata,
    sa.Column(
        "pipeline_run_id",
        sa.String(32),
        sa.ForeignKey("pipeline_runs.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("step", sa.String(256), primary_key=True),
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
    sa.CheckConstraint(sa.column("status").in_(STEP_STATUSES), name="status"),
)

step_cache = sa.Table(
    "step_cache",
    metadata,
    sa.Column("cache_key", sa.String(64), primary_key=True),
    sa.Column("step", sa.String(256), nullable=False),
    sa.Column("code_hash", sa.String(64), nullable=False),
    sa.Column("output_digest", sa.String(64), nullable=False),
    sa.Column("output_type", sa.String(64), nullable=False),
    sa.Column("run_id", sa.String(32), nullable=True),
    sa.Column("pipeline_run_id", sa.String(32), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

ALL_TABLES = (pipeline_runs, step_runs, step_cache)
