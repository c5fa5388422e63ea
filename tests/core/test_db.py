from __future__ import annotations

import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from loopline.core import db
from loopline.core.db import create_engine_for, enable_wal, lock_wait_error, reading
from loopline.core.db_migrations import current_revision, ensure_schema, head_revision
from loopline.errors import BackendUnavailable, ConfigError


def test_migrates_to_head_on_first_use(db_uri: str) -> None:
    engine = create_engine_for(db_uri)
    assert current_revision(engine) is None
    ensure_schema(engine)
    assert current_revision(engine) == head_revision()
    ensure_schema(engine)  # a second call is a no-op
    tables = set(sa.inspect(engine).get_table_names())
    assert {"audit_events", "audit_head", "alembic_version"} <= tables
    engine.dispose()


def test_sqlite_runs_in_wal_with_busy_timeout(sqlite_uri: str) -> None:
    engine = create_engine_for(sqlite_uri, busy_timeout_ms=1234)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 1234
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    engine.dispose()


def test_opening_a_current_database_waits_for_no_writer(migrated_sqlite_uri: str) -> None:
    """Every command opens the database (the schema check) while others may be writing: a
    read in WAL mode needs no write lock, so opening neither queues behind a writer nor,
    when its process is stopped (^Z) mid-check, holds every writer up."""
    writer = create_engine_for(migrated_sqlite_uri)
    with writer.begin() as conn:  # BEGIN IMMEDIATE: the write lock, held
        conn.exec_driver_sql("CREATE TABLE held (x INTEGER)")
        opener = create_engine_for(migrated_sqlite_uri, busy_timeout_ms=200)
        ensure_schema(opener)  # would fail after 0.2 s with "database is locked"
        with opener.connect().execution_options(loopline_read_only=True) as reader:
            assert reader.exec_driver_sql("SELECT count(*) FROM alembic_version").scalar() == 1
        opener.dispose()
    writer.dispose()


def test_reads_wait_for_no_writer(tmp_path: Path) -> None:
    """Reads through the SDK take no write lock: a writer in the middle of a transaction
    (or one stopped there) holds up neither a search, nor the server's UI, nor `audit
    verify`; before, each read began IMMEDIATE and waited out the busy timeout. A write
    waits, then fails with BackendUnavailable saying why (not the driver's error)."""
    import pandas as pd

    import loopline as ll
    from loopline.core import audit

    path = tmp_path / "loopline.db"
    ctx = ll.init(
        uri=f"sqlite:///{path}", artifacts=str(tmp_path / "artifacts"), sqlite_busy_timeout_ms=200
    )
    try:
        with ll.start_run(experiment="e", name="r") as run:
            run.log_param("model", "gbm")
            run.log_metric("auc", 0.9, step=1)
        ll.datasets.register("d", pd.DataFrame({"x": [1, 2]}))
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # the write lock, held throughout
        try:
            assert ll.get_run(run.id).params == {"model": "gbm"}
            found = ll.search_runs("e", filter="params.model = 'gbm'", order_by=["metrics.auc"])
            assert [r.id for r in found] == [run.id]
            assert [value for _, _, value in ll.metric_history(run.id, "auc")] == [0.9]
            assert ll.datasets.get("d").version == 1
            assert [d.name for d in ll.datasets.list_datasets()] == ["d"]
            assert ll.registry.list_models() == []
            assert audit.verify(ctx.engine).ok
            # A write does wait, and after the busy timeout says why, as every write does.
            with pytest.raises(BackendUnavailable, match="stayed locked by another process"):
                ll.datasets.register("e", pd.DataFrame({"x": [3]}))
        finally:
            holder.close()
        assert ll.datasets.register("e", pd.DataFrame({"x": [3]})).version == 1
    finally:
        ctx.close()


def test_a_lock_held_past_the_busy_timeout_is_explained(tmp_path: Path) -> None:
    # Another process in the middle of a write (here: this test's connection) while a new
    # database is created: the driver's "database is locked" says neither why nor what to do.
    path = tmp_path / "loopline.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("CREATE TABLE held (x INTEGER)")
    engine = create_engine_for(f"sqlite:///{path}", busy_timeout_ms=200)
    with pytest.raises(BackendUnavailable) as info:
        ensure_schema(engine)
    engine.dispose()
    holder.execute("ROLLBACK")
    holder.close()
    assert f"the SQLite database {path} stayed locked by another process" in info.value.message
    assert "(database is locked)" in info.value.message
    assert info.value.hint is not None and f"fuser -v {path}" in info.value.hint
    assert "stopped (^Z)" in info.value.hint
    assert lock_wait_error(sqlite3.OperationalError("locking protocol")) is not None
    assert lock_wait_error(sqlite3.OperationalError("no such table: runs")) is None
    assert lock_wait_error(ValueError("database is locked")) is None


def test_a_begin_that_fails_raises_as_through_sqlalchemy_and_leaves_the_connection_usable(
    tmp_path: Path,
) -> None:
    # BEGIN goes straight to the driver: its errors must still be the ones SQLAlchemy's
    # statement handling gave (a lock as BackendUnavailable caused by the driver's
    # OperationalError), and a held connection must begin again once the lock is gone.
    path = tmp_path / "loopline.db"
    engine = create_engine_for(f"sqlite:///{path}", busy_timeout_ms=0)
    ensure_schema(engine)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    with engine.connect() as held:
        with pytest.raises(BackendUnavailable, match="stayed locked") as info, held.begin():
            pytest.fail("began while another connection held the write lock")
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
        assert not held.in_transaction()
        with reading(engine) as conn, conn.begin():  # a read begins DEFERRED: no wait
            assert conn.exec_driver_sql("SELECT count(*) FROM runs").scalar() == 0
        holder.execute("ROLLBACK")
        with held.begin():
            held.exec_driver_sql("CREATE TABLE after_the_lock (x INTEGER)")
        # Another error of the BEGIN: SQLAlchemy's own exception, on the driver's.
        raw = held.connection.dbapi_connection
        assert raw is not None
        raw.execute("BEGIN")
        with pytest.raises(sa.exc.OperationalError, match="within a transaction") as failed:
            held.begin()
        assert isinstance(failed.value.orig, sqlite3.OperationalError)
        assert not raw.in_transaction  # rolled back after the failed statement
    holder.close()
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM after_the_lock").scalar() == 0
    engine.dispose()


class _Cursor:
    """A cursor whose first ``fails`` statements raise ``error``."""

    def __init__(self, fails: int, error: str) -> None:
        self.fails, self.error, self.calls = fails, error, 0

    def execute(self, sql: str) -> None:
        assert sql == "PRAGMA journal_mode=WAL"
        self.calls += 1
        if self.calls <= self.fails:
            raise sqlite3.OperationalError(self.error)


def test_switching_a_new_file_to_wal_is_retried_while_another_process_holds_it() -> None:
    # Processes opening one new file at once: one can get "database is locked" at once
    # from the switch, without the busy timeout's wait (once in ~500 starts, 8 at a time).
    locked = _Cursor(3, "database is locked")
    enable_wal(locked, 5.0)
    assert locked.calls == 4
    held = _Cursor(10**6, "database is locked")
    start = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        enable_wal(held, 0.2)
    assert 0.1 < time.monotonic() - start < 2
    broken = _Cursor(1, "disk I/O error")  # anything else is not waited on
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        enable_wal(broken, 5.0)
    assert broken.calls == 1


@pytest.mark.parametrize("uri", ["foo://x", "mysql://u@h/db", "not a uri"], ids=str)
def test_unknown_scheme_names_the_setting(uri: str) -> None:
    with pytest.raises(ConfigError, match="LOOPLINE_URI"):
        create_engine_for(uri)


@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("postgres://loopline:hunter2@db/loopline", "write postgresql:// instead"),
        ("postgresql://loopline:hunter2@db:fivethousand/loopline", "is not a database URI"),
        ("postgresql://loopline:hunter2@db:5432", "names no database"),
        ("postgresql://loopline:hunter2@db:5432/", "names no database"),
        ("postgresql+asyncpg://loopline:hunter2@db/loopline", "through psycopg (3) only"),
    ],
    ids=["postgres-scheme", "port-no-number", "no-database", "empty-database", "other-driver"],
)
def test_a_postgresql_uri_loopline_cannot_use_names_the_setting(uri: str, words: str) -> None:
    with pytest.raises(ConfigError, match="LOOPLINE_URI") as info:
        create_engine_for(uri)
    said = f"{info.value.message} {info.value.hint}"
    assert words in said and "hunter2" not in said


def test_a_database_named_in_the_query_is_enough() -> None:
    engine = create_engine_for("postgresql://loopline@/?dbname=loopline&host=/run/postgresql")
    assert engine.dialect.name == "postgresql"


@pytest.fixture
def mute_server() -> Iterator[int]:
    """A loopback port whose connections are accepted (by the kernel) and never answered:
    a hung database server, or a proxy in front of a stopped one."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])


@pytest.mark.parametrize("bound_by", ["default", "uri"])
def test_a_postgresql_server_that_never_answers_fails_in_bounded_time(
    mute_server: int, monkeypatch: pytest.MonkeyPatch, bound_by: str
) -> None:
    uri = f"postgresql://loopline:hunter2@127.0.0.1:{mute_server}/loopline"
    if bound_by == "default":
        monkeypatch.setattr(db, "PG_CONNECT_TIMEOUT_S", 1)
    else:  # the URI's own connect_timeout wins over the default
        monkeypatch.setattr(db, "PG_CONNECT_TIMEOUT_S", 3600)
        uri += "?connect_timeout=1"
    start = time.monotonic()
    with pytest.raises(BackendUnavailable, match="LOOPLINE_URI") as info:
        current_revision(create_engine_for(uri))
    assert time.monotonic() - start < 15
    assert "timeout" in info.value.message and "hunter2" not in info.value.message


def test_unreachable_postgres_names_the_setting() -> None:
    engine = create_engine_for("postgresql://nobody@127.0.0.1:1/nothing")
    with pytest.raises(BackendUnavailable, match="LOOPLINE_URI") as info:
        current_revision(engine)
    assert info.value.exit_code == 2


def test_unwritable_sqlite_folder_names_the_setting() -> None:
    with pytest.raises(BackendUnavailable, match="LOOPLINE_URI"):
        create_engine_for("sqlite:////proc/no/such/place/meta.db")


def test_concurrent_first_migrations_do_not_clash(db_uri: str) -> None:
    import subprocess
    import sys

    code = (
        "import sys; from loopline.core.db import create_engine_for; "
        "from loopline.core.db_migrations import ensure_schema;"
        "ensure_schema(create_engine_for(sys.argv[1]))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, db_uri], stderr=subprocess.PIPE)
        for _ in range(6)
    ]
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    engine = create_engine_for(db_uri)
    assert current_revision(engine) == head_revision()
    engine.dispose()


def test_of_concurrent_upgrades_only_the_one_that_migrated_reports_a_change(db_uri: str) -> None:
    # Each read the revision before taking the migration lock, so every one of them printed
    # "schema (empty) -> head" though only one migrated.
    import json
    import subprocess
    import sys

    code = (
        "import sys, json; from loopline.core.db import create_engine_for; "
        "from loopline.core.db_migrations import upgrade_reporting;"
        "print(json.dumps(upgrade_reporting(create_engine_for(sys.argv[1]))))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, db_uri], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err.decode() for _, err in outs]
    reports = sorted((tuple(json.loads(out)) for out, _ in outs), key=str)
    head = head_revision()
    assert reports == sorted([(None, head)] + [(head, head)] * 3, key=str)


def test_head_revision_constant_is_alembics_head() -> None:
    """ensure_schema compares with HEAD_REVISION instead of loading Alembic: keep it true."""
    from loopline.core.db_migrations import HEAD_REVISION

    assert head_revision() == HEAD_REVISION


@pytest.mark.parametrize("state", ["current", "new"])
def test_ensure_schema_does_not_import_alembic(tmp_path: Path, state: str) -> None:
    """A current database is recognised, and a new SQLite file gets the newest schema
    (loopline.core.sqlite_schema), without importing Alembic (start-up cost)."""
    import subprocess
    import sys

    uri = f"sqlite:///{tmp_path / 'meta.db'}"
    if state == "current":
        ensure_schema(create_engine_for(uri))
    code = (
        "import sys\n"
        "from loopline.core.db import create_engine_for\n"
        "from loopline.core.db_migrations import ensure_schema\n"
        f"ensure_schema(create_engine_for({uri!r}))\n"
        "print('alembic' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_database_of_a_newer_loopline_is_named_as_one(db_uri: str, tmp_path: Path) -> None:
    """Alembic's "Can't locate revision identified by ..." (exit 1) said nothing of why, and
    doctor passed the database, advising the `loopline db upgrade` that fails."""
    from loopline.config import Settings
    from loopline.core.db_migrations import upgrade
    from loopline.core.doctor import run_checks

    engine = create_engine_for(db_uri)
    ensure_schema(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0099_from_the_future'"))
    for call in (ensure_schema, upgrade):
        with pytest.raises(ConfigError, match="'0099_from_the_future'") as refused:
            call(engine)
        assert "newer Loopline" in refused.value.message
        assert "upgrade Loopline" in (refused.value.hint or "")
    settings = Settings(uri=db_uri, artifacts=str(tmp_path / "artifacts"))
    [check] = [c for c in run_checks(settings) if c.name == "metadata"]
    assert not check.ok and "newer Loopline" in check.detail
    assert current_revision(engine) == "0099_from_the_future"  # untouched
    engine.dispose()
