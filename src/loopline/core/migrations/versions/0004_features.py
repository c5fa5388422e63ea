"""data: feature views and their materialization log

Revision ID: 0004_features
Revises: 0003_data
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_features"
down_revision = "0003_data"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "feature_views",
        sa.Column("id", _ID, nullable=False, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("definition", sa.JSON, nullable=False),
        sa.Column("source_kind", sa.String(20), nullable=False),
        sa.Column("source_digest", sa.String(64), nullable=True),
        sa.Column("source_dataset", sa.String(500), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_feature_views"),
        sa.UniqueConstraint("name", name="uq_feature_views_name"),
    )
    op.create_table(
        "feature_materializations",
        sa.Column("id", _ID, nullable=False, autoincrement=True),
        sa.Column("view_id", _ID, nullable=False),
        sa.Column("start_ts", sa.Float, nullable=True),
        sa.Column("end_ts", sa.Float, nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("online_store", sa.String(500), nullable=False),
        sa.Column("source_ref", sa.String(500), nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_feature_materializations"),
        sa.ForeignKeyConstraint(
            ["view_id"],
            ["feature_views.id"],
            name="fk_feature_materializations_view_id_feature_views",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_feature_materializations_view_id", "feature_materializations", ["view_id"])


def downgrade() -> None:
    op.drop_index("ix_feature_materializations_view_id", "feature_materializations")
    op.drop_table("feature_materializations")
    op.drop_table("feature_views")
