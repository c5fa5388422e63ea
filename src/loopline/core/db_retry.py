"""Retrying a transaction across a database restart: :func:`run_transaction` runs a
unit of work again while PostgreSQL cannot be reached, and never twice once it committed
(a cut-off COMMIT is settled with ``txid_status``).

Separate from :mod:`loopline.core.db` because only the writers that must survive a
restart (the tracking server's, the SDK's) go through it; on SQLite it is one plain
transaction.

Example:
    >>> from loopline.core.db import create_engine_for
    >>> run_transaction(create_engine_for("sqlite:///:memory:"),
    ...                 lambda conn: conn.exec_driver_sql("SELECT 2").scalar(), retry_s=1)
    2
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from loopline.core.db import driver_reason, reading, shown_url
from loopline.errors import BackendUnavailable

T = TypeVar("T")


# -- retrying a transaction across a database restart ------------------------------------


def is_transient(engine: Engine, exc: DBAPIError) -> bool:
    """Whether ``exc`` is worth retrying: the connection broke, or PostgreSQL could not be
    reached, was shutting down or starting up (its ``OperationalError`` class). SQLite's
    errors are not: its ``OperationalError`` also means a missing table.

    Example:
        >>> # is_transient(engine, exc)  -> True for "connection refused" on PostgreSQL
    """
    if exc.connection_invalidated:
        return True
    return engine.dialect.name == "postgresql" and isinstance(exc, OperationalError)


def run_transaction(engine: Engine, work: Callable[[Connection], T], *, retry_s: float) -> T:
    """Run ``work(conn)`` in one transaction, retried while PostgreSQL restarts.

    A transaction that failed before its COMMIT was sent is simply run again (it was rolled
    back). One whose COMMIT was cut off may or may not have committed: its transaction id,
    taken at the start, is looked up with ``txid_status`` once the server answers again, and
    the work is run again only if it did not commit - so it is never applied twice. Retries
    stop after ``retry_s`` seconds with :class:`BackendUnavailable` naming ``LOOPLINE_URI``;
    other errors rise as they are. On SQLite this is one plain transaction.

    Example:
        >>> from loopline.core.db import create_engine_for
        >>> engine = create_engine_for("sqlite:///:memory:")
        >>> run_transaction(engine, lambda conn: conn.exec_driver_sql("SELECT 1").scalar(),
        ...                 retry_s=5)
        1
    """
    postgres = engine.dialect.name == "postgresql"
    deadline = time.monotonic() + retry_s
    pause = 0.05
    while True:
        xid: int | None = None
        committing = False
        try:
            with engine.connect() as conn, conn.begin():
                if postgres:
                    xid = conn.exec_driver_sql("SELECT txid_current()").scalar_one()
                result = work(conn)
                committing = True  # the block's end sends COMMIT
            return result
        except DBAPIError as exc:
            if not is_transient(engine, exc):
                raise
            # A cut-off COMMIT is settled first (with a full retry window of its own): a
            # caller told "unavailable" retries the work, which must not apply it twice.
            if (
                committing
                and xid is not None
                and _committed(engine, xid, time.monotonic() + retry_s, retry_s)
            ):
                return result
            if time.monotonic() > deadline:
                raise _unavailable(engine, exc, retry_s) from exc
        time.sleep(pause)
        pause = min(pause * 2, 1.0)


def _committed(engine: Engine, xid: int, deadline: float, retry_s: float) -> bool:
    """Whether transaction ``xid`` committed, asked again until the server answers."""
    pause = 0.05
    while True:
        try:
            with reading(engine) as conn:
                status = conn.execute(sa.text("SELECT txid_status(:x)"), {"x": xid}).scalar()
        except DBAPIError as exc:
            if not is_transient(engine, exc):
                raise
            if time.monotonic() > deadline:
                raise _unavailable(engine, exc, retry_s) from exc
        else:
            if status != "in progress":  # committed, aborted, or too old to know (None)
                return status == "committed"
        time.sleep(pause)
        pause = min(pause * 2, 1.0)


def _unavailable(engine: Engine, exc: DBAPIError, retry_s: float) -> BackendUnavailable:
    safe = shown_url(engine)
    reason = driver_reason(exc)
    return BackendUnavailable(
        f"the metadata database {safe} did not answer for {retry_s:g} s: {reason}",
        hint="check that the database server runs (LOOPLINE_URI), or raise LOOPLINE_DB_RETRY_S",
    )
