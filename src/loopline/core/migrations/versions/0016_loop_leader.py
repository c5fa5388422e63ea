"""loop: the leadership term that fences a deposed loop leader's writes

Revision ID: 0016_loop_leader
Revises: 0015_version_counter_inputs
Create Date: 2026-11-27

``loop_leader`` holds one row per loop lock (``name`` ``loop``): the leadership ``term``, a
number that grows by one each time a process takes the lock, the ``holder`` that took it
(host, pid and a random tag) and ``since`` when. Every write of a loop pass checks, in its
own transaction, that the row still names its term (:mod:`loopline.loop.leader`), so a
process that lost the lock mid-pass (its PostgreSQL connection dropped) can no longer
retrain, gate or deploy. Kept identical to ``loopline/monitoring/tables.py``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_loop_leader"
down_revision = "0015_version_counter_inputs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # No seeded row: the first leader inserts it, so a restore into a new store finds the
    # table empty (backup_restore counts seeded rows as data otherwise).
    op.create_table(
        "loop_leader",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("term", sa.Integer, nullable=False),
        sa.Column("holder", sa.String(256), nullable=False),
        sa.Column("since", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_loop_leader"),
    )


def downgrade() -> None:
    op.drop_table("loop_leader")
