"""The feature store's tables: feature view definitions and the materialization log.

Only :mod:`loopline.data` touches these tables (DESIGN.md, "Layers"); other stages go
through :mod:`loopline.data.features`. The schema is created by the Alembic revision
``0004_features``; keep the two in step (``tests/data/test_features_store.py`` compares them).

- ``feature_views``: one row per view name. ``definition`` is the JSON of the view
  (entity keys, timestamp and created columns, features, TTL). The source is either a
  frame stored as Parquet in the artifact store (``source_kind='frame'``, its BLAKE3
  ``source_digest``) or a versioned dataset (``source_kind='dataset'``, ``source_dataset``).
- ``feature_materializations``: one row per :func:`loopline.data.features.materialize` call:
  the window, the rows written and where.
"""

from __future__ import annotations

import sqlalchemy as sa

from loopline.core.schema import metadata

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

feature_views = sa.Table(
    "feature_views",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("definition", sa.JSON, nullable=False),
    sa.Column("source_kind", sa.String(20), nullable=False),
    sa.Column("source_digest", sa.String(64), nullable=True),
    sa.Column("source_dataset", sa.String(500), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

feature_materializations = sa.Table(
    "feature_materializations",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column(
        "view_id",
        _ID,
        sa.ForeignKey("feature_views.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("start_ts", sa.Float, nullable=True),
    sa.Column("end_ts", sa.Float, nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("online_store", sa.String(500), nullable=False),
    sa.Column("source_ref", sa.String(500), nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float, nullable=False),
)
