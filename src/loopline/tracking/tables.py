"""The experiment-tracking tables, on core's one :data:`~loopline.core.schema.metadata`.

Modelled on MLflow's tracking schema so that the MLflow-compatible REST server can be built
on the same rows: experiments have integer ids (the REST API shows them as strings),
runs have 32-character hex ids, times are milliseconds since the epoch, metrics keep their
whole history (packed in ``metric_chunks``) plus one ``latest_metrics`` row per (run, key)
for fast search and ordering.
Two tables go beyond MLflow: ``run_inputs`` (dataset lineage) and ``run_artifacts`` (maps an
artifact path inside a run to a content-addressed blob of the artifact store).

Only ``loopline.tracking`` reads or writes these tables; other stages use its functions.
The migrations ``0002_tracking``, ``0011_metric_chunks``, ``0012_tracking_without_rowid``,
``0013_run_params_tags_json``, ``0014_run_metrics_json``, ``0015_version_counter_inputs``,
``0018_run_outputs`` and ``0022_metric_points_once`` create exactly these tables (a test
compares them).

Example:
    >>> from loopline.tracking.tables import runs
    >>> runs.c.status.type.length
    20
"""

from __future__ import annotations

import sqlalchemy as sa

from loopline.core.schema import metadata

#: Run statuses, as MLflow names them.
RUN_STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")
#: Lifecycle stages of experiments and runs (soft delete).
LIFECYCLE_STAGES = ("active", "deleted")

_BIGINT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _run_fk() -> sa.ForeignKey:
    return sa.ForeignKey("runs.id", ondelete="CASCADE")


experiments = sa.Table(
    "experiments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("artifact_location", sa.String(500), nullable=True),
    sa.Column("lifecycle_stage", sa.String(32), nullable=False, server_default="active"),
    sa.Column("creation_time", sa.BigInteger, nullable=False),
    sa.Column("last_update_time", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("name", name="uq_experiments_name"),
    sa.CheckConstraint(sa.column("lifecycle_stage").in_(LIFECYCLE_STAGES), name="lifecycle_stage"),
)

experiment_tags = sa.Table(
    "experiment_tags",
    metadata,
    sa.Column(
        "experiment_id",
        sa.Integer,
        sa.ForeignKey("experiments.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("key", sa.String(250), primary_key=True),
    sa.Column("value", sa.Text, nullable=True),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("experiment_id", sa.Integer, sa.ForeignKey("experiments.id"), nullable=False),
    sa.Column("name", sa.String(250), nullable=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("start_time", sa.BigInteger, nullable=False),
    sa.Column("end_time", sa.BigInteger, nullable=True),
    sa.Column("deleted_time", sa.BigInteger, nullable=True),
    sa.Column("parent_run_id", sa.String(32), nullable=True),
    sa.Column("lifecycle_stage", sa.String(20), nullable=False, server_default="active"),
    sa.Column("user_id", sa.String(256), nullable=True),
    sa.Column("artifact_uri", sa.String(500), nullable=True),
    # The run's params, tags and latest metrics rows as one JSON object each, kept by every
    # write in the rows' own transaction (loopline.tracking.run_json): a search page reads
    # them with the run instead of thousands of rows. NULL: the run has none.
    sa.Column("params_json", sa.Text, nullable=True),
    sa.Column("tags_json", sa.Text, nullable=True),
    sa.Column("metrics_json", sa.Text, nullable=True),
    # The run's run_outputs rows as [[model_id, step], ...] in logged order, the same way
    # (0018); NULL: none.
    sa.Column("outputs_json", sa.Text, nullable=True),
    sa.CheckConstraint(sa.column("status").in_(RUN_STATUSES), name="status"),
    sa.CheckConstraint(sa.column("lifecycle_stage").in_(LIFECYCLE_STAGES), name="lifecycle_stage"),
    sa.Index("ix_runs_experiment_id_start_time", "experiment_id", "start_time"),
    sa.Index("ix_runs_parent_run_id", "parent_run_id"),
)

# Params, tags and latest metrics are read a run at a time (every get and search page): on
# SQLite they are WITHOUT ROWID tables, their rows kept in (run_id, key) order in the
# primary key's own b-tree, so a run's rows are one b-tree walk, not an index walk plus a
# table lookup per row (migration 0012).
params = sa.Table(
    "params",
    metadata,
    sa.Column("run_id", sa.String(32), _run_fk(), primary_key=True),
    sa.Column("key", sa.String(250), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sqlite_with_rowid=False,
)

tags = sa.Table(
    "tags",
    metadata,
    sa.Column("run_id", sa.String(32), _run_fk(), primary_key=True),
    sa.Column("key", sa.String(250), primary_key=True),
    sa.Column("value", sa.Text, nullable=True),
    sqlite_with_rowid=False,
)

# Every logged point, packed: one row per (run, key) per written batch holds that batch's
# points as little-endian arrays (steps and timestamps int64, values float64), in the order
# they were logged. One row per point cost an index entry per point and capped ingest at
# the database's per-row insert rate; a chunk costs one. NaN is stored as NaN, +/-inf as
# +/-max float (as MLflow does). Read through :func:`loopline.tracking.metrics.history`.
# A point is stored once (MLflow's primary key on the point): a write drops the points
# already stored, found among the chunks whose (step, timestamp) span meets its own. The
# span is the lowest and the highest (step, timestamp) pair of the chunk's points; the
# index holds it, so the usual write (steps or times past everything stored) finds no
# chunk in one index probe (migration 0022).
metric_chunks = sa.Table(
    "metric_chunks",
    metadata,
    sa.Column("id", _BIGINT_ID, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(32), _run_fk(), nullable=False),
    sa.Column("key", sa.String(250), nullable=False),
    sa.Column("points", sa.Integer, nullable=False),
    sa.Column("steps", sa.LargeBinary, nullable=False),
    sa.Column("timestamps", sa.LargeBinary, nullable=False),
    sa.Column("metric_values", sa.LargeBinary, nullable=False),
    sa.Column("min_step", sa.BigInteger, nullable=False),
    sa.Column("min_timestamp", sa.BigInteger, nullable=False),
    sa.Column("max_step", sa.BigInteger, nullable=False),
    sa.Column("max_timestamp", sa.BigInteger, nullable=False),
    sa.Index(
        "ix_metric_chunks_run_id_key_span",
        "run_id",
        "key",
        "max_step",
        "max_timestamp",
        "min_step",
        "min_timestamp",
    ),
)

# The point with the greatest (step, timestamp, value) per run and key, as in MLflow.
latest_metrics = sa.Table(
    "latest_metrics",
    metadata,
    sa.Column("run_id", sa.String(32), _run_fk(), primary_key=True),
    sa.Column("key", sa.String(250), primary_key=True),
    sa.Column("value", sa.Double, nullable=False),
    sa.Column("timestamp", sa.BigInteger, nullable=False),
    sa.Column("step", sa.BigInteger, nullable=False),
    sa.Column("is_nan", sa.Boolean, nullable=False),
    sa.Index("ix_latest_metrics_key_value", "key", "value"),
    sqlite_with_rowid=False,
)

# Dataset lineage: which version (and digest) of which data a run read.
run_inputs = sa.Table(
    "run_inputs",
    metadata,
    sa.Column("run_id", sa.String(32), _run_fk(), primary_key=True),
    sa.Column("kind", sa.String(50), primary_key=True),
    sa.Column("name", sa.String(500), primary_key=True),
    sa.Column("version", sa.String(200), primary_key=True),
    sa.Column("digest", sa.String(128), nullable=False),
    sa.Column("context", sa.String(100), nullable=True),
    sa.Column("logged_time", sa.BigInteger, nullable=False),
    # What an MLflow dataset input carried besides name and digest, as JSON (0015).
    sa.Column("details", sa.Text, nullable=True),
)

# The models a run logged, at which step (MLflow 3's run outputs, migration 0018); the id
# of a logged model of the registry (loopline.training), which tracking does not read.
run_outputs = sa.Table(
    "run_outputs",
    metadata,
    sa.Column("run_id", sa.String(32), _run_fk(), primary_key=True),
    sa.Column("model_id", sa.String(64), primary_key=True),
    sa.Column("step", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("logged_time", sa.BigInteger, nullable=False),
)

# An artifact path inside a run -> a content-addressed blob (BLAKE3 hex) of the store.
run_artifacts = sa.Table(
    "run_artifacts",
    metadata,
    sa.Column("run_id", sa.String(32), _run_fk(), primary_key=True),
    sa.Column("path", sa.String(1000), primary_key=True),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("logged_time", sa.BigInteger, nullable=False),
)

ALL_TABLES = (
    experiments,
    experiment_tags,
    runs,
    params,
    tags,
    metric_chunks,
    latest_metrics,
    run_inputs,
    run_outputs,
    run_artifacts,
)
