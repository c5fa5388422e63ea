"""Migrations that move existing rows: every row survives, up and down, on both backends."""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import command

from loopline.core.db import create_engine_for
from loopline.core.db_migrations import alembic_config, current_revision, upgrade

_RUN = "r" * 32
_ROWS: dict[str, list[tuple[object, ...]]] = {
    "params": [(_RUN, "lr", "0.1"), (_RUN, "model", "lgbm")],
    "tags": [(_RUN, "note", None), (_RUN, "team", "risk")],
    "latest_metrics": [(_RUN, "auc", 0.1 + 0.2, 7, 3, False)],
}


def _rows(engine: sa.Engine) -> dict[str, list[tuple[object, ...]]]:
    with engine.connect() as conn:
        return {
            table: [tuple(r) for r in conn.execute(sa.text(f'SELECT * FROM "{table}" ORDER BY 2'))]
            for table in _ROWS
        }


def _insert(conn: sa.Connection, table: str, rows: list[tuple[object, ...]]) -> None:
    names = [f"v{n}" for n in range(len(rows[0]))]
    insert = f'INSERT INTO "{table}" VALUES ({", ".join(":" + n for n in names)})'
    conn.execute(sa.text(insert), [dict(zip(names, row, strict=True)) for row in rows])


def _insert_runs(conn: sa.Connection, *run_ids: str) -> None:
    """Running runs in the Default experiment, with only the columns every revision has."""
    conn.execute(
        sa.text(
            "INSERT INTO runs (id, experiment_id, status, start_time, lifecycle_stage) "
            "VALUES (:id, 0, 'RUNNING', 1, 'active')"
        ),
        [{"id": run_id} for run_id in run_ids],
    )


def _without_rowid(engine: sa.Engine) -> set[str]:
    if engine.dialect.name != "sqlite":
        return set()
    with engine.connect() as conn:
        found = conn.execute(sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
        return {name for name, sql in found if "WITHOUT ROWID" in sql}


def test_0012_keeps_run_rows_and_clusters_them_on_sqlite(db_uri: str) -> None:
    engine = create_engine_for(db_uri)
    upgrade(engine, "0011_metric_chunks")
    with engine.begin() as conn:
        _insert_runs(conn, _RUN)
        for table, rows in _ROWS.items():
            _insert(conn, table, rows)
    before = _rows(engine)
    assert before["tags"] == _ROWS["tags"]
    assert _without_rowid(engine) == set()
    upgrade(engine, "0012_tracking_without_rowid")
    assert current_revision(engine) == "0012_tracking_without_rowid"
    assert _rows(engine) == before
    clustered = {"params", "tags", "latest_metrics"} if engine.dialect.name == "sqlite" else set()
    assert _without_rowid(engine) == clustered
    if engine.dialect.name == "sqlite":  # the copies kept their keys, foreign keys and index
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        indexes = sa.inspect(engine).get_indexes("latest_metrics")
        assert [i["name"] for i in indexes] == ["ix_latest_metrics_key_value"]
    command.downgrade(alembic_config(engine), "0011_metric_chunks")
    assert _rows(engine) == before
    assert _without_rowid(engine) == set()
    engine.dispose()


def test_0013_copies_each_runs_params_and_tags_into_its_row(db_uri: str) -> None:
    engine = create_engine_for(db_uri)
    upgrade(engine, "0012_tracking_without_rowid")
    other = "o" * 32
    with engine.begin() as conn:
        _insert_runs(conn, _RUN, other)
        for table in ("params", "tags"):
            _insert(conn, table, _ROWS[table])
    upgrade(engine, "0013_run_params_tags_json")
    with engine.connect() as conn:
        found = {
            run_id: (params, tags)
            for run_id, params, tags in conn.execute(
                sa.text("SELECT id, params_json, tags_json FROM runs")
            )
        }
    assert json.loads(found[_RUN][0]) == {"lr": "0.1", "model": "lgbm"}
    assert json.loads(found[_RUN][1]) == {"note": None, "team": "risk"}
    # a run without params or tags: NULL (PostgreSQL) or an empty object (SQLite)
    assert [json.loads(v or "{}") for v in found[other]] == [{}, {}]
    command.downgrade(alembic_config(engine), "0012_tracking_without_rowid")
    assert {"params_json", "tags_json"}.isdisjoint(
        c["name"] for c in sa.inspect(engine).get_columns("runs")
    )
    engine.dispose()


def test_0014_copies_each_runs_latest_metrics_exactly_into_its_row(db_uri: str) -> None:
    engine = create_engine_for(db_uri)
    upgrade(engine, "0013_run_params_tags_json")
    other = "o" * 32
    with engine.begin() as conn:
        _insert_runs(conn, _RUN, other)
        # 0.1 + 0.2 is 0.30000000000000004: SQLite's own JSON would print it as 0.3
        _insert(conn, "latest_metrics", [*_ROWS["latest_metrics"], (_RUN, "nan", 0.0, 8, 4, True)])
    upgrade(engine, "0014_run_metrics_json")
    with engine.connect() as conn:
        found = {r: m for r, m in conn.execute(sa.text("SELECT id, metrics_json FROM runs"))}
    assert found[_RUN] == '{"auc":[3,7,0.30000000000000004],"nan":[4,8,null]}'
    assert json.loads(found[_RUN])["auc"][2] == 0.1 + 0.2
    assert found[other] is None  # a run without metrics
    command.downgrade(alembic_config(engine), "0013_run_params_tags_json")
    assert "metrics_json" not in {c["name"] for c in sa.inspect(engine).get_columns("runs")}
    engine.dispose()


def test_0015_counts_each_models_versions_and_adds_input_details(db_uri: str) -> None:
    engine = create_engine_for(db_uri)
    upgrade(engine, "0014_run_metrics_json")
    with engine.begin() as conn:
        _insert(conn, "registered_models", [("churn", None, 1, 1), ("empty", None, 1, 1)])
        _insert(
            conn,
            "model_versions",
            [("churn", v, "s", None, None, "READY", None, 1, 1) for v in (1, 2, 5)],
        )
        _insert_runs(conn, _RUN)
        _insert(conn, "run_inputs", [(_RUN, "dataset", "d", "1", "ab", None, 1)])
    upgrade(engine, "0015_version_counter_inputs")
    with engine.connect() as conn:
        found = conn.execute(sa.text("SELECT name, last_version FROM registered_models"))
        counted = {name: last for name, last in found}
        details = conn.execute(sa.text("SELECT details FROM run_inputs")).scalar_one()
    assert counted == {"churn": 5, "empty": 0}  # the highest number given so far
    assert details is None  # inputs logged before keep no details
    command.downgrade(alembic_config(engine), "0014_run_metrics_json")
    inspector = sa.inspect(engine)
    assert "last_version" not in {c["name"] for c in inspector.get_columns("registered_models")}
    assert "details" not in {c["name"] for c in inspector.get_columns("run_inputs")}
    engine.dispose()


def test_0018_keeps_every_run_and_what_refers_to_it_up_and_down(db_uri: str) -> None:
    engine = create_engine_for(db_uri)
    upgrade(engine, "0017_logged_model_metrics")
    with engine.begin() as conn:
        _insert_runs(conn, _RUN)
        for table in ("params", "tags"):
            _insert(conn, table, _ROWS[table])
    before = _rows(engine)
    upgrade(engine, "0018_run_outputs")
    with engine.begin() as conn:
        assert conn.execute(sa.text("SELECT outputs_json FROM runs")).scalar_one() is None
        _insert(conn, "run_outputs", [(_RUN, "m-1", 0, 1)])
    assert _rows(engine) == before
    # a plain DROP COLUMN: no rebuild of runs, which would cascade to its params and tags
    command.downgrade(alembic_config(engine), "0017_logged_model_metrics")
    assert _rows(engine) == before
    inspector = sa.inspect(engine)
    assert "outputs_json" not in {c["name"] for c in inspector.get_columns("runs")}
    assert "run_outputs" not in inspector.get_table_names()
    engine.dispose()


def test_0019_gives_each_dataset_version_its_dataset_s_description(db_uri: str) -> None:
    engine = create_engine_for(db_uri)
    upgrade(engine, "0018_run_outputs")
    with engine.begin() as conn:
        _insert(conn, "datasets", [(1, "churn", "March export", 1.0), (2, "bare", None, 1.0)])
        conn.execute(
            sa.text(
                "INSERT INTO dataset_versions (id, dataset_id, name, version, created, hash, "
                "kind, byte_size, file_count, actor) "
                "VALUES (:id, :ds, :name, :v, 1, :h, 'files', 1, 1, 'ada')"
            ),
            [
                {"id": 1, "ds": 1, "name": "churn", "v": 1, "h": "a" * 64},
                {"id": 2, "ds": 1, "name": "churn", "v": 2, "h": "b" * 64},
                {"id": 3, "ds": 2, "name": "bare", "v": 1, "h": "c" * 64},
            ],
        )
    upgrade(engine, "0019_version_description")
    query = "SELECT name, version, description FROM dataset_versions ORDER BY id"
    with engine.begin() as conn:
        assert [tuple(r) for r in conn.execute(sa.text(query))] == [
            ("churn", 1, "March export"),
            ("churn", 2, "March export"),
            ("bare", 1, None),
        ]
        conn.execute(sa.text("UPDATE dataset_versions SET description = 'April' WHERE id = 2"))
    command.downgrade(alembic_config(engine), "0018_run_outputs")
    with engine.connect() as conn:  # the dataset's description is its newest version's
        found = conn.execute(sa.text("SELECT name, description FROM datasets ORDER BY id"))
        assert [tuple(r) for r in found] == [("churn", "April"), ("bare", None)]
    columns = {c["name"] for c in sa.inspect(engine).get_columns("dataset_versions")}
    assert "description" not in columns
    engine.dispose()


def test_0026_hides_the_passwords_of_online_stores_already_logged(db_uri: str) -> None:
    # Before display_uri, materialize logged LOOPLINE_ONLINE_STORE as given, password and
    # all, and `loopline features` showed it again.
    engine = create_engine_for(db_uri)
    upgrade(engine, "0025_prediction_batches_schema")
    stores = [
        "redis://:s3cret@cache:6379/0",
        "redis://feast:p%40ss@cache:6379/1?ssl_cert_reqs=none",
        "rediss://cache:6380/0?password=s3cret&db=2",
        "sqlite:///home/ada/.loopline/online.db",
        "redis://cache:6379/0",
    ]
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO feature_views (id, name, definition, source_kind, created_at, "
                "updated_at) VALUES (1, 'trips', '{}', 'frame', 1, 1)"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO feature_materializations (view_id, end_ts, rows, online_store, "
                "source_ref, started_at, finished_at) VALUES (1, 2, 10, :store, 'trips', 1, 2)"
            ),
            [{"store": store} for store in stores],
        )
    upgrade(engine)
    query = "SELECT online_store FROM feature_materializations ORDER BY id"
    with engine.connect() as conn:
        shown = [row[0] for row in conn.execute(sa.text(query))]
    assert shown == [
        "redis://:***@cache:6379/0",
        "redis://feast:***@cache:6379/1?ssl_cert_reqs=none",
        "rediss://cache:6380/0?password=***&db=2",
        "sqlite:///home/ada/.loopline/online.db",
        "redis://cache:6379/0",
    ]
    assert not any("s3cret" in s or "p%40ss" in s for s in shown)
    command.downgrade(alembic_config(engine), "0025_prediction_batches_schema")  # keeps them hidden
    with engine.connect() as conn:
        assert [row[0] for row in conn.execute(sa.text(query))] == shown
    engine.dispose()  # before the fixture drops the database under its pooled connection


def test_every_revision_id_fits_alembic_s_version_column() -> None:
    # alembic_version.version_num is VARCHAR(32): on PostgreSQL a longer id fails the
    # upgrade after its migration ran ("value too long"); SQLite does not check it.
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(alembic_config(create_engine_for("sqlite://")))
    too_long = [s.revision for s in scripts.walk_revisions() if len(s.revision) > 32]
    assert not too_long, too_long
