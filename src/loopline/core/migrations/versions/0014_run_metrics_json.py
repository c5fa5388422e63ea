"""tracking: each run keeps its latest metrics as one JSON object too

Revision ID: 0014_run_metrics_json
Revises: 0013_run_params_tags_json
Create Date: 2026-11-27

Every get and search page reads whole runs, and reading each run's ``latest_metrics``
rows as well cost about as much as reading the runs. ``runs`` gains ``metrics_json``: the
run's latest metrics as one object ``{"key": [step, timestamp, value]}`` (``null`` for a
NaN value), in code-point key order, kept by every metric write in the same transaction
(:mod:`loopline.tracking.run_json`). The rows stay the truth that searches filter on.

The objects are written by Python, not aggregated in SQL: SQLite before 3.43 prints a
REAL with 15 significant digits (``json``, ``quote``, ``printf``), and a latest value must
come back exactly as logged. Kept identical to ``loopline/tracking/tables.py``.
"""

from __future__ import annotations

from itertools import groupby
from operator import itemgetter

import orjson
import sqlalchemy as sa
from alembic import op

revision = "0014_run_metrics_json"
down_revision = "0013_run_params_tags_json"
branch_labels = None
depends_on = None

_BATCH = 5000


def upgrade() -> None:
    # Plain ALTER TABLE, as in 0013: a batch rebuild of ``runs`` on SQLite would drop the
    # old table, and with foreign keys on that deletes every row that refers to a run.
    op.add_column("runs", sa.Column("metrics_json", sa.Text, nullable=True))
    conn = op.get_bind()
    rows = conn.execute(
        sa.text(
            'SELECT run_id, "key", step, "timestamp", "value", is_nan FROM latest_metrics '
            "ORDER BY run_id"
        )
    )
    update = sa.text('UPDATE "runs" SET "metrics_json" = :copy WHERE "id" = :run')
    pending: list[dict[str, str]] = []
    for run_id, group in groupby(rows, key=itemgetter(0)):
        latest = {
            key: [step, stamp, None if is_nan else value]
            for _, key, step, stamp, value, is_nan in group
        }
        copy = orjson.dumps(latest, option=orjson.OPT_SORT_KEYS).decode()
        pending.append({"copy": copy, "run": run_id})
        if len(pending) >= _BATCH:
            conn.execute(update, pending)
            pending = []
    if pending:
        conn.execute(update, pending)


def downgrade() -> None:
    # SQLite has had DROP COLUMN since 3.35 (see upgrade for why not a batch rebuild).
    op.execute('ALTER TABLE "runs" DROP COLUMN "metrics_json"')
