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

A point is stored once, as MLflow stores it (its ``metrics`` table's primary key is
``(run, key, timestamp, step, value, is_nan)``, and its ``_log_metrics`` drops repeats within
a batch and rows already stored): :func:`write_rows` drops a batch's repeats of a point
(the first is kept) and the points already stored, so a batch sent again (a client's retry
after a lost answer) or the same point logged twice adds nothing. Two points are the same
when run, key, step, timestamp and value are; NaN equals NaN (MLflow stores NaN as 0 with
``is_nan`` set, so its key dedupes NaN too) and ``-0.0`` equals ``0.0`` (as in SQL). The
stored points a batch can repeat are in the chunks whose span (lowest and highest
``(step, timestamp)``, kept in the chunk's row and index) meets the batch's: one index probe
per series, which finds nothing for the usual batch (steps or times past everything
stored); only a batch reaching back into stored history reads chunks. The check runs
after :func:`~loopline.tracking.run_json.lock_runs` (PostgreSQL) or inside ``BEGIN
IMMEDIATE`` (SQLite), so two writers of one run never both add a point.

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
from collections.abc import Collection, Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from loopline.errors import InvalidInput
from loopline.tracking import run_json
from loopline.tracking._dialect import (
    MetricRow,
    Span,
    bulk_insert_chunks,
    bulk_upsert_latest,
    chunks_meeting,
)
from loopline.tracking.entities import MetricPoint
from loopline.tracking.tables import metric_chunks

_NAN = float("nan")
_RUN, _VALUE, _TIMESTAMP, _STEP, _IS_NAN = (itemgetter(i) for i in (0, 2, 3, 4, 5))
_SWAP = sys.byteorder != "little"  # chunks are little-endian on every machine

#: One packed chunk, as inserted: (run_id, key, points, steps, timestamps, values,
#: min_step, min_timestamp, max_step, max_timestamp); the last four are its span.
ChunkRow = tuple[str, str, int, bytes, bytes, bytes, int, int, int, int]
#: A point as compared for sameness: (value, timestamp, step, is_nan), NaN as (0.0, ..., 1).
Point = tuple[float, int, int, int]


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


def group_series(rows: Sequence[MetricRow]) -> list[tuple[tuple[str, str], list[MetricRow]]]:
    """Stored-form rows grouped by (run_id, key), in logged order within a group; the groups
    sorted by (run_id, key), a fixed order in which concurrent writers take their locks.

    Example:
        >>> rows = [("r", "loss", 0.9, 10, 0, 0), ("r", "acc", 0.5, 11, 1, 0)]
        >>> [k for k, _ in group_series(rows)]
        [('r', 'acc'), ('r', 'loss')]
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
    return sorted(groups.items())


class Series:
    """One (run, key)'s points of a batch, without repeats (the first of each kept, in logged
    order), with their steps and timestamps and their span.

    Steps and timestamps are listed once and shared by the repeat check, the span, the
    latest point and the packing: each pass over a batch is a measurable share of ingest.

    Example:
        >>> rows = [("r", "loss", 0.5, 10, 1, 0), ("r", "loss", 0.5, 10, 1, 0),
        ...         ("r", "loss", 0.7, 12, 0, 0)]
        >>> s = Series("r", "loss", rows)
        >>> [r[2] for r in s.rows], s.span()
        ([0.5, 0.7], (0, 12, 1, 10))
    """

    __slots__ = ("_span", "distinct_steps", "key", "rows", "run_id", "stamps", "steps")

    def __init__(self, run_id: str, key: str, rows: list[MetricRow]) -> None:
        self.run_id, self.key = run_id, key
        self._set(rows)
        n = len(rows)
        # Two points can be the same only with the same step and timestamp: distinct steps
        # (a training loop) or distinct timestamps settle it in C, without a set of points.
        self.distinct_steps = len(set(self.steps)) == n
        if not self.distinct_steps and n > 1 and len(set(self.stamps)) != n:
            seen: set[Point] = set()
            kept: list[MetricRow] = []
            for row in rows:
                point = _point(row)
                if point not in seen:
                    seen.add(point)
                    kept.append(row)
            if len(kept) < n:
                self._set(kept)

    def _set(self, rows: list[MetricRow]) -> None:
        self.rows = rows
        self.steps = list(map(_STEP, rows))
        self.stamps = list(map(_TIMESTAMP, rows))
        self._span: tuple[int, int, int, int, int] | None = None

    def drop(self, known: set[Point]) -> None:
        """Forget the points in ``known`` (stored already).

        Example:
            >>> s = Series("r", "loss", [("r", "loss", 0.5, 10, 1, 0)])
            >>> s.drop({(0.5, 10, 1, 0)}); s.rows
            []
        """
        kept = [row for row in self.rows if _point(row) not in known]
        if len(kept) < len(self.rows):
            self._set(kept)

    def span(self) -> tuple[int, int, int, int]:
        """The lowest and the highest (step, timestamp) pair: (min_step, its least
        timestamp, max_step, its greatest timestamp).

        Example:
            >>> Series("r", "x", [("r", "x", 1.0, 7, 2, 0), ("r", "x", 1.0, 5, 2, 0)]).span()
            (2, 5, 2, 7)
        """
        return self._extremes()[:4]

    def _extremes(self) -> tuple[int, int, int, int, int]:
        """The span, and the index of the highest step when steps are distinct (else -1);
        worked out once (each pass over a batch is a measurable share of ingest)."""
        if self._span is not None:
            return self._span
        steps, stamps = self.steps, self.stamps
        lo, hi = min(steps), max(steps)
        if self.distinct_steps:  # the usual case, found in C
            top = steps.index(hi)
            self._span = (lo, stamps[steps.index(lo)], hi, stamps[top], top)
        else:
            lo_ts = min(t for s, t in zip(steps, stamps, strict=True) if s == lo)
            hi_ts = max(t for s, t in zip(steps, stamps, strict=True) if s == hi)
            self._span = (lo, lo_ts, hi, hi_ts, -1)
        return self._span

    def latest(self) -> MetricRow:
        """The first point with the greatest ``(step, timestamp, value)``, as
        :func:`latest_of` picks it.

        Example:
            >>> Series("r", "x", [("r", "x", 1.0, 7, 2, 0), ("r", "x", 3.0, 7, 2, 0)]).latest()[2]
            3.0
        """
        top = self._extremes()[4]
        if top >= 0:
            return self.rows[top]
        values = list(map(_VALUE, self.rows))
        return self.rows[_latest_index(self.steps, self.stamps, values)]


def _point(row: MetricRow) -> Point:
    return (0.0 if row[5] else row[2], row[3], row[4], 1 if row[5] else 0)


def series_of(rows: Sequence[MetricRow]) -> list[Series]:
    """The batch's :class:`Series`, sorted by (run_id, key) (see :func:`group_series`).

    Example:
        >>> [s.key for s in series_of([("r", "b", 1.0, 1, 0, 0), ("r", "a", 1.0, 1, 0, 0)])]
        ['a', 'b']
    """
    return [Series(run_id, key, group) for (run_id, key), group in group_series(rows)]


def pack_series(series: Sequence[Series]) -> tuple[list[ChunkRow], list[MetricRow]]:
    """One chunk per series (its points in logged order, with its span) and each series'
    latest row (:meth:`Series.latest`). Both lists keep the order of ``series``.

    Example:
        >>> rows = [("r", "loss", 0.9, 10, 0, 0), ("r", "loss", 0.5, 11, 1, 0)]
        >>> chunks, latest = pack_series(series_of(rows))
        >>> chunks[0][2], chunks[0][6:], latest[0][2]
        (2, (0, 10, 1, 11), 0.5)
    """
    chunks: list[ChunkRow] = []
    latest: list[MetricRow] = []
    for one in series:
        group = one.rows
        latest.append(one.latest())
        stored: list[float]
        if any(map(_IS_NAN, group)):
            stored = [_NAN if row[5] else row[2] for row in group]
        else:
            stored = list(map(_VALUE, group))
        chunks.append(
            (
                one.run_id,
                one.key,
                len(group),
                _pack("q", one.steps, "step"),
                _pack("q", one.stamps, "timestamp"),
                _pack("d", stored, "value"),
                *one.span(),
            )
        )
    return chunks, latest


def pack_chunks(rows: Sequence[MetricRow]) -> tuple[list[ChunkRow], list[MetricRow]]:
    """Group stored-form rows into one chunk per (run_id, key) of its distinct points, and
    each group's latest row (:func:`series_of`, :func:`pack_series`); both lists sorted by
    (run_id, key).

    Example:
        >>> rows = [("r", "loss", 0.9, 10, 0, 0), ("r", "loss", 0.5, 11, 1, 0),
        ...         ("r", "loss", 0.5, 11, 1, 0)]
        >>> chunks, latest = pack_chunks(rows)
        >>> chunks[0][2], latest[0][2]
        (2, 0.5)
    """
    return pack_series(series_of(rows))


def _latest_index(steps: list[int], stamps: list[int], values: list[float]) -> int:
    """Index of the first point with the greatest (step, timestamp, value)."""
    top = max(steps)
    if steps.count(top) == 1:  # the usual case, found in C
        return steps.index(top)
    tied = [i for i, step in enumerate(steps) if step == top]
    return max(tied, key=lambda i: (stamps[i], values[i], -i))


def write_rows(
    conn: Connection,
    rows: Sequence[MetricRow],
    new_runs: Collection[str] = (),
    copies: Mapping[str, str | None] | None = None,
) -> int:
    """Store stored-form points not stored yet and bring ``latest_metrics`` and each run's
    copy of it (``runs.metrics_json``) up to date, in ``conn``'s transaction; returns how
    many points it stored.

    A point already stored, or repeated in ``rows``, is stored once (see the module's
    docstring) and not counted. ``new_runs``: runs created in this transaction, which have
    no other points. ``copies``: runs' ``metrics_json`` already read in this transaction
    under the runs' lock (see :func:`loopline.tracking.run_json.refresh_metrics`); a series
    whose points all come after its key's latest point in the copy skips the look for
    stored points (none can be one of them).

    Example:
        >>> # with engine.begin() as conn: write_rows(conn, rows)  -> len(rows) when all new
    """
    if not rows:
        return 0
    series = series_of(rows)
    # Runs' rows first, then latest rows, in every writer: see run_json.lock_runs. The lock
    # also keeps another writer of the run from adding a point between check and insert.
    run_json.lock_runs(conn, {s.run_id for s in series if s.run_id not in new_runs})
    known = {run_id: orjson.loads(copy) if copy else {} for run_id, copy in (copies or {}).items()}
    series = _without_stored(conn, series, new_runs, known)
    if not series:
        return 0
    chunks, latest = pack_series(series)
    bulk_insert_chunks(conn, chunks)
    bulk_upsert_latest(conn, [(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in latest])
    run_json.refresh_metrics(conn, latest, new_runs, known)
    return sum(chunk[2] for chunk in chunks)


def _without_stored(
    conn: Connection,
    series: list[Series],
    new_runs: Collection[str],
    copies: Mapping[str, dict[str, list[Any]]],
) -> list[Series]:
    """``series`` without the points already stored; a series left empty is dropped.

    Its latest point is stored already then, and ``latest_metrics`` holds it or a later one.
    """
    spans: list[Span] = [
        (s.run_id, s.key, *s.span())
        for s in series
        if s.run_id not in new_runs and not _after_latest(s, copies)
    ]
    if not spans:
        return series
    stored: defaultdict[tuple[str, str], set[Point]] = defaultdict(set)
    for run_id, key, steps, stamps, values in chunks_meeting(conn, spans):
        stored[run_id, key].update(
            (0.0, ts, step, 1) if value != value else (value, ts, step, 0)
            for step, ts, value in zip(
                _unpack("q", steps), _unpack("q", stamps), _unpack("d", values), strict=True
            )
        )
    if not stored:  # the usual batch: nothing stored meets it
        return series
    for one in series:
        known = stored.get((one.run_id, one.key))
        if known:
            one.drop(known)
    return [one for one in series if one.rows]


def _after_latest(one: Series, copies: Mapping[str, dict[str, list[Any]]]) -> bool:
    """True when every point of ``one`` comes after its key's latest point in its run's
    copy (``copies``, read in this transaction): no stored point can be one of them.

    The copy holds the greatest ``(step, timestamp, value)`` of the key's stored points
    (:func:`loopline.tracking.run_json.refresh_metrics` keeps it so with every point
    stored), so every stored point's ``(step, timestamp)`` is at most the copy's, and a point
    with a greater one is none of them. A key missing from the copy is looked up as always.
    """
    points = copies.get(one.run_id)
    latest = points.get(one.key) if points else None
    if latest is None:
        return False
    low_step, low_stamp = one.span()[:2]
    return (low_step, low_stamp) > (latest[0], latest[1])


def unpack_chunk(steps: bytes, timestamps: bytes, values: bytes) -> list[MetricPoint]:
    """The points of one chunk, in the order they were logged.

    Example:
        >>> chunks, _ = pack_chunks([("r", "loss", 0.5, 1700000000000, 3, 0)])
        >>> unpack_chunk(*chunks[0][3:6])
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
