"""registry: logged models, registered models, versions, aliases; artifact path index

Revision ID: 0005_registry
Revises: 0004_features
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_registry"
down_revision = "0004_features"
branch_labels = None
depends_on = None


def _kv(table: str, *keys: sa.Column[object]) -> None:
    op.create_table(
        table,
        *keys,
        sa.Column("key", sa.String(250), nullable=False),
        sa.Column("value", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint(*[k.name for k in keys], "key", name=f"pk_{table}"),
    )


def upgrade() -> None:
    op.create_table(
        "logged_models",
        sa.Column("model_id", sa.String(64), nullable=False),
        sa.Column("experiment_id", sa.String(64), nullable=True),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("source_run_id", sa.String(64), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("model_type", sa.String(128), nullable=True),
        sa.Column("artifact_location", sa.Text, nullable=False),
        sa.Column("flavor", sa.String(64), nullable=True),
        sa.Column("manifest_digest", sa.String(64), nullable=True),
        sa.Column("signature", sa.Text, nullable=True),
        sa.Column("creation_time", sa.BigInteger, nullable=False),
        sa.Column("last_updated_time", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("model_id", name="pk_logged_models"),
    )
    op.create_index("ix_logged_models_source_run_id", "logged_models", ["source_run_id"])
    _kv("logged_model_tags", sa.Column("model_id", sa.String(64), nullable=False))
    _kv("logged_model_params", sa.Column("model_id", sa.String(64), nullable=False))
    op.create_table(
        "registered_models",
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("creation_time", sa.BigInteger, nullable=False),
        sa.Column("last_updated_time", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_registered_models"),
    )
    _kv("registered_model_tags", sa.Column("name", sa.String(256), nullable=False))
    op.create_table(
        "model_versions",
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("version", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("source", sa.Text, nullable=True),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("model_id", sa.String(64), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("creation_time", sa.BigInteger, nullable=False),
        sa.Column("last_updated_time", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("name", "version", name="pk_model_versions"),
    )
    op.create_index("ix_model_versions_run_id", "model_versions", ["run_id"])
    _kv(
        "model_version_tags",
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("version", sa.Integer, nullable=False, autoincrement=False),
    )
    op.create_table(
        "model_aliases",
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("alias", sa.String(256), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("name", "alias", name="pk_model_aliases"),
    )
    op.create_table(
        "artifact_paths",
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("path", name="pk_artifact_paths"),
    )


def downgrade() -> None:
    for table in (
        "artifact_paths",
        "model_aliases",
        "model_version_tags",
        "model_versions",
        "registered_model_tags",
        "registered_models",
        "logged_model_params",
        "logged_model_tags",
        "logged_models",
    ):
        op.drop_table(table)
