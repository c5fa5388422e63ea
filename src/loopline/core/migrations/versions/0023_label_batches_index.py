"""monitoring: label files are indexed like prediction files (model, request-id range)

Revision ID: 0023_label_batches_index
Revises: 0022_metric_points_once
Create Date: 2026-12-04

``read_labels(model, request_ids=...)`` had only the digest of each label file: it opened
every label file of every model on each call (the ``/monitoring`` page and the loop call it
again and again). ``label_batches`` gains what ``prediction_batches`` has: ``model`` (the
model the labels were sent for; NULL: for any model), ``rid_min``, ``rid_max`` and
``rid_hashes`` (:mod:`loopline.monitoring.rid_index`), and an index on ``model``.

Rows written before stay NULL: such a file is read for every model and every id, as
before (correct, not pruned). The upgrade does not fill them in: the ids are in the files,
in the artifact store (a folder or S3 that ``loopline db upgrade`` is not given, and that
may be unreachable or slow from where it runs), and the model a file holds may be unset
in the file itself (labels sent for any model). Kept identical to ``label_batches`` in
``loopline/monitoring/tables.py``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023_label_batches_index"
down_revision = "0022_metric_points_once"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("label_batches") as batch:
        batch.add_column(sa.Column("model", sa.String(256), nullable=True))
        batch.add_column(sa.Column("rid_min", sa.String(200), nullable=True))
        batch.add_column(sa.Column("rid_max", sa.String(200), nullable=True))
        batch.add_column(sa.Column("rid_hashes", sa.LargeBinary, nullable=True))
        batch.create_index("ix_label_batches_model", ["model"])


def downgrade() -> None:
    with op.batch_alter_table("label_batches") as batch:
        batch.drop_index("ix_label_batches_model")
        batch.drop_column("rid_hashes")
        batch.drop_column("rid_max")
        batch.drop_column("rid_min")
        batch.drop_column("model")
