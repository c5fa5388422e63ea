"""The few places where SQLite and PostgreSQL need different SQL, kept in one module.

* upserts: ``INSERT ... ON CONFLICT`` is spelled the same on both, but SQLAlchemy builds it
  from each dialect's own ``insert``;
* bulk metric-chunk inserts: the driver's ``executemany``, whose placeholders differ;
* case-sensitive ``LIKE``: PostgreSQL's ``LIKE`` is, SQLite's is not, so on SQLite the
  pattern is rewritten as an equivalent ``GLOB``.

Example:
    >>> like_to_glob("run_%")
    'run?*'
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from loopline.core.bulk import driver_executemany, driver_fetchall, placeholder
from loopline.errors import ConfigError

#: One stored metric row: (run_id, key, value, timestamp, step, is_nan). ``is_nan`` is 0 or 1
#: (an int binds measurably faster than a bool in SQLite's executemany).
MetricRow = tuple[str, str, float, int, int, int]


def insert_for(conn: Connection, table: sa.Table) -> Any:
    """The dialect's ``INSERT`` for ``table``, which knows ``on_conflict_do_*``.

    Example:
        >>> # insert_for(conn, params).on_conflict_do_nothing(index_elements=["run_id", "key"])
    """
    name = conn.dialect.name
    if name == "sqlite":
        return sqlite.insert(table)
    if name == "postgresql":
        # Imported here: SQLAlchemy's PostgreSQL dialect costs a command on SQLite ~80 ms
        # of start-up (its asyncpg and catalog modules come with it).
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    raise ConfigError(f"the tracking store does not support the {name!r} database")


_STATEMENTS: dict[tuple[str, str], Any] = {}


def cached_statement(conn: Connection, name: str, build: Callable[[Connection], Any]) -> Any:
    """The statement ``name`` for ``conn``'s dialect, built by ``build`` once and reused.

    Building an upsert (``ON CONFLICT ... excluded``) costs more than running it on a hot
    path such as logging one metric; a statement with bound parameters can be reused.

    Example:
        >>> # stmt = cached_statement(conn, "params.insert", lambda c: insert_for(c, params))
    """
    key = (conn.dialect.name, name)
    stmt = _STATEMENTS.get(key)
    if stmt is None:
        stmt = _STATEMENTS[key] = build(conn)
    return stmt


_CHUNK_INSERT = (
    "INSERT INTO metric_chunks (run_id, key, points, steps, timestamps, metric_values, "
    "min_step, min_timestamp, max_step, max_timestamp) "
    "VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})"
)


def bulk_insert_chunks(conn: Connection, chunks: Sequence[tuple[Any, ...]]) -> None:
    """Insert packed metric chunks into ``metric_chunks`` in the caller's transaction.

    Straight through the driver's ``executemany`` (``?`` placeholders on SQLite, ``%s`` on
    PostgreSQL): a batch is a few rows, and SQLAlchemy's per-statement work would cost more
    than the insert on the one-point-per-request MLflow path.

    Example:
        >>> # bulk_insert_chunks(conn, [(run_id, "loss", 1, steps, timestamps, values,
        >>> #                            3, 1700000000000, 3, 1700000000000)])
    """
    if not chunks:
        return
    driver_executemany(conn, _CHUNK_INSERT.format(p=placeholder(conn)), chunks)


#: One series' span in a batch: (run_id, key, min_step, min_timestamp, max_step,
#: max_timestamp), the lowest and the highest (step, timestamp) pair of its points.
Span = tuple[str, str, int, int, int, int]

# A stored chunk can hold one of a batch's points only if their spans meet. The index on
# (run_id, key, max_step, max_timestamp, min_step, min_timestamp) answers each term with
# one probe (row values compare in order, and use the index, on SQLite 3.15+ and
# PostgreSQL); the usual batch, past everything stored, finds nothing.
_SPAN_TERM = (
    '(run_id = {p} AND "key" = {p} AND (max_step, max_timestamp) >= ({p}, {p}) '
    "AND (min_step, min_timestamp) <= ({p}, {p}))"
)
_SPAN_SELECT = 'SELECT run_id, "key", steps, timestamps, metric_values FROM metric_chunks WHERE '
#: Series per statement: a few hundred bound values, far below either database's limit.
SPAN_TERMS_PER_QUERY = 100


def chunks_meeting(conn: Connection, spans: Sequence[Span]) -> list[tuple[Any, ...]]:
    """``(run_id, key, steps, timestamps, values)`` of the stored chunks whose span meets
    one of ``spans`` (same run and key), in the caller's transaction.

    One statement per :data:`SPAN_TERMS_PER_QUERY` series, through the driver: the MLflow
    client logs one point per request, and this runs for each.

    Example:
        >>> # chunks_meeting(conn, [(run_id, "loss", 3, 1700000000000, 3, 1700000000000)])
    """
    p = placeholder(conn)
    found: list[tuple[Any, ...]] = []
    for start in range(0, len(spans), SPAN_TERMS_PER_QUERY):
        page = spans[start : start + SPAN_TERMS_PER_QUERY]
        sql = _SPAN_SELECT + " OR ".join([_SPAN_TERM.format(p=p)] * len(page))
        args = [
            v
            for run_id, key, lo_step, lo_ts, hi_step, hi_ts in page
            for v in (run_id, key, lo_step, lo_ts, hi_step, hi_ts)
        ]
        found += driver_fetchall(conn, sql, tuple(args))
    return found


# Keep whichever of the stored and the new point has the greater (step, timestamp, value):
# a late or replayed batch never moves the latest value back. Row-value comparison and
# ON CONFLICT are spelled the same on SQLite (3.24+) and PostgreSQL.
_LATEST_UPSERT = (
    'INSERT INTO latest_metrics (run_id, "key", "value", "timestamp", step, is_nan) '
    "VALUES ({p}, {p}, {p}, {p}, {p}, {p}) "
    'ON CONFLICT (run_id, "key") DO UPDATE SET "value" = excluded."value", '
    '"timestamp" = excluded."timestamp", step = excluded.step, is_nan = excluded.is_nan '
    'WHERE (excluded.step, excluded."timestamp", excluded."value") > '
    '(latest_metrics.step, latest_metrics."timestamp", latest_metrics."value")'
)


def bulk_upsert_latest(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Bring ``latest_metrics`` up to date with ``(run_id, key, value, timestamp, step,
    is_nan)`` rows (one per run and key) in the caller's transaction.

    Through the driver like :func:`bulk_insert_chunks`: the MLflow client logs one point
    per request, and SQLAlchemy's statement handling cost more than the upsert.

    Example:
        >>> # bulk_upsert_latest(conn, [(run_id, "loss", 0.3, 1700000000000, 1, False)])
    """
    if not rows:
        return
    driver_executemany(conn, _LATEST_UPSERT.format(p=placeholder(conn)), rows)


#: The longest LIKE pattern a search takes, in UTF-8 bytes. SQLite refuses a pattern over
#: 50,000 bytes ("LIKE or GLOB pattern too complex", which read as an outage); the rewrite
#: as a GLOB (:func:`like_to_glob`) may triple it. One limit on both backends.
MAX_LIKE_PATTERN_BYTES = 10_000


def like_pattern_too_long(pattern: str) -> str | None:
    """Why ``pattern`` is too long for a LIKE search, or None when it is not.

    Example:
        >>> like_pattern_too_long("churn%") is None
        True
        >>> like_pattern_too_long("x" * 10_001)
        'a LIKE pattern may be at most 10,000 bytes (UTF-8); this one has 10,001'
    """
    size = len(pattern.encode("utf-8", "surrogatepass"))
    if size <= MAX_LIKE_PATTERN_BYTES:
        return None
    return (
        f"a LIKE pattern may be at most {MAX_LIKE_PATTERN_BYTES:,} bytes (UTF-8); "
        f"this one has {size:,}"
    )


def like_to_glob(pattern: str) -> str:
    r"""Rewrite a SQL ``LIKE`` pattern (``%``, ``_``, ``\`` escapes) as a SQLite ``GLOB``.

    Example:
        >>> like_to_glob(r"a\%b*")
        'a%b[*]'
    """
    out: list[str] = []
    chars = iter(pattern)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars, "\\")
            out.append(_glob_literal(nxt))
        elif ch == "%":
            out.append("*")
        elif ch == "_":
            out.append("?")
        else:
            out.append(_glob_literal(ch))
    return "".join(out)


def _glob_literal(ch: str) -> str:
    return f"[{ch}]" if ch in "*?[" else ch


def ilike(column: ColumnElement[Any], pattern: str) -> ColumnElement[bool]:
    r"""A case-insensitive ``column ILIKE pattern`` on either backend.

    Example:
        >>> str(ilike(sa.column("x"), "a%")).startswith("lower(x) LIKE lower")
        True
    """
    return column.ilike(pattern, escape="\\")
