"""Metric points: the bulk write path (history + latest value) and history reads.

:func:`write_rows` is what the background ingest writer and ``log_batch`` both call. In the
caller's transaction it bulk-inserts every point into ``metrics`` and then upserts
``latest_metrics`` once per (run, key) of the batch: the batch's own latest point is found
in Python in one pass, and the database keeps whichever of it and the stored row has the
greater ``(step, timestamp, value)`` (MLflow's rule), so batches may arrive in any order and
from several processes.

Rows are in stored form (:data:`~loopline.tracking._dialect.MetricRow`): NaN as value 0
with ``is_nan`` 1, +/-inf as +/-1.7976931348623157e308
(see :func:`~loopline.tracking.validation.stored_metric_value`).

Example:
    >>> # with engine.begin() as conn:
    >>> #     write_rows(conn, [(run_id, "loss", 0.5, 1700000000000, 0, 0)])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from loopline.tracking._dialect import (
    MetricRow,
    bulk_insert_metrics,
    cached_statement,
    insert_for,
)
from loopline.tracking.entities import MetricPoint
from loopline.tracking.tables import latest_metrics, metrics


def latest_of(rows: Sequence[MetricRow]) -> dict[tuple[str, str], MetricRow]:
    """The row with the greatest (step, timestamp, value) per (run_id, key), in one pass.

    Example:
        >>> rows = [("r", "loss", 0.9, 10, 0, 0), ("r", "loss", 0.5, 11, 1, 0)]
        >>> latest_of(rows)[("r", "loss")][2]
        0.5
    """
    best: dict[tuple[str, str], MetricRow] = {}
    get = best.get
    for row in rows:
        k = (row[0], row[1])
        cur = get(k)
        if (
            cur is None
            or row[4] > cur[4]
            or (row[4] == cur[4] and (row[3] > cur[3] or (row[3] == cur[3] and row[2] > cur[2])))
        ):
            best[k] = row
    return best


def write_rows(conn: Connection, rows: Sequence[MetricRow]) -> None:
    """Insert stored-form points and bring ``latest_metrics`` up to date, in ``conn``'s transaction.

    Example:
        >>> # with engine.begin() as conn: write_rows(conn, rows)
    """
    if not rows:
        return
    bulk_insert_metrics(conn, rows)
    latest = latest_of(rows)
    conn.execute(
        cached_statement(conn, "latest_metrics.upsert", _latest_upsert),
        [
            {
                "run_id": r[0],
                "key": r[1],
                "value": r[2],
                "timestamp": r[3],
                "step": r[4],
                "is_nan": bool(r[5]),
            }
            for r in sorted(latest.values())  # a fixed order: no deadlock between writers
        ],
    )


def _latest_upsert(conn: Connection) -> Any:
    """Keep whichever of the stored and the new point has the greater (step, timestamp, value)."""
    stmt = insert_for(conn, latest_metrics)
    new = stmt.excluded
    old = latest_metrics.c
    return stmt.on_conflict_do_update(
        index_elements=["run_id", "key"],
        set_={
            "value": new.value,
            "timestamp": new.timestamp,
            "step": new.step,
            "is_nan": new.is_nan,
        },
        where=sa.tuple_(new.step, new.timestamp, new.value)
        > sa.tuple_(old.step, old.timestamp, old.value),
    )


def history(conn: Connection, run_id: str, key: str) -> list[MetricPoint]:
    """Every point of one metric of one run, by step, then timestamp, then insertion order.

    Example:
        >>> # with engine.connect() as conn: history(conn, run_id, "loss")
    """
    query = (
        sa.select(metrics.c.step, metrics.c.timestamp, metrics.c.value, metrics.c.is_nan)
        .where(metrics.c.run_id == run_id, metrics.c.key == key)
        .order_by(metrics.c.step, metrics.c.timestamp, metrics.c.id)
    )
    return [
        MetricPoint(step, ts, float("nan") if is_nan else value)
        for step, ts, value, is_nan in conn.execute(query)
    ]
