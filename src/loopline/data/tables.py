"""Tables of versioned datasets (stage 1), on the shared :data:`loopline.core.schema.metadata`.

Only :mod:`loopline.data.catalog` reads or writes them; the migrations that create them,
``core/migrations/versions/0003_data.py`` and ``0019_version_description.py``, must be kept
identical (a test compares them).

- ``datasets``: one row per dataset name.
- ``dataset_versions``: one immutable snapshot per (name, version); ``hash`` is the digest of
  its manifest, itself stored as a JSON artifact; ``description`` is the version's own.
- ``dataset_files``: the manifest's rows (relative path, digest, size) for queries.
"""

from __future__ import annotations

import sqlalchemy as sa

from loopline.core.schema import metadata

# 64-bit ids on PostgreSQL; INTEGER on SQLite so that the id is the autoincrementing rowid.
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

datasets = sa.Table(
    "datasets",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(128), nullable=False),
    # Neither read nor written since each version has its own (0019), which see for why
    # it is not dropped.
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("created", sa.Float, nullable=False),
    sa.UniqueConstraint("name", name="uq_datasets_name"),
)

dataset_versions = sa.Table(
    "dataset_versions",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column(
        "dataset_id",
        _ID,
        sa.ForeignKey("datasets.id", name="fk_dataset_versions_dataset_id_datasets"),
        nullable=False,
    ),
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
    # What the version was registered with (0019); a re-add of the same content with
    # another description replaces it, with an audit event.
    sa.Column("description", sa.Text, nullable=True),
    sa.UniqueConstraint("name", "version", name="uq_dataset_versions_name_version"),
    sa.CheckConstraint("kind IN ('table', 'files')", name="kind"),
    sa.Index("ix_dataset_versions_hash", "hash"),
)

dataset_files = sa.Table(
    "dataset_files",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column(
        "version_id",
        _ID,
        sa.ForeignKey(
            "dataset_versions.id",
            name="fk_dataset_files_version_id_dataset_versions",
            ondelete="CASCADE",
        ),
        nullable=False,
    ),
    sa.Column("path", sa.String(1024), nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("version_id", "path", name="uq_dataset_files_version_id_path"),
    sa.Index("ix_dataset_files_digest", "digest"),
)
