"""Metric points: the bulk write path (history + latest value) and history reads.

:func:`write_rows` is what the background ingest writer and ``log_batch`` both call. In the
caller's transaction it packs the batch's points into one ``metric_chunks`` row per
(run, key) and then upserts ``latest_metrics`` once per (run, key): the batch's own latest
point is found per chunk, and the database keeps whichever of it and the stored row has the
greater ``(step, timestamp, value)`` (MLflow's rule), so batches may arrive in any order and
from several processes. Each run's ``runs.metrics_json`` (its latest metrics as one object,
read with the run by every get and search) is rewritten in the same transaction
(:func:`loopline.tracking.run_json.refresh_metrics`).

A chunk holds its points in the order they were logged as three little-endian arrays
(steps and timestamps int64, values float64, NaN as NaN): storing a point costs a few
bytes instead of a table row and an index entry, so ingest is no longer capped by the
database's per-row insert rate. :func:`history` and :func:`stored_points` unpack them.

Rows are in stored form (:data:`~loopline.tracking._dialect.MetricRow`): NaN as value 0
with ``is_nan`` 1, +/-inf as +/-1.7976931348623157e308
(see :func:`~loopline.tracking.validation.stored_metric_value`).

Example:
    >>> # with engine.begin() as conn:
    >>> #     write_rows(conn, [(run_id, "loss", 0.5, 1700000000000, 0, 0)])
"""

from __future__ import annotations

import sys
from array import array
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from operator import itemgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from loopline.errors import InvalidInput
from loopline.tracking import run_json
from loopline.tracking._dialect import (
    MetricRow,
    bulk_insert_chunks,
    bulk_upsert_latest,
)
from loopline.tracking.entities import MetricPoint
from loopline.tracking.tables import metric_chunks

_NAN = float("nan")
_RUN, _VALUE, _TIMESTAMP, _STEP, _IS_NAN = (itemgetter(i) for i in (0, 2, 3, 4, 5))
_SWAP = sys.byteorder != "little"  # chunks are little-endian on every machine

#: One packed chunk, as inserted: (run_id, key, points, steps, timestamps, values).
ChunkRow = tuple[str, str, int, bytes, bytes, bytes]


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


def _pack(typecode: str, values: Iterable[Any], field: str) -> bytes:
    try:
        packed = array(typecode, values)
    except OverflowError as exc:
        raise InvalidInput(
            f"a metric {field} does not fit in 64 bits",
            field=field,
            hint=f"log {field}s between -2**63 and 2**63 - 1",
        ) from exc
    if _SWAP:
        packed.byteswap()
    return packed.tobytes()


def _unpack(typecode: str, data: bytes) -> array[Any]:
    out = array(typecode)
    out.frombytes(data)
    if _SWAP:
        out.byteswap()
    return out


def pack_chunks(rows: Sequence[MetricRow]) -> tuple[list[ChunkRow], list[MetricRow]]:
    """Group stored-form rows into one chunk per (run_id, key), and each group's latest row.

    The chunks keep the rows' order; the latest row is the first with the greatest
    ``(step, timestamp, value)`` (as :func:`latest_of` picks it). Both lists are sorted by
    (run_id, key), a fixed order in which concurrent writers take their locks.

    Example:
        >>> rows = [("r", "loss", 0.9, 10, 0, 0), ("r", "loss", 0.5, 11, 1, 0)]
        >>> chunks, latest = pack_chunks(rows)
        >>> chunks[0][2], latest[0][2]
        (2, 0.5)
    """
    groups: defaultdict[tuple[str, str], list[MetricRow]] = defaultdict(list)
    runs = set(map(_RUN, rows))
    if len(runs) == 1:  # the usual batch: one run, so group by key alone (half the cost)
        by_key: defaultdict[str, list[MetricRow]] = defaultdict(list)
        for row in rows:
            by_key[row[1]].append(row)
        (only,) = runs
        groups.update(((only, key), group) for key, group in by_key.items())
    else:
        for row in rows:
            groups[row[0], row[1]].append(row)
    chunks: list[ChunkRow] = []
    latest: list[MetricRow] = []
    for (run_id, key), group in sorted(groups.items()):
        values = list(map(_VALUE, group))
        stamps = list(map(_TIMESTAMP, group))
        steps = list(map(_STEP, group))
        latest.append(group[_latest_index(steps, stamps, values)])
        stored: list[float] = values
        if any(map(_IS_NAN, group)):
            stored = [_NAN if row[5] else row[2] for row in group]
        chunks.append(
            (
                run_id,
                key,
                len(group),
                _pack("q", steps, "step"),
                _pack("q", stamps, "timestamp"),
                _pack("d", stored, "value"),
            )
        )
    return chunks, latest


def _latest_index(steps: list[int], stamps: list[int], values: list[float]) -> int:
    """Index of the first point with the greatest (step, timestamp, value)."""
    top = max(steps)
    if steps.count(top) == 1:  # the usual case, found in C
        return steps.index(top)
    tied = [i for i, step in enumerate(steps) if step == top]
    return max(tied, key=lambda i: (stamps[i], values[i], -i))


def write_rows(conn: Connection, rows: Sequence[MetricRow], new_runs: Collection[str] = ()) -> None:
    """Store stored-form points and bring ``latest_metrics`` and each run's copy of it
    (``runs.metrics_json``) up to date, in ``conn``'s transaction.

    ``new_runs``: runs created in this transaction, which have no other points.

    Example:
        >>> # with engine.begin() as conn: write_rows(conn, rows)
    """
    if not rows:
        return
    chunks, latest = pack_chunks(rows)
    # Runs' rows first, then latest rows, in every writer: see run_json.lock_runs.
    run_json.lock_runs(conn, {row[0] for row in latest if row[0] not in new_runs})
    bulk_insert_chunks(conn, chunks)
    bulk_upsert_latest(conn, [(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in latest])
    run_json.refresh_metrics(conn, latest, new_runs)


def unpack_chunk(steps: bytes, timestamps: bytes, values: bytes) -> list[MetricPoint]:
    """The points of one chunk, in the order they were logged.

    Example:
        >>> chunks, _ = pack_chunks([("r", "loss", 0.5, 1700000000000, 3, 0)])
        >>> unpack_chunk(*chunks[0][3:])
        [MetricPoint(step=3, timestamp=1700000000000, value=0.5)]
    """
    return list(
        map(
            MetricPoint,
            _unpack("q", steps),
            _unpack("q", timestamps),
            _unpack("d", values),
        )
    )


def history(conn: Connection, run_id: str, key: str) -> list[MetricPoint]:
    """Every point of one metric of one run, by step, then timestamp, then insertion order.

    Example:
        >>> # with engine.connect() as conn: history(conn, run_id, "loss")
    """
    query = (
        sa.select(metric_chunks.c.steps, metric_chunks.c.timestamps, metric_chunks.c.metric_values)
        .where(metric_chunks.c.run_id == run_id, metric_chunks.c.key == key)
        .order_by(metric_chunks.c.id)
    )
    points: list[MetricPoint] = []
    for steps, stamps, values in conn.execute(query):
        points += unpack_chunk(steps, stamps, values)
    points.sort(key=_step_time)  # stable: equal (step, timestamp) stay in logged order
    return points


def _step_time(point: MetricPoint) -> tuple[int, int]:
    return point.step, point.timestamp


def stored_points(conn: Connection, run_ids: Sequence[str]) -> list[tuple[str, str, MetricPoint]]:
    """Every stored point of the given runs as ``(run_id, key, point)``, in logged order.

    For checks that count what was stored (every point exactly once).

    Example:
        >>> # with engine.connect() as conn: len(stored_points(conn, [run_id]))
    """
    query = (
        sa.select(
            metric_chunks.c.run_id,
            metric_chunks.c.key,
            metric_chunks.c.steps,
            metric_chunks.c.timestamps,
            metric_chunks.c.metric_values,
        )
        .where(metric_chunks.c.run_id.in_(list(run_ids)))
        .order_by(metric_chunks.c.id)
    )
    return [
        (run_id, key, point)
        for run_id, key, steps, stamps, values in conn.execute(query)
        for point in unpack_chunk(steps, stamps, values)
    ]
