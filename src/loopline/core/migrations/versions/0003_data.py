"""data: dataset versions (datasets, dataset_versions, dataset_files)

Revision ID: 0003_data
Revises: 0002_tracking
Create Date: 2026-11-26

Kept identical to ``loopline/data/tables.py`` (``tests/data/test_tables.py`` compares them).
Feature-store tables come in 0004_features.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_data"
down_revision = "0002_tracking"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("id", _ID, nullable=False, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("created", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_datasets"),
        sa.UniqueConstraint("name", name="uq_datasets_name"),
    )
    op.create_table(
        "dataset_versions",
        sa.Column("id", _ID, nullable=False, autoincrement=True),
        sa.Column("dataset_id", _ID, nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("schema", sa.JSON, nullable=True),
        sa.Column("stats", sa.JSON, nullable=True),
        sa.Column("row_count", sa.BigInteger, nullable=True),
        sa.Column("byte_size", sa.BigInteger, nullable=False),
        sa.Column("file_count", sa.Integer, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_dataset_versions"),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name="fk_dataset_versions_dataset_id_datasets"
        ),
        sa.UniqueConstraint("name", "version", name="uq_dataset_versions_name_version"),
        sa.CheckConstraint("kind IN ('table', 'files')", name=op.f("ck_dataset_versions_kind")),
    )
    op.create_index("ix_dataset_versions_hash", "dataset_versions", ["hash"])
    op.create_table(
        "dataset_files",
        sa.Column("id", _ID, nullable=False, autoincrement=True),
        sa.Column("version_id", _ID, nullable=False),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_dataset_files"),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["dataset_versions.id"],
            name="fk_dataset_files_version_id_dataset_versions",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("version_id", "path", name="uq_dataset_files_version_id_path"),
    )
    op.create_index("ix_dataset_files_digest", "dataset_files", ["digest"])


def downgrade() -> None:
    op.drop_index("ix_dataset_files_digest", table_name="dataset_files")
    op.drop_table("dataset_files")
    op.drop_index("ix_dataset_versions_hash", table_name="dataset_versions")
    op.drop_table("dataset_versions")
    op.drop_table("datasets")
