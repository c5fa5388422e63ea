"""The few places where SQLite and PostgreSQL need different SQL, kept in one module.

* upserts: ``INSERT ... ON CONFLICT`` is spelled the same on both, but SQLAlchemy builds it
  from each dialect's own ``insert``;
* bulk metric inserts: ``executemany`` on SQLite (one prepared statement, no per-row
  Python work), ``COPY ... FROM STDIN`` on PostgreSQL (the fastest way in);
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
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from loopline.errors import ConfigError

#: One stored metric row: (run_id, key, value, timestamp, step, is_nan). ``is_nan`` is 0 or 1
#: (an int binds measurably faster than a bool in SQLite's executemany).
MetricRow = tuple[str, str, float, int, int, int]

_METRIC_COLUMNS = ("run_id", "key", "value", "timestamp", "step", "is_nan")


def insert_for(conn: Connection, table: sa.Table) -> Any:
    """The dialect's ``INSERT`` for ``table``, which knows ``on_conflict_do_*``.

    Example:
        >>> # insert_for(conn, params).on_conflict_do_nothing(index_elements=["run_id", "key"])
    """
    name = conn.dialect.name
    if name == "sqlite":
        return sqlite.insert(table)
    if name == "postgresql":
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


def bulk_insert_metrics(conn: Connection, rows: Sequence[MetricRow]) -> None:
    """Insert stored-form metric rows into ``metrics`` in the caller's transaction.

    Example:
        >>> # bulk_insert_metrics(conn, [("ab" * 16, "loss", 0.5, 1700000000000, 0, 0)])
    """
    if not rows:
        return
    raw: Any = conn.connection.dbapi_connection
    if conn.dialect.name == "postgresql":
        columns = ", ".join(f'"{c}"' for c in _METRIC_COLUMNS)
        with raw.cursor() as cur, cur.copy(f"COPY metrics ({columns}) FROM STDIN") as copy:
            copy.write(_copy_text(rows))
        return
    cur = raw.cursor()
    try:
        cur.executemany(
            "INSERT INTO metrics (run_id, key, value, timestamp, step, is_nan) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
    finally:
        cur.close()


def _copy_text(rows: Sequence[MetricRow]) -> bytes:
    """Rows in COPY's text format. Keys hold no control characters (validated), so only a
    backslash needs escaping; run ids are hex; numbers print as Python writes them."""
    keys: dict[str, str] = {}
    lines = []
    for run_id, key, value, ts, step, is_nan in rows:
        text = keys.get(key)
        if text is None:
            text = keys[key] = key.replace("\\", "\\\\")
        lines.append(f"{run_id}\t{text}\t{value!r}\t{ts}\t{step}\t{'t' if is_nan else 'f'}\n")
    return "".join(lines).encode()


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


def like(conn_dialect: str, column: ColumnElement[Any], pattern: str) -> ColumnElement[bool]:
    r"""A case-sensitive ``column LIKE pattern`` on either backend (``\`` escapes ``%``/``_``).

    Example:
        >>> str(like("postgresql", sa.column("x"), "a%"))
        "x LIKE :x_1 ESCAPE '\\'"
    """
    if conn_dialect == "sqlite":
        return column.op("GLOB", is_comparison=True)(like_to_glob(pattern))
    return column.like(pattern, escape="\\")


def ilike(column: ColumnElement[Any], pattern: str) -> ColumnElement[bool]:
    r"""A case-insensitive ``column ILIKE pattern`` on either backend.

    Example:
        >>> str(ilike(sa.column("x"), "a%")).startswith("lower(x) LIKE lower")
        True
    """
    return column.ilike(pattern, escape="\\")
