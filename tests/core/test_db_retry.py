"""``run_transaction``: a transaction cut off by a PostgreSQL restart is retried, and one
whose COMMIT was cut off is looked up by its transaction id instead of being run twice.

The cuts are real: the session is terminated by the server (``pg_terminate_backend``), or
the driver's COMMIT is made to fail after (or instead of) reaching the server.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from loopline.core.db import create_engine_for
from loopline.core.db_retry import run_transaction
from loopline.errors import BackendUnavailable


@pytest.fixture
def engine(pg_uri: str) -> Iterator[Engine]:
    eng = create_engine_for(pg_uri)
    with eng.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x integer)")
    yield eng
    eng.dispose()


def _rows(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return [r[0] for r in conn.exec_driver_sql("SELECT x FROM t ORDER BY x")]


def test_a_session_terminated_mid_transaction_is_run_again(engine: Engine) -> None:
    calls = []

    def work(conn: Connection) -> str:
        calls.append(1)
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        if len(calls) == 1:  # the server ends this session, as a restart does
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            with engine.connect() as admin:
                admin.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            conn.exec_driver_sql("INSERT INTO t VALUES (2)")
        return "ok"

    assert run_transaction(engine, work, retry_s=10) == "ok"
    assert len(calls) == 2
    assert _rows(engine) == [1]  # the first attempt's insert was rolled back with it


@pytest.mark.parametrize("reached_server", [True, False], ids=["committed", "not-committed"])
def test_a_commit_cut_off_is_looked_up_and_never_applied_twice(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, reached_server: bool
) -> None:
    real_commit = engine.dialect.do_commit
    cuts = []

    def commit_then_lose_the_answer(dbapi_conn: Any) -> None:
        if not cuts:
            cuts.append(1)
            if reached_server:
                real_commit(dbapi_conn)
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        real_commit(dbapi_conn)

    monkeypatch.setattr(engine.dialect, "do_commit", commit_then_lose_the_answer)
    calls = []

    def work(conn: Connection) -> int:
        calls.append(1)
        conn.exec_driver_sql("INSERT INTO t VALUES (7)")
        return len(calls)

    result = run_transaction(engine, work, retry_s=10)
    assert cuts == [1]
    if reached_server:  # it had committed: not run again
        assert (result, len(calls)) == (1, 1)
    else:  # it had not: run again, once
        assert (result, len(calls)) == (2, 2)
    assert _rows(engine) == [7]


def test_an_unreachable_database_is_retried_for_retry_s_then_named() -> None:
    engine = create_engine_for("postgresql://nobody@127.0.0.1:1/nothing")
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as info:
        run_transaction(engine, lambda conn: None, retry_s=0.5)
    assert 0.5 <= time.monotonic() - started < 5
    assert "did not answer for 0.5 s" in info.value.message
    assert "LOOPLINE_DB_RETRY_S" in (info.value.hint or "")
    engine.dispose()


def test_errors_that_are_not_about_the_connection_are_not_retried(sqlite_uri: str) -> None:
    engine = create_engine_for(sqlite_uri)
    calls = []

    def work(conn: Connection) -> None:
        calls.append(1)
        conn.exec_driver_sql("SELECT * FROM no_such_table")

    with pytest.raises(sa.exc.OperationalError, match="no_such_table"):
        run_transaction(engine, work, retry_s=30)
    assert calls == [1]
    engine.dispose()
