"""auth: API tokens (hashed) and their roles

Revision ID: 0009_auth
Revises: 0008_monitoring
Create Date: 2026-11-26

Kept identical to ``api_tokens`` in ``loopline/core/auth.py``
(``tests/core/test_auth.py`` compares them).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_auth"
down_revision = "0008_monitoring"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        # Only the SHA-256 of a token is stored (see loopline/core/auth.py for why SHA-256).
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("revoked_at", sa.Float, nullable=True),
        sa.Column("last_used", sa.Float, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        sa.UniqueConstraint("name", name="uq_api_tokens_name"),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
    )


def downgrade() -> None:
    op.drop_table("api_tokens")
