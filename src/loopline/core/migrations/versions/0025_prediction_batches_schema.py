"""monitoring: each prediction file's index row records its columns' fingerprint

Revision ID: 0025_prediction_batches_schema
Revises: 0024_prediction_spool
Create Date: 2026-12-05

``read_predictions(model, last=N)`` (the ``/monitoring`` page's live metrics) named every
prediction file of the model in its DuckDB query, only so that the result had the columns
(and types) of all of them - an old file may have a column the newest lack. That cost grew
with the log (0.16 s of a 0.24 s page at 500 files). ``prediction_batches`` gains
``schema_digest``, a fingerprint of the file's column names and types
(:func:`loopline.monitoring.log_files.schema_digest`): the read names the files that
can hold the newest rows and one file of each other column layout, no more; an index on
``(model, schema_digest)`` finds those without reading the rows (in SQLite the column
follows ``rid_hashes``, ~40 kB a file, and reaching it walks the blob's overflow pages).

Rows written before stay NULL: such a file is named by every read, as before (correct,
only slower). The upgrade does not fill them in: the columns are in the files, in the
artifact store, which ``loopline db upgrade`` is not given. Kept identical to
``prediction_batches`` in ``loopline/monitoring/tables.py``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025_prediction_batches_schema"
down_revision = "0024_prediction_spool"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("prediction_batches") as batch:
        batch.add_column(sa.Column("schema_digest", sa.String(64), nullable=True))
        batch.create_index("ix_prediction_batches_model_schema", ["model", "schema_digest"])


def downgrade() -> None:
    with op.batch_alter_table("prediction_batches") as batch:
        batch.drop_index("ix_prediction_batches_model_schema")
        batch.drop_column("schema_digest")
