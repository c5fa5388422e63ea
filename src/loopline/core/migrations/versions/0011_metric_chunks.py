"""tracking: metric history packed in chunks (``metric_chunks`` replaces ``metrics``)

Revision ID: 0011_metric_chunks
Revises: 0010_monitoring_index
Create Date: 2026-11-26

One ``metric_chunks`` row per (run, key) per written batch holds the batch's points as
little-endian arrays (steps and timestamps int64, values float64 with NaN as NaN), in logged
order; a row per point capped ingest at the database's per-row insert rate. Existing points
move over in logged order (at most :data:`_CHUNK_POINTS` per chunk); the downgrade unpacks
them again. Kept identical to ``metric_chunks`` in ``loopline/tracking/tables.py``.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0011_metric_chunks"
down_revision = "0010_monitoring_index"
branch_labels = None
depends_on = None

_BIGINT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_SWAP = sys.byteorder != "little"
#: Points per chunk when existing history is moved over (bounds one row's size).
_CHUNK_POINTS = 100_000
_NAN = float("nan")


def _pack(typecode: str, values: list[Any]) -> bytes:
    packed = array(typecode, values)
    if _SWAP:
        packed.byteswap()
    return packed.tobytes()


def _unpack(typecode: str, data: bytes) -> list[Any]:
    out = array(typecode)
    out.frombytes(data)
    if _SWAP:
        out.byteswap()
    return out.tolist()


def _old_points(conn: sa.Connection) -> Iterator[tuple[str, str, list[tuple[Any, ...]]]]:
    """(run_id, key, points in logged order) from the old table, one series at a time."""
    series = conn.execute(sa.text('SELECT DISTINCT run_id, "key" FROM metrics')).all()
    query = sa.text(
        "SELECT step, timestamp, value, is_nan FROM metrics WHERE run_id = :run_id "
        'AND "key" = :key ORDER BY id'
    )
    for run_id, key in sorted(series):
        points = [
            (step, ts, _NAN if is_nan else value)
            for step, ts, value, is_nan in conn.execute(query, {"run_id": run_id, "key": key})
        ]
        for start in range(0, len(points), _CHUNK_POINTS):
            yield run_id, key, points[start : start + _CHUNK_POINTS]


def upgrade() -> None:
    chunks = op.create_table(
        "metric_chunks",
        sa.Column("id", _BIGINT_ID, nullable=False, autoincrement=True),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("key", sa.String(250), nullable=False),
        sa.Column("points", sa.Integer, nullable=False),
        sa.Column("steps", sa.LargeBinary, nullable=False),
        sa.Column("timestamps", sa.LargeBinary, nullable=False),
        sa.Column("metric_values", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metric_chunks")),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
            name=op.f("fk_metric_chunks_run_id_runs"),
            ondelete="CASCADE",
        ),
    )
    op.create_index(op.f("ix_metric_chunks_run_id_key"), "metric_chunks", ["run_id", "key"])
    conn = op.get_bind()
    batch: list[dict[str, Any]] = []
    for run_id, key, points in _old_points(conn):
        steps, stamps, values = zip(*points, strict=True)
        batch.append(
            {
                "run_id": run_id,
                "key": key,
                "points": len(points),
                "steps": _pack("q", list(steps)),
                "timestamps": _pack("q", list(stamps)),
                "metric_values": _pack("d", list(values)),
            }
        )
        if len(batch) >= 1000:
            conn.execute(chunks.insert(), batch)
            batch = []
    if batch:
        conn.execute(chunks.insert(), batch)
    op.drop_index(op.f("ix_metrics_run_id_key"), "metrics")
    op.drop_table("metrics")


def downgrade() -> None:
    metrics = op.create_table(
        "metrics",
        sa.Column("id", _BIGINT_ID, nullable=False, autoincrement=True),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("key", sa.String(250), nullable=False),
        sa.Column("value", sa.Double, nullable=False),
        sa.Column("timestamp", sa.BigInteger, nullable=False),
        sa.Column("step", sa.BigInteger, nullable=False),
        sa.Column("is_nan", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metrics")),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_metrics_run_id_runs"), ondelete="CASCADE"
        ),
    )
    op.create_index(op.f("ix_metrics_run_id_key"), "metrics", ["run_id", "key"])
    conn = op.get_bind()
    ids = conn.execute(sa.text("SELECT id FROM metric_chunks ORDER BY id")).scalars().all()
    query = sa.text(
        'SELECT run_id, "key", steps, timestamps, metric_values FROM metric_chunks WHERE id = :id'
    )
    for chunk_id in ids:
        run_id, key, steps, stamps, values = conn.execute(query, {"id": chunk_id}).one()
        rows = [
            {
                "run_id": run_id,
                "key": key,
                "step": step,
                "timestamp": ts,
                "value": 0.0 if value != value else value,  # NaN is flagged, stored as 0
                "is_nan": value != value,
            }
            for step, ts, value in zip(
                _unpack("q", steps), _unpack("q", stamps), _unpack("d", values), strict=True
            )
        ]
        conn.execute(metrics.insert(), rows)
    op.drop_index(op.f("ix_metric_chunks_run_id_key"), "metric_chunks")
    op.drop_table("metric_chunks")
