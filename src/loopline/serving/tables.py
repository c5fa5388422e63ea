"""Tables of the serving stage (stage 5): deployments, their history, canary windows.

Only :mod:`loopline.serving.store` reads or writes them. The migration ``0007_serving``
creates exactly the first three (``tests/delivery/test_tables.py`` compares the two).

* ``deployments`` - one row per served model name: the strategy, the stable version, the
  candidate (A/B, canary or shadow) and its share of traffic, the fallback, the standby of
  a blue/green switch, the rollout policy (JSON) and a ``revision`` that grows on every
  change (model servers poll it, and writers compare-and-set on it).
* ``deployment_events`` - the history: every deploy, step, promotion and rollback with the
  state before and after, who did it and why, and the canary analysis that decided it.
* ``canary_windows`` - the counters each model-server worker gathered for one revision of
  a deployment (requests, errors, latency histogram, a sample of predictions, labels),
  summed across workers and replicas when a step is judged.
* ``feedback_labels`` (migration ``0020_feedback_labels``) - labels a worker received for
  requests it did not answer, for the worker or replica that did (it scores them on its
  next poll and deletes them; :mod:`loopline.serving.feedback`). One no worker scored is
  deleted after the label horizon (``LOOPLINE_SERVE_LABEL_HORIZON_S``), counted expired.

Example:
    >>> deployments.c.revision.nullable
    False
"""

from __future__ import annotations

import sqlalchemy as sa

from loopline.core.schema import metadata

#: Rollout strategies a deployment can use.
STRATEGIES = ("direct", "blue_green", "ab", "canary", "shadow")

deployments = sa.Table(
    "deployments",
    metadata,
    sa.Column("name", sa.String(256), primary_key=True),
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
)

deployment_events = sa.Table(
    "deployment_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(256), nullable=False, index=True),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(40), nullable=False),
    sa.Column("before", sa.Text, nullable=True),
    sa.Column("after", sa.Text, nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("analysis", sa.Text, nullable=True),
)

canary_windows = sa.Table(
    "canary_windows",
    metadata,
    sa.Column("name", sa.String(256), primary_key=True),
    sa.Column("revision", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("worker", sa.String(64), primary_key=True),
    sa.Column("stats", sa.Text, nullable=False),
    sa.Column("updated", sa.Float, nullable=False),
)

feedback_labels = sa.Table(
    "feedback_labels",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("worker", sa.String(64), nullable=False),
    sa.Column("request_id", sa.String(200), nullable=False),
    sa.Column("row", sa.Integer, nullable=True),
    sa.Column("label", sa.Text, nullable=False),
    sa.Column("received", sa.Float, nullable=False),
    sa.Index("ix_feedback_labels_received", "received"),
    # SQLite would give a deleted newest row's id to the next label, which the workers
    # (reading above the highest id they read) then never see (migration 0021).
    sqlite_autoincrement=True,
)
