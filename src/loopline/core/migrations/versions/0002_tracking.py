"""tracking: runs, params, metrics, tags, artifacts

Revision ID: 0002_tracking
Revises: 0001_core
Create Date: 2026-11-26
"""

from __future__ import annotations

revision = "0002_tracking"
down_revision = "0001_core"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
