"""tracking: a metric point is stored once; each chunk keeps its (step, timestamp) span

Revision ID: 0022_metric_points_once
Revises: 0021_feedback_label_ids
Create Date: 2026-12-03

A point logged twice with the same (run, key, step, timestamp, value) was stored twice; MLflow
stores it once (the point is its ``metrics`` table's primary key). Writers now drop the
points already stored (``loopline.tracking.metrics.write_rows``), looking only at the
chunks whose span meets the batch's: each chunk gets ``min_step``, ``min_timestamp``,
``max_step`` and ``max_timestamp`` (its lowest and highest (step, timestamp) pair), and the
index on (run_id, key) becomes one on (run_id, key, max_step, max_timestamp, min_step,
min_timestamp).

The upgrade reads every series' chunks in the order they were written and removes the
copies already stored: the first copy of a point stays where it is, a chunk that loses
points is rewritten, one left empty is deleted. NaN equals NaN here as in the writers.
``latest_metrics`` and ``runs.metrics_json`` are unchanged (a copy of a point is never later
than the point). The downgrade drops the spans and restores the old index; the removed
copies are not brought back. Kept identical to ``metric_chunks`` in
``loopline/tracking/tables.py``.
"""

from __future__ import annotations

import sys
from array import array
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0022_metric_points_once"
down_revision = "0021_feedback_label_ids"
branch_labels = None
depends_on = None

_SWAP = sys.byteorder != "little"
_SPAN = ("min_step", "min_timestamp", "max_step", "max_timestamp")
_OLD_INDEX = "ix_metric_chunks_run_id_key"
_NEW_INDEX = "ix_metric_chunks_run_id_key_span"


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


def _span(points: list[tuple[int, int, float]]) -> dict[str, int]:
    lo = min((step, ts) for step, ts, _v in points)
    hi = max((step, ts) for step, ts, _v in points)
    return {"min_step": lo[0], "min_timestamp": lo[1], "max_step": hi[0], "max_timestamp": hi[1]}


def _same(point: tuple[int, int, float]) -> tuple[int, int, float, bool]:
    step, ts, value = point
    return (step, ts, 0.0, True) if value != value else (step, ts, value, False)


def _dedupe_and_span(conn: sa.Connection) -> None:
    """Remove stored copies of a point, series by series, and fill in every chunk's span."""
    series = conn.execute(sa.text('SELECT DISTINCT run_id, "key" FROM metric_chunks')).all()
    query = sa.text(
        "SELECT id, steps, timestamps, metric_values FROM metric_chunks "
        'WHERE run_id = :run_id AND "key" = :key ORDER BY id'
    )
    set_span = sa.text(
        "UPDATE metric_chunks SET min_step = :min_step, min_timestamp = :min_timestamp, "
        "max_step = :max_step, max_timestamp = :max_timestamp WHERE id = :id"
    )
    rewrite = sa.text(
        "UPDATE metric_chunks SET points = :points, steps = :steps, timestamps = :timestamps, "
        "metric_values = :metric_values WHERE id = :id"
    )
    delete = sa.text("DELETE FROM metric_chunks WHERE id = :id")
    for run_id, key in sorted(series):
        seen: set[tuple[int, int, float, bool]] = set()
        spans: list[dict[str, Any]] = []
        # Read whole before writing: the series' rows change under a cursor still open.
        chunks = conn.execute(query, {"run_id": run_id, "key": key}).all()
        for chunk_id, steps, stamps, values in chunks:
            points = list(
                zip(_unpack("q", steps), _unpack("q", stamps), _unpack("d", values), strict=True)
            )
            kept = []
            for point in points:
                same = _same(point)
                if same not in seen:
                    seen.add(same)
                    kept.append(point)
            if not kept:
                conn.execute(delete, {"id": chunk_id})
                continue
            if len(kept) < len(points):
                conn.execute(
                    rewrite,
                    {
                        "id": chunk_id,
                        "points": len(kept),
                        "steps": _pack("q", [p[0] for p in kept]),
                        "timestamps": _pack("q", [p[1] for p in kept]),
                        "metric_values": _pack("d", [p[2] for p in kept]),
                    },
                )
            spans.append({"id": chunk_id, **_span(kept)})
        if spans:
            conn.execute(set_span, spans)


def upgrade() -> None:
    with op.batch_alter_table("metric_chunks") as batch:
        for name in _SPAN:
            batch.add_column(sa.Column(name, sa.BigInteger, nullable=True))
    _dedupe_and_span(op.get_bind())
    # On SQLite the batch copies the table to make the columns NOT NULL.
    with op.batch_alter_table("metric_chunks") as batch:
        for name in _SPAN:
            batch.alter_column(name, existing_type=sa.BigInteger, nullable=False)
        batch.drop_index(_OLD_INDEX)
        batch.create_index(
            _NEW_INDEX,
            ["run_id", "key", "max_step", "max_timestamp", "min_step", "min_timestamp"],
        )


def downgrade() -> None:
    with op.batch_alter_table("metric_chunks") as batch:
        batch.drop_index(_NEW_INDEX)
        for name in _SPAN:
            batch.drop_column(name)
        batch.create_index(_OLD_INDEX, ["run_id", "key"])
