"""Backup and restore: real stores built through the SDK, compared row by row and byte by byte.

Run on SQLite and PostgreSQL, with local and S3 artifacts (and an S3 backup destination
when the artifacts are on S3), across dialects, and against damaged backups.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

import loopline as ll
from loopline.core import audit
from loopline.core.artifacts import ArtifactStore, open_artifact_store
from loopline.core.backup import backup, dump_table, reflect_tables, snapshot
from loopline.core.backup_location import LocalSink
from loopline.core.backup_restore import existing_data, load_table, restore
from loopline.core.context import Context
from loopline.core.db import create_engine_for
from loopline.core.db_migrations import current_revision, head_revision, upgrade
from loopline.errors import Conflict, IntegrityError, InvalidInput, NotFound
from loopline.monitoring.prediction_log import PredictionLogger
from tests.cli_run import popen
from tests.conftest import _require, s3_options
from tests.serving.helpers import FEATURES, good_model, toy_data

# ---------------------------------------------------------------- helpers


@pytest.fixture
def new_db(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Make fresh, empty databases: ``new_db("sqlite")`` or ``new_db("postgresql")``."""
    made: list[str] = []
    admin: sa.Engine | None = None

    def make(kind: str) -> str:
        nonlocal admin
        if kind == "sqlite":
            return f"sqlite:///{tmp_path / f'db-{uuid.uuid4().hex[:8]}.db'}"
        admin_uri = _require("LOOPLINE_TEST_PG_ADMIN_URI")
        if admin is None:
            admin = create_engine_for(admin_uri).execution_options(isolation_level="AUTOCOMMIT")
        name = f"t_{uuid.uuid4().hex[:16]}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        made.append(name)
        return admin_uri.rsplit("/", 1)[0] + "/" + name

    yield make
    if admin is not None:
        with admin.connect() as conn:
            for name in made:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _kind(uri: str) -> str:
    return "sqlite" if uri.startswith("sqlite") else "postgresql"


def _s3_prefix() -> str:
    return f"s3://{_require('LOOPLINE_TEST_S3_BUCKET')}/t-{uuid.uuid4().hex[:16]}"


def _options(url: str) -> dict[str, Any] | None:
    return dict(s3_options()) if url.startswith("s3://") else None


def build_store(ctx: Context, *, model: bool = True) -> None:
    """Real content through the public SDK: every stage that keeps state."""
    data = toy_data(150)
    ll.datasets.register("toy", data, description="features + label")
    ll.datasets.register("toy", toy_data(150, seed=3))  # a second version
    with ll.start_run(experiment="backup-exp") as run:
        ll.datasets.get("toy", 1)  # lineage: the run read version 1
        run.log_params({"C": 1.0, "solver": "lbfgs", "note": "ünïcode ☃"})
        for step in range(5):
            run.log_metric("loss", 1 / (step + 1), step=step)
        run.log_metric("big", 1e308)
        run.log_metric("inf", float("inf"))
        run.set_tags({"team": "risk", "empty": ""})
        run.log_dict({"nested": {"a": [1, 2.5, None]}}, "config/params.json")
        if model:
            run.log_model(good_model(data), "model", input_example=data[FEATURES].head(5))
    with ll.start_run(experiment="backup-exp") as failed:
        failed.log_metric("loss", 9.0)
    if model:
        version = ll.registry.register(run, "churn", description="backup test")
        ll.registry.set_alias("churn", "champion", version.version, reason="first")
        ll.deploy("churn", version.version)
        logger = PredictionLogger(ctx, start=False)
        for i in range(20):
            logger.log(f"r{i}", "churn", version.version, [{"a": 0.1 * i, "b": 1.0}], [i % 2], 1.5)
        assert logger.flush() == 20
    with ctx.engine.begin() as conn:
        ctx.audit(conn, action="test.note", object_type="test", object_id="x", reason="bk")


def _order(table: sa.Table) -> list[Any]:
    pk = list(table.primary_key.columns)
    return pk or [c for c in table.columns if not isinstance(c.type, sa.JSON)]


def table_rows(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (but Alembic's), in primary-key order."""
    with engine.connect() as conn:
        return {
            t.name: [tuple(r) for r in conn.execute(sa.select(t).order_by(*_order(t)))]
            for t in reflect_tables(conn)
        }


def assert_same_store(
    src_engine: sa.Engine, src_store: ArtifactStore, dst_engine: sa.Engine, dst: ArtifactStore
) -> None:
    """Every table row by row, every artifact byte by byte, and the audit chain."""
    assert current_revision(dst_engine) == current_revision(src_engine)
    before, after = table_rows(src_engine), table_rows(dst_engine)
    assert sorted(after) == sorted(before)
    for name, rows in before.items():
        assert after[name] == rows, f"table {name} differs after restore"
    digests = sorted(src_store.iter_digests())
    assert digests and sorted(dst.iter_digests()) == digests
    for digest in digests:
        assert dst.get_bytes(digest) == src_store.get_bytes(digest)
    report = audit.verify(dst_engine)
    assert report.ok, report.problems
    assert report.checked == len(before["audit_events"]) > 0


@pytest.fixture
def small_source(tmp_path: Path) -> Iterator[Context]:
    """SQLite + a local folder, with a dataset and runs but no model (fast)."""
    ctx = ll.init(uri=f"sqlite:///{tmp_path / 'src.db'}", artifacts=str(tmp_path / "src-art"))
    build_store(ctx, model=False)
    yield ctx
    ctx.close()


def _empty_target(tmp_path: Path) -> tuple[sa.Engine, ArtifactStore]:
    engine = create_engine_for(f"sqlite:///{tmp_path / f'dst-{uuid.uuid4().hex[:6]}.db'}")
    return engine, open_artifact_store(str(tmp_path / f"dst-art-{uuid.uuid4().hex[:6]}"))


# ---------------------------------------------------------------- round trips


def test_round_trip_restores_every_row_and_every_byte(
    db_uri: str, artifacts_url: str, new_db: Callable[[str], str], tmp_path: Path
) -> None:
    ctx = ll.init(uri=db_uri, artifacts=artifacts_url)
    build_store(ctx)
    s3 = artifacts_url.startswith("s3://")
    dest = _s3_prefix() if s3 else str(tmp_path / "backup")
    phases: list[tuple[str, int, int]] = []
    made = backup(
        ctx.engine,
        ctx.artifacts,
        dest,
        storage_options=_options(dest),
        progress=lambda *p: phases.append(p),
    )
    assert made.alembic_revision == head_revision()
    assert made.artifact_count == len(list(ctx.artifacts.iter_digests())) > 5
    assert {p[0] for p in phases} == {"tables", "artifacts"}
    assert phases[-1][1] == phases[-1][2] == made.artifact_count

    target_uri = new_db(_kind(db_uri))
    target_art = _s3_prefix() if s3 else str(tmp_path / "restored-art")
    engine = create_engine_for(target_uri)
    store = open_artifact_store(target_art, _options(target_art))
    report = restore(engine, store, dest, storage_options=_options(dest))
    assert (report.rows, report.artifact_count) == (made.rows, made.artifact_count)
    assert report.audit_problems == [] and report.replaced == {}
    assert_same_store(ctx.engine, ctx.artifacts, engine, store)
    ctx.close()
    engine.dispose()

    # The restored store works: the champion loads (bytes verified), and new rows get
    # fresh ids (PostgreSQL sequences were moved past the restored ones).
    restored = ll.init(uri=target_uri, artifacts=target_art)
    model = ll.registry.load("models:/churn@champion")
    assert len(model.predict(toy_data(5)[FEATURES])) == 5
    with ll.start_run(experiment="after-restore") as run:
        run.log_metric("m", 1.0)
    assert ll.get_run(run.id).metrics == {"m": 1.0}
    assert len(ll.search_runs(experiment="backup-exp")) == 2
    restored.close()


def test_a_sqlite_backup_restores_into_postgresql_and_back(
    new_db: Callable[[str], str], tmp_path: Path
) -> None:
    src = ll.init(uri=new_db("sqlite"), artifacts=str(tmp_path / "art"))
    build_store(src)
    backup(src.engine, src.artifacts, str(tmp_path / "from-sqlite"))

    pg = create_engine_for(new_db("postgresql"))
    pg_store = open_artifact_store(str(tmp_path / "pg-art"))
    restore(pg, pg_store, str(tmp_path / "from-sqlite"))
    assert_same_store(src.engine, src.artifacts, pg, pg_store)

    backup(pg, pg_store, str(tmp_path / "from-pg"))
    back = create_engine_for(new_db("sqlite"))
    back_store = open_artifact_store(str(tmp_path / "back-art"))
    restore(back, back_store, str(tmp_path / "from-pg"))
    assert_same_store(src.engine, src.artifacts, back, back_store)
    for engine in (pg, back):
        engine.dispose()
    src.close()


def test_the_backup_is_one_snapshot_while_writers_carry_on(
    db_uri: str, new_db: Callable[[str], str], tmp_path: Path
) -> None:
    """Audit events appended during the backup: the copy's chain and head still agree.

    ``audit_events`` is dumped before ``audit_head``; were they read at different moments,
    the head would be ahead of the last event copied and the restored chain would fail.
    """
    ctx = ll.init(uri=db_uri, artifacts=str(tmp_path / "art"))
    with ctx.engine.begin() as conn:
        for i in range(3000):  # enough rows that the dump takes a while
            ctx.audit(conn, action="seed", object_type="t", object_id=str(i))
    stop = threading.Event()
    appended = [0]

    def writer() -> None:
        while not stop.is_set():
            with ctx.engine.begin() as conn:
                ctx.audit(conn, action="during", object_type="t", object_id="w")
            appended[0] += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.2)
        at_start = appended[0]
        made = backup(ctx.engine, ctx.artifacts, str(tmp_path / "bk"))
        at_end = appended[0]
    finally:
        stop.set()
        thread.join()
    assert at_end > at_start, "writers were blocked during the backup"
    engine = create_engine_for(new_db(_kind(db_uri)))
    restore(engine, open_artifact_store(str(tmp_path / "dst")), str(tmp_path / "bk"))
    report = audit.verify(engine)
    assert report.ok, report.problems
    assert 3000 + at_start <= report.checked <= 3000 + at_end
    assert made.rows >= report.checked
    engine.dispose()
    ctx.close()


def test_a_backup_from_an_older_schema_is_restored_then_migrated(
    db_uri: str, new_db: Callable[[str], str], tmp_path: Path
) -> None:
    old = create_engine_for(db_uri)
    upgrade(old, "0005_registry")
    with old.begin() as conn:
        for i in range(3):
            audit.append(conn, actor="ada", action="old", object_type="t", object_id=str(i))
    made = backup(old, open_artifact_store(str(tmp_path / "art")), str(tmp_path / "bk"))
    assert made.alembic_revision == "0005_registry"
    # the target was opened by this (newer) Loopline: empty, but at the newest schema
    target = ll.init(uri=new_db(_kind(db_uri)), artifacts=str(tmp_path / "dst"))
    assert current_revision(target.engine) == head_revision()
    report = restore(target.engine, target.artifacts, str(tmp_path / "bk"))
    assert (report.alembic_revision, report.schema_after) == ("0005_registry", head_revision())
    assert [e.action for e in audit.events(target.engine)] == ["old"] * 3
    assert audit.verify(target.engine).ok
    old.dispose()
    target.close()


def _studies(uri: str) -> dict[str, int]:
    """Optuna's studies in the metadata database at ``uri``: name -> finished trials."""
    import optuna

    from loopline.training.trials import open_storage, optuna_storage_url

    url = optuna_storage_url(uri)
    assert url is not None
    storage = open_storage(url)
    return {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage)}


def test_tuning_studies_are_restored_and_a_forced_restore_replaces_them(
    db_uri: str, new_db: Callable[[str], str], tmp_path: Path
) -> None:
    """ll.tune keeps Optuna's tables in the metadata database; no migration makes them.

    A backup of a store that had tuned once could not be restored at all ('the backup has
    tables ['studies', ...] that schema revision ... does not have'), and a forced restore
    of a backup without them left the replaced store's studies in place.
    """
    src_uri = new_db("sqlite")
    src = ll.init(uri=src_uri, artifacts=str(tmp_path / "art"))
    build_store(src, model=False)
    ll.tune(lambda p: -((p["x"] - 1) ** 2), {"x": ("float", -3, 3)}, n_trials=3, study_name="s")
    backup(src.engine, src.artifacts, str(tmp_path / "bk"))
    src.close()

    target_uri = new_db(_kind(db_uri))
    target = ll.init(uri=target_uri, artifacts=str(tmp_path / "dst"))
    restore(target.engine, target.artifacts, str(tmp_path / "bk"))
    assert_same_store(src.engine, src.artifacts, target.engine, target.artifacts)
    assert _studies(target_uri) == {"s": 3}
    # the study continues where it stopped, and new ids do not clash with restored ones
    ll.tune(lambda p: -((p["x"] - 1) ** 2), {"x": ("float", -3, 3)}, n_trials=2, study_name="s")
    ll.tune(lambda p: p["x"], {"x": ("float", 0, 1)}, n_trials=1, study_name="other")
    assert _studies(target_uri) == {"s": 5, "other": 1}

    # a backup made before any tuning, forced over it: no study of the old store stays
    plain = ll.init(uri=new_db("sqlite"), artifacts=str(tmp_path / "plain-art"))
    build_store(plain, model=False)
    backup(plain.engine, plain.artifacts, str(tmp_path / "plain-bk"))
    restore(target.engine, target.artifacts, str(tmp_path / "plain-bk"), force=True)
    assert _studies(target_uri) == {}
    for c in (plain, target):
        c.close()


def test_restore_refuses_a_manifest_that_leaves_a_table_out(
    small_source: Context, tmp_path: Path
) -> None:
    """The manifest has no checksum: one edited to drop a table must not restore without it."""
    bk = tmp_path / "bk"
    backup(small_source.engine, small_source.artifacts, str(bk))
    manifest = orjson.loads((bk / "manifest.json").read_bytes())
    manifest["tables"] = [t for t in manifest["tables"] if t["name"] != "audit_events"]
    (bk / "manifest.json").write_bytes(orjson.dumps(manifest))
    engine, store = _empty_target(tmp_path)
    with pytest.raises(IntegrityError, match=r"lacks tables \['audit_events'\]"):
        restore(engine, store, str(bk))
    _assert_untouched(engine, store)


def _old_backup(path: Path, revision: str, *, events: int, nul: bool = False) -> None:
    """A backup of a SQLite store at an older ``revision``: audit events, a NUL if asked."""
    old = create_engine_for(f"sqlite:///{path}.db")
    upgrade(old, revision)
    with old.begin() as conn:
        audit.append_many(conn, [audit.NewEvent("ada", "old", "t", str(i)) for i in range(events)])
        if nul:  # SQLite stores a NUL in text; PostgreSQL cannot
            conn.execute(
                sa.text("INSERT INTO datasets (name, description, created) VALUES ('ds', :d, 1)"),
                {"d": "a\x00b"},
            )
    backup(old, open_artifact_store(f"{path}-art"), str(path))
    old.dispose()


def _head_store_with_a_model(uri: str, tmp_path: Path) -> Context:
    ctx = ll.init(uri=uri, artifacts=str(tmp_path / "target-art"))
    build_store(ctx)
    with ctx.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT last_version FROM registered_models")).scalar() == 1
    return ctx


def _assert_unchanged(ctx: Context, rows: dict[str, list[tuple[Any, ...]]]) -> None:
    assert current_revision(ctx.engine) == head_revision()
    assert table_rows(ctx.engine) == rows  # the columns 0015 adds included
    assert audit.verify(ctx.engine).ok


def test_a_failed_restore_leaves_the_target_at_its_schema_with_its_rows(
    new_db: Callable[[str], str], tmp_path: Path
) -> None:
    """A forced restore of an older backup downgraded the target in a transaction of its
    own: when loading then failed, the target was left at the old revision with the
    columns of the newer migrations dropped (registered_models.last_version, ...)."""
    _old_backup(tmp_path / "bk", "0014_run_metrics_json", events=5, nul=True)
    target = _head_store_with_a_model(new_db("postgresql"), tmp_path)
    rows = table_rows(target.engine)
    with pytest.raises(InvalidInput, match=r"table datasets, row 1 \(id=1\): description") as bad:
        restore(target.engine, target.artifacts, str(tmp_path / "bk"), force=True)
    assert bad.value.field == "datasets.description" and "SQLite" in (bad.value.hint or "")
    _assert_unchanged(target, rows)
    target.close()


def test_sigkill_during_a_restore_leaves_the_target_as_it_was(tmp_path: Path) -> None:
    _old_backup(tmp_path / "bk", "0014_run_metrics_json", events=200_000)
    target = _head_store_with_a_model(f"sqlite:///{tmp_path / 'target.db'}", tmp_path)
    rows = table_rows(target.engine)
    env = {
        **os.environ,
        "LOOPLINE_URI": target.settings.metadata_uri,
        "LOOPLINE_ARTIFACTS": target.settings.artifacts_uri,
    }
    proc = popen(
        [sys.executable, "-m", "loopline.cli.main", "restore", str(tmp_path / "bk"), "--force"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wal = tmp_path / "target.db-wal"
    start = wal.stat().st_size if wal.exists() else 0
    deadline = time.monotonic() + 120
    # rows are being loaded once the write-ahead log grows by several megabytes
    while time.monotonic() < deadline and proc.poll() is None:
        if wal.exists() and wal.stat().st_size > start + 8_000_000:
            break
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL, "the restore finished before the kill"
    _assert_unchanged(target, rows)
    target.close()


# ---------------------------------------------------------------- exact types

_UTC_NOON = dt.datetime(2024, 6, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)


def _types_table(md: sa.MetaData, with_decimal: bool) -> sa.Table:
    cols = [
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("big", sa.BigInteger),
        sa.Column("f", sa.Double),
        sa.Column("ts", sa.DateTime(timezone=True)),
        sa.Column("naive", sa.DateTime),
        sa.Column("day", sa.Date),
        sa.Column("blob", sa.LargeBinary),
        sa.Column("doc", sa.JSON),
        sa.Column("flag", sa.Boolean),
        sa.Column("txt", sa.Text),
    ]
    if with_decimal:
        cols.append(sa.Column("num", sa.Numeric(40, 10)))
    return sa.Table("bk_types", md, *cols)


def _types_rows(nan: bool, offsets: bool, with_decimal: bool) -> list[dict[str, Any]]:
    plus2 = dt.timezone(dt.timedelta(hours=2))
    rows: list[dict[str, Any]] = [
        {
            "id": 1,
            "big": 2**63 - 1,
            "f": float("nan") if nan else 0.1,
            "ts": dt.datetime(2024, 3, 31, 1, 30, 5, 1, tzinfo=plus2) if offsets else _UTC_NOON,
            "naive": dt.datetime(1999, 12, 31, 23, 59, 59, 999999),
            "day": dt.date(1970, 1, 1),
            "blob": bytes(range(256)),
            "doc": {"a": [1, 2.5, None], "é": "ü ☃", "deep": {"x": True}},
            "flag": True,
            "txt": "multi\nline\ttext ☃ \x01",
        },
        {
            "id": 2,
            "big": -(2**63),
            "f": float("inf"),
            "ts": _UTC_NOON,
            "naive": dt.datetime(2024, 2, 29),
            "day": dt.date(2024, 2, 29),
            "blob": b"",
            "doc": sa.JSON.NULL,  # JSON null, not SQL NULL
            "flag": False,
            "txt": "",
        },
        {"id": 3, "f": float("-inf"), "doc": sa.null()},  # SQL NULLs everywhere else
        {"id": 4, "f": 5e-324, "big": 0, "doc": [], "txt": "x" * 100_000},
        {"id": 5, "f": -0.0, "big": 9_007_199_254_740_993, "doc": "just a string"},
    ]
    if with_decimal:
        rows[0]["num"] = decimal.Decimal("123456789012345678901234567890.0123456789")
        rows[1]["num"] = decimal.Decimal("-0.0000000001")
    return rows


def _read_types(engine: sa.Engine) -> list[tuple[Any, ...]]:
    table = sa.Table("bk_types", sa.MetaData(), autoload_with=engine)
    cols = [sa.cast(c, sa.Text) if c.name == "doc" else c for c in table.columns]
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(*cols).order_by(table.c.id))]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and repr(a) == repr(b))
    if isinstance(a, dt.datetime) and isinstance(b, dt.datetime):
        return a == b and (a.utcoffset() is None) == (b.utcoffset() is None)
    return bool(a == b) and type(a) is type(b)


@pytest.mark.parametrize(
    ("source", "target"),
    [("postgresql", "postgresql"), ("sqlite", "sqlite"), ("sqlite", "postgresql")],
    ids=["pg-to-pg", "sqlite-to-sqlite", "sqlite-to-pg"],
)
def test_every_column_type_round_trips_exactly(
    source: str, target: str, new_db: Callable[[str], str], tmp_path: Path
) -> None:
    # SQLite itself stores NaN as NULL, keeps no UTC offset and has no exact decimals, so
    # those values are checked where the database can hold them.
    pg_only = source == target == "postgresql"
    src, dst = create_engine_for(new_db(source)), create_engine_for(new_db(target))
    for engine in (src, dst):
        _types_table(sa.MetaData(), pg_only).create(engine)
    table = _types_table(sa.MetaData(), pg_only)
    with src.begin() as conn:
        for row in _types_rows(nan=pg_only, offsets=pg_only, with_decimal=pg_only):
            conn.execute(table.insert().values(row))

    sink = LocalSink(tmp_path / "types")
    with snapshot(src) as conn:
        entry = dump_table(conn, sa.Table("bk_types", sa.MetaData(), autoload_with=conn), sink)
    sink.finish(b"{}")
    assert entry.rows == 5
    # SQLite reflects DATETIME without the time zone flag: its values are UTC wall time
    ts_kind = "datetime_tz" if source == "postgresql" else "datetime"
    assert {c.name: c.kind for c in entry.columns}["ts"] == ts_kind
    with dst.begin() as conn:
        target_table = sa.Table("bk_types", sa.MetaData(), autoload_with=conn)
        assert load_table(conn, target_table, entry, tmp_path / "types" / entry.file) == 5

    before, after = _read_types(src), _read_types(dst)
    assert len(after) == len(before) == 5
    if source != target:  # the naive SQLite timestamps land as UTC instants
        before = [(*r[:3], r[3] and r[3].replace(tzinfo=dt.UTC), *r[4:]) for r in before]
    for old, new in zip(before, after, strict=True):
        assert all(_same(a, b) for a, b in zip(old, new, strict=True)), (old, new)
    docs = [r[7] for r in after]
    assert docs[1] == "null" and docs[2] is None  # JSON null and SQL NULL stay apart
    assert orjson.loads(docs[0])["é"] == "ü ☃"
    if pg_only:
        assert after[0][3] == dt.datetime(2024, 3, 30, 23, 30, 5, 1, tzinfo=dt.UTC)
        assert math.isnan(after[0][2])
    for engine in (src, dst):
        engine.dispose()


# ---------------------------------------------------------------- refusals


def test_restore_refuses_a_target_with_data_unless_forced(
    db_uri: str, tmp_path: Path, new_db: Callable[[str], str]
) -> None:
    ctx = ll.init(uri=db_uri, artifacts=str(tmp_path / "art"))
    build_store(ctx, model=False)
    backup(ctx.engine, ctx.artifacts, str(tmp_path / "bk"))
    other = ll.init(uri=new_db(_kind(db_uri)), artifacts=str(tmp_path / "other-art"))
    with ll.start_run(experiment="someone-elses") as run:
        run.log_param("p", 1)
    held = existing_data(other.engine)
    assert held["runs"] == 1 and "audit_head" not in held

    with pytest.raises(Conflict, match="already holds data") as refused:
        restore(other.engine, other.artifacts, str(tmp_path / "bk"))
    assert "runs (1 rows)" in refused.value.message and "--force" in (refused.value.hint or "")
    assert table_rows(other.engine)["runs"][0][0] == run.id  # untouched

    report = restore(other.engine, other.artifacts, str(tmp_path / "bk"), force=True)
    assert report.replaced["runs"] == 1
    assert_same_store(ctx.engine, ctx.artifacts, other.engine, other.artifacts)
    # a store opened (and so migrated) but never written to counts as empty
    fresh = ll.init(uri=new_db(_kind(db_uri)), artifacts=str(tmp_path / "fresh-art"))
    assert existing_data(fresh.engine) == {}
    restore(fresh.engine, fresh.artifacts, str(tmp_path / "bk"))
    assert_same_store(ctx.engine, ctx.artifacts, fresh.engine, fresh.artifacts)
    for c in (ctx, other, fresh):
        c.close()


def _flip_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


def _assert_untouched(engine: sa.Engine, store: ArtifactStore) -> None:
    assert current_revision(engine) is None
    assert list(store.iter_digests()) == []


@pytest.mark.parametrize(
    ("damage", "error", "names"),
    [
        ("flip-table", IntegrityError, "tables/runs.parquet"),
        ("truncate-table", IntegrityError, "tables/metric_chunks.parquet"),
        ("missing-table", NotFound, "tables/params.parquet"),
        ("flip-index", IntegrityError, "artifacts/index.tsv"),
        ("no-manifest", IntegrityError, "no manifest.json"),
        ("bad-manifest", IntegrityError, "not a valid Loopline backup manifest"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_restore_refuses_a_damaged_backup_naming_the_file(
    small_source: Context, tmp_path: Path, damage: str, error: type[Exception], names: str
) -> None:
    bk = tmp_path / "bk"
    backup(small_source.engine, small_source.artifacts, str(bk))
    if damage == "flip-table":
        _flip_byte(bk / "tables/runs.parquet")
    elif damage == "truncate-table":
        path = bk / "tables/metric_chunks.parquet"
        path.write_bytes(path.read_bytes()[:-100])
    elif damage == "missing-table":
        (bk / "tables/params.parquet").unlink()
    elif damage == "flip-index":
        _flip_byte(bk / "artifacts/index.tsv", offset=0)
    elif damage == "no-manifest":
        (bk / "manifest.json").unlink()
    else:
        (bk / "manifest.json").write_bytes(b'{"format": "loopline-backup", "format_')
    engine, store = _empty_target(tmp_path)
    with pytest.raises(error, match=names):
        restore(engine, store, str(bk))
    _assert_untouched(engine, store)


def test_restore_refuses_a_corrupted_artifact_before_touching_the_database(
    small_source: Context, tmp_path: Path
) -> None:
    bk = tmp_path / "bk"
    backup(small_source.engine, small_source.artifacts, str(bk))
    victim = sorted((bk / "artifacts/objects").rglob("*"))[-1]
    _flip_byte(victim, offset=0)
    rel = victim.relative_to(bk).as_posix()
    engine, store = _empty_target(tmp_path)
    with pytest.raises(IntegrityError, match=rel):
        restore(engine, store, str(bk))
    assert current_revision(engine) is None
    assert victim.parent.name + victim.name not in set(store.iter_digests())


def test_restore_refuses_a_backup_from_a_newer_schema(
    small_source: Context, tmp_path: Path
) -> None:
    bk = tmp_path / "bk"
    backup(small_source.engine, small_source.artifacts, str(bk))
    manifest = orjson.loads((bk / "manifest.json").read_bytes())
    manifest["alembic_revision"] = "9999_from_the_future"
    manifest["loopline_version"] = "99.0.0"
    (bk / "manifest.json").write_bytes(orjson.dumps(manifest))
    engine, store = _empty_target(tmp_path)
    with pytest.raises(InvalidInput, match="newer Loopline") as refused:
        restore(engine, store, str(bk))
    assert refused.value.field == "SRC" and "9999_from_the_future" in refused.value.message
    _assert_untouched(engine, store)


def test_backup_refuses_an_existing_destination(small_source: Context, tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("mine")
    with pytest.raises(Conflict, match="already exists"):
        backup(small_source.engine, small_source.artifacts, str(tmp_path / "taken"))
    assert (tmp_path / "taken" / "file").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []


def test_a_backup_of_a_corrupted_artifact_fails_and_leaves_nothing(
    small_source: Context, tmp_path: Path
) -> None:
    digest = small_source.artifacts.put_bytes(b"precious bytes" * 1000)
    obj = Path(small_source.settings.artifacts_uri) / "objects" / digest[:2] / digest[2:]
    _flip_byte(obj)
    with pytest.raises(IntegrityError, match=digest):
        backup(small_source.engine, small_source.artifacts, str(tmp_path / "bk"))
    assert not (tmp_path / "bk").exists()
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []


def test_an_s3_backup_without_its_manifest_is_refused(
    small_source: Context, s3_env: None, tmp_path: Path
) -> None:
    import s3fs

    dest = _s3_prefix()
    backup(small_source.engine, small_source.artifacts, dest, storage_options=_options(dest))
    with pytest.raises(Conflict, match="not empty"):
        backup(small_source.engine, small_source.artifacts, dest, storage_options=_options(dest))
    s3fs.S3FileSystem(**s3_options()).rm_file(dest.removeprefix("s3://") + "/manifest.json")
    engine, store = _empty_target(tmp_path)
    with pytest.raises(IntegrityError, match="incomplete"):
        restore(engine, store, dest, storage_options=_options(dest))
    _assert_untouched(engine, store)


def test_a_backup_to_a_missing_bucket_names_the_bucket(small_source: Context, s3_env: None) -> None:
    dest = f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/bk"
    with pytest.raises(NotFound, match=r"the bucket 'no-such-bucket-\w+' does not exist") as bad:
        backup(small_source.engine, small_source.artifacts, dest, storage_options=_options(dest))
    assert "create the bucket" in (bad.value.hint or "")


def test_a_restore_from_a_missing_bucket_names_the_bucket(s3_env: None, tmp_path: Path) -> None:
    # It said "has no manifest.json: the backup is incomplete", as if the bucket held one.
    src = f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/bk"
    engine, store = _empty_target(tmp_path)
    with pytest.raises(NotFound, match=r"the bucket 'no-such-bucket-\w+' does not exist") as bad:
        restore(engine, store, src, storage_options=_options(src))
    assert "SRC" in (bad.value.hint or "")
    _assert_untouched(engine, store)


def test_sigkill_during_backup_leaves_nothing_restore_would_accept(tmp_path: Path) -> None:
    ctx = ll.init(uri=f"sqlite:///{tmp_path / 'src.db'}", artifacts=str(tmp_path / "art"))
    build_store(ctx, model=False)
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    with ctx.artifacts.batch() as batch:  # enough objects that the copy takes a while
        for i in range(1500):
            (blobs / str(i)).write_bytes(os.urandom(2048))
            batch.put_file(blobs / str(i))
    ctx.close()
    dest = tmp_path / "bk"
    env = {
        **os.environ,
        "LOOPLINE_URI": ctx.settings.metadata_uri,
        "LOOPLINE_ARTIFACTS": ctx.settings.artifacts_uri,
    }
    proc = popen(
        [sys.executable, "-m", "loopline.cli.main", "backup", str(dest), "--json"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    staging: list[Path] = []
    while time.monotonic() < deadline and proc.poll() is None:
        staging = [p for p in tmp_path.iterdir() if p.name.startswith("bk.tmp-")]
        if staging and (staging[0] / "artifacts" / "objects").is_dir():
            break
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL, "the backup finished before the kill"
    assert not dest.exists()
    assert staging and not (staging[0] / "manifest.json").exists()
    engine, store = _empty_target(tmp_path)
    with pytest.raises(NotFound, match="does not exist"):
        restore(engine, store, str(dest))
    with pytest.raises(IntegrityError, match="incomplete"):
        restore(engine, store, str(staging[0]))
    _assert_untouched(engine, store)
