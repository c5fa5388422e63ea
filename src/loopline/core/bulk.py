"""Insert or update many rows at once in the caller's transaction, as fast as the driver
allows (:func:`insert_rows`, :func:`update_rows`).

SQLAlchemy's ``executemany`` processes every parameter of every row in Python before the
driver sees it; for bookkeeping rows written in bulk (a pipeline's step runs, their tags,
their audit events) that cost more than the inserts. On SQLite the rows go straight to
the driver's ``executemany`` on the transaction's own connection; on other databases
through SQLAlchemy (the driver paths differ; PostgreSQL's batching is SQLAlchemy's own).
This module is the only place that talks to the driver directly: the tracking store's hot
statements (metric chunks, run rows, search pages, audit appends) go through
:func:`driver_executemany`, :func:`driver_fetchall` and :func:`driver_fetchone`, with
:func:`placeholder` for the driver's parameter style.

Example:
    >>> from loopline.core.db import create_engine_for
    >>> from loopline.core.db_migrations import upgrade
    >>> from loopline.core.schema import audit_head
    >>> engine = create_engine_for("sqlite:///:memory:"); upgrade(engine)
    >>> with engine.begin() as conn:
    ...     insert_rows(conn, audit_head, [{"id": 2, "seq": 0, "hash": "0" * 64}])
    >>> with engine.connect() as conn:
    ...     conn.execute(sa.select(sa.func.count()).select_from(audit_head)).scalar()
    2
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection


def _check_columns(table: sa.Table, names: Sequence[str]) -> None:
    for name in names:
        # Names go into the SQL text; SQLAlchemy would drop an unknown key without a word.
        if name not in table.c:
            raise ValueError(f"table {table.name!r} has no column {name!r}")


def driver_executemany(conn: Connection, sql: str, values: Sequence[tuple[Any, ...]]) -> None:
    """Run ``sql`` (in the driver's own placeholder style) once per tuple of ``values``,
    on the transaction's own connection, with driver errors raised as SQLAlchemy's.

    Example:
        >>> # driver_executemany(conn, "INSERT INTO t (a, b) VALUES (?, ?)", [(1, 2)])
    """
    raw: Any = conn.connection.dbapi_connection
    dbapi: Any = conn.dialect.dbapi
    cur = raw.cursor()
    try:
        cur.executemany(sql, values)
    except dbapi.Error as exc:
        # The same exception as through SQLAlchemy (IntegrityError, OperationalError, ...).
        raise sa.exc.DBAPIError.instance(sql, None, exc, dbapi.Error) from exc
    finally:
        cur.close()


def placeholder(conn: Connection) -> str:
    """The driver's positional placeholder on ``conn``: ``%s`` for psycopg, ``?`` for sqlite3.

    Example:
        >>> # 'SELECT 1 FROM runs WHERE id = {p}'.format(p=placeholder(conn))
    """
    return "%s" if conn.dialect.name == "postgresql" else "?"


def driver_fetchall(conn: Connection, sql: str, args: Any) -> list[Any]:
    """The rows of ``sql`` (in the driver's placeholder style) run on the transaction's own
    connection, driver errors raised as SQLAlchemy's.

    Example:
        >>> # driver_fetchall(conn, "SELECT id FROM runs WHERE experiment_id = ?", (1,))
    """
    dbapi: Any = conn.dialect.dbapi
    cur: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cur.execute(sql, args)
        rows: list[Any] = cur.fetchall()
    except dbapi.Error as exc:
        raise sa.exc.DBAPIError.instance(sql, args, exc, dbapi.Error) from exc
    finally:
        cur.close()
    return rows


def driver_fetchone(conn: Connection, sql: str, args: Sequence[Any]) -> tuple[Any, ...] | None:
    """The first row of ``sql`` like :func:`driver_fetchall` (None: no row).

    Example:
        >>> # driver_fetchone(conn, "SELECT seq FROM audit_head WHERE id = ?", (1,))
    """
    rows = driver_fetchall(conn, sql, tuple(args))
    return tuple(rows[0]) if rows else None


def _tuples(rows: Sequence[Mapping[str, Any]], columns: list[str]) -> list[tuple[Any, ...]]:
    get = operator.itemgetter(*columns)
    return [get(r) for r in rows] if len(columns) > 1 else [(get(r),) for r in rows]


def insert_rows(conn: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` (mappings with the same keys, column names of ``table``).

    Values are passed as they are: give them in the column's stored form (text, numbers,
    None), as the caller would to the driver.

    Example:
        >>> # with engine.begin() as conn: insert_rows(conn, tags, [{"run_id": ..., ...}])
    """
    if not rows:
        return
    columns = list(rows[0])
    _check_columns(table, columns)
    if conn.dialect.name != "sqlite":
        conn.execute(table.insert(), list(rows))
        return
    names = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join("?" * len(columns))
    sql = f'INSERT INTO "{table.name}" ({names}) VALUES ({marks})'
    driver_executemany(conn, sql, _tuples(rows, columns))


def update_rows(
    conn: Connection, table: sa.Table, keys: Sequence[str], rows: Sequence[Mapping[str, Any]]
) -> None:
    """Update one row per mapping: the row whose ``keys`` columns equal the mapping's,
    set to the mapping's other values (mappings with the same keys).

    Example:
        >>> # update_rows(conn, step_runs, ["pipeline_run_id", "step"], [{..., "status": "x"}])
    """
    if not rows:
        return
    columns = [c for c in rows[0] if c not in keys]
    _check_columns(table, [*keys, *columns])
    if conn.dialect.name != "sqlite":
        stmt = (
            table.update()
            .where(*(table.c[k] == sa.bindparam(f"b_{k}") for k in keys))
            .values({c: sa.bindparam(f"v_{c}") for c in columns})
        )
        conn.execute(
            stmt, [{f"{'b' if k in keys else 'v'}_{k}": v for k, v in r.items()} for r in rows]
        )
        return
    sets = ", ".join(f'"{c}" = ?' for c in columns)
    where = " AND ".join(f'"{k}" = ?' for k in keys)
    sql = f'UPDATE "{table.name}" SET {sets} WHERE {where}'
    driver_executemany(conn, sql, _tuples(rows, [*columns, *keys]))
