"""tracking: the models a run logged (MLflow 3's run outputs)

Revision ID: 0018_run_outputs
Revises: 0017_logged_model_metrics
Create Date: 2026-11-28

``run_outputs`` holds one row per model a run logged and the run's step when it did
(MLflow 3's ``runs/outputs``, sent by ``log_model``), so that ``get_run`` answers them as
``outputs.model_outputs``. Logging the same (model, step) again keeps one row. Deleted with
its run. ``runs`` gains ``outputs_json``, a copy of them as ``[[model_id, step], ...]`` in
logged order, kept by every write in the same transaction as ``params_json`` is (0013):
every get and search page reads it with the run. Kept identical to
``loopline/tracking/tables.py``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018_run_outputs"
down_revision = "0017_logged_model_metrics"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_outputs",
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("model_id", sa.String(64), nullable=False),
        sa.Column("step", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("logged_time", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("run_id", "model_id", "step", name=op.f("pk_run_outputs")),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
            name=op.f("fk_run_outputs_run_id_runs"),
            ondelete="CASCADE",
        ),
    )
    # Plain ALTER TABLE, as in 0013: a batch rebuild of ``runs`` on SQLite would drop the
    # old table, and with foreign keys on that deletes every row that refers to a run.
    op.add_column("runs", sa.Column("outputs_json", sa.Text, nullable=True))


def downgrade() -> None:
    # SQLite has had DROP COLUMN since 3.35.
    op.execute('ALTER TABLE "runs" DROP COLUMN "outputs_json"')
    op.drop_table("run_outputs")
