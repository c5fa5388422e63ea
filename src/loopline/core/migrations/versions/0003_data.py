"""data: dataset versions, contracts, feature views

Revision ID: 0003_data
Revises: 0002_tracking
Create Date: 2026-11-26
"""

from __future__ import annotations

revision = "0003_data"
down_revision = "0002_tracking"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
