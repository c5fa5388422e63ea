"""serving: ids of the labels handed between workers are never reused (SQLite)

Revision ID: 0021_feedback_label_ids
Revises: 0020_feedback_labels
Create Date: 2026-12-02

Each worker reads ``feedback_labels`` by id, above the highest id it has read. A label is
now deleted as soon as the worker that answered its request scores it (and one no worker
scores, after the label horizon), and SQLite hands the id of a deleted newest row to the
next insert: that label had an id the workers had read past already, and was never
scored (one in ten with two workers). ``AUTOINCREMENT`` makes SQLite's ids grow for
ever, as PostgreSQL's sequence does (nothing to change there). Kept identical to
``loopline/serving/tables.py``.
"""

from __future__ import annotations

from alembic import op

revision = "0021_feedback_label_ids"
down_revision = "0020_feedback_labels"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table(
        "feedback_labels", recreate="always", table_kwargs={"sqlite_autoincrement": True}
    ):
        pass


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table(
        "feedback_labels", recreate="always", table_kwargs={"sqlite_autoincrement": False}
    ):
        pass
