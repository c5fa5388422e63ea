"""Tables of the monitoring stage (stage 6) and of the loop that acts on it.

The migration ``0008_monitoring`` creates exactly these tables
(``tests/monitoring/test_prediction_log.py`` compares the two).

* ``prediction_batches`` - one row per Parquet file of logged predictions: the model, the
  hour it covers (epoch seconds of the hour's start), the file's digest in the artifact
  store, its row and request counts and time span. Predictions themselves never go through
  SQL: the model server buffers them and writes one file per model and hour per flush.
  ``rid_min``, ``rid_max`` and ``rid_hashes`` (added by ``0010_monitoring_index``) index the
  file's request ids (:mod:`.rid_index`): ``log_labels`` opens only the files that can hold
  a labelled id. They are NULL for files written before the index existed (always opened).
  ``schema_digest`` (added by ``0025_prediction_batches_schema``) fingerprints the file's
  column names and types: ``read_predictions(last=N)`` names one file of each column layout
  besides the files of the newest rows, so that its columns are those of every file
  without opening them all (its index, ``(model, schema_digest)``, answers which files
  those are without reading the rows). NULL for files written before (always named).
* ``label_batches`` - one row per Parquet file of ground-truth labels (request id, row, label),
  written by ``ll.monitor.log_labels`` whenever labels arrive. ``model`` (the model they
  were sent for; NULL: any), ``rid_min``, ``rid_max`` and ``rid_hashes`` (added by
  ``0023_label_batches_index``) index the file as for predictions: ``read_labels`` opens
  only the files of the model that can hold a wanted id. NULL for files written before
  (always opened; the upgrade does not fill them in).
* ``prediction_spool`` - the flush mark of each segment of the prediction log's local spool
  (``0024_prediction_spool``): the segment file's name, the byte offset up to which its
  records are stored (``flushed``, moved in the transaction that adds their
  ``prediction_batches`` rows, so a replay after a kill writes each request once) and
  when it moved. A row goes when its segment is deleted.
* ``business_events`` - business metrics (``ll.monitor.log_business``), one row each; the
  model it concerns when no request id ties it to one (``model``, added by ``0010``).
* ``alerts`` - every alert raised: the rule, the value that crossed the threshold, the
  window, whether the webhook took it.
* ``loop_state`` - per model (``*`` for all): the kill switch and the last trigger time
  (the cooldown).
* ``drift_results`` - the drift of each window the loop watched (``0010``): per model and
  version, the window, the drifted features and every feature's score, as JSON.
* ``loop_events`` - what the loop did, linked: alert -> pipeline run -> model version ->
  gate verdict -> deployment revision.
* ``loop_leader`` - the loop lock's leadership term (``0016_loop_leader``): one row per lock,
  its ``term`` bumped by every process that takes the lock, the ``holder`` that did and
  ``since`` when. A loop pass's writes check it (:mod:`loopline.loop.leader`).

Example:
    >>> prediction_batches.c.digest.nullable
    False
"""

from __future__ import annotations

import sqlalchemy as sa

from loopline.core.schema import metadata

prediction_batches = sa.Table(
    "prediction_batches",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("hour", sa.Float, nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("requests", sa.Integer, nullable=False),
    sa.Column("ts_min", sa.Float, nullable=False),
    sa.Column("ts_max", sa.Float, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("rid_min", sa.String(200), nullable=True),
    sa.Column("rid_max", sa.String(200), nullable=True),
    sa.Column("rid_hashes", sa.LargeBinary, nullable=True),
    sa.Column("schema_digest", sa.String(64), nullable=True),
    sa.Index("ix_prediction_batches_model_hour", "model", "hour"),
    sa.Index("ix_prediction_batches_model_schema", "model", "schema_digest"),
)

label_batches = sa.Table(
    "label_batches",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("matched", sa.Integer, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("model", sa.String(256), nullable=True),
    sa.Column("rid_min", sa.String(200), nullable=True),
    sa.Column("rid_max", sa.String(200), nullable=True),
    sa.Column("rid_hashes", sa.LargeBinary, nullable=True),
    sa.Index("ix_label_batches_model", "model"),
)

prediction_spool = sa.Table(
    "prediction_spool",
    metadata,
    sa.Column("segment", sa.String(200), primary_key=True),
    sa.Column("flushed", sa.BigInteger, nullable=False),
    sa.Column("updated", sa.Float, nullable=False),
)

business_events = sa.Table(
    "business_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event", sa.String(200), nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("request_id", sa.String(200), nullable=True),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("model", sa.String(256), nullable=True),
    sa.Index("ix_business_events_ts", "ts"),
)

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("rule", sa.String(200), nullable=False),
    sa.Column("severity", sa.String(20), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("details", sa.Text, nullable=False),
    sa.Column("delivered", sa.Boolean(create_constraint=False), nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Index("ix_alerts_model", "model"),
)

loop_state = sa.Table(
    "loop_state",
    metadata,
    sa.Column("model", sa.String(256), primary_key=True),
    sa.Column("paused", sa.Boolean(create_constraint=False), nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("last_trigger", sa.Float, nullable=True),
    sa.Column("updated", sa.Float, nullable=False),
)

loop_events = sa.Table(
    "loop_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("alert_id", sa.Integer, nullable=True),
    sa.Column("run_id", sa.String(64), nullable=True),
    sa.Column("model_version", sa.Integer, nullable=True),
    sa.Column("verdict_id", sa.Integer, nullable=True),
    sa.Column("deployment_revision", sa.Integer, nullable=True),
    sa.Column("details", sa.Text, nullable=False),
    sa.Index("ix_loop_events_model", "model"),
)

loop_leader = sa.Table(
    "loop_leader",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("term", sa.Integer, nullable=False),
    sa.Column("holder", sa.String(256), nullable=False),
    sa.Column("since", sa.Float, nullable=False),
)

drift_results = sa.Table(
    "drift_results",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("window_start", sa.Float, nullable=True),
    sa.Column("window_end", sa.Float, nullable=True),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("reference", sa.String(512), nullable=True),
    sa.Column("drifted", sa.Text, nullable=False),
    sa.Column("scores", sa.Text, nullable=False),
    sa.Index("ix_drift_results_model", "model"),
)
