"""A new SQLite database made from the shipped schema equals one the migrations made."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from loopline.core import sqlite_schema
from loopline.core.db import create_engine_for
from loopline.core.db_migrations import HEAD_REVISION, current_revision, ensure_schema


def _normalised(path: Path) -> list[str]:
    """The database's statements with the Default experiment's times set to 0."""
    engine = create_engine_for(f"sqlite:///{path}")
    with engine.begin() as conn:
        sqlite_schema._stamp(conn, 0)
    engine.dispose()
    return sqlite_schema.dump_statements(path)


def test_the_shipped_schema_is_what_the_migrations_make_now() -> None:
    shipped = json.loads(sqlite_schema.SCHEMA_FILE.read_text(encoding="utf-8"))
    assert shipped["revision"] == HEAD_REVISION, (
        "a migration was added: run `python -m loopline.core.sqlite_schema`"
    )
    assert shipped["statements"] == sqlite_schema.migrated_statements(), (
        "the migrations changed: run `python -m loopline.core.sqlite_schema`"
    )


def test_a_new_database_from_the_schema_equals_a_migrated_one(tmp_path: Path) -> None:
    made = tmp_path / "made.db"
    engine = create_engine_for(f"sqlite:///{made}")
    before = time.time() * 1000
    ensure_schema(engine)
    with engine.connect() as conn:
        created = conn.execute(sa.text("SELECT creation_time FROM experiments WHERE id = 0"))
        assert created.scalar_one() >= before - 1  # stamped now, not when the file was made
        assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
    assert current_revision(engine) == HEAD_REVISION
    engine.dispose()
    assert _normalised(made) == sqlite_schema.migrated_statements()


def test_a_database_with_tables_is_left_to_the_migrations(tmp_path: Path) -> None:
    engine = create_engine_for(f"sqlite:///{tmp_path / 'other.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE mine (x INTEGER)")
    assert not sqlite_schema.create_if_empty(engine)
    with engine.connect() as conn:
        tables = conn.exec_driver_sql("SELECT name FROM sqlite_master").scalars().all()
    assert tables == ["mine"]
    engine.dispose()


def test_postgresql_is_always_migrated(pg_uri: str) -> None:
    engine = create_engine_for(pg_uri)
    assert not sqlite_schema.create_if_empty(engine)
    assert current_revision(engine) is None  # untouched
    engine.dispose()


def test_a_schema_file_of_another_revision_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = {"revision": "0001_core", "statements": ["CREATE TABLE wrong (x INTEGER);"]}
    monkeypatch.setattr(sqlite_schema, "_shipped", lambda: old)
    engine = create_engine_for(f"sqlite:///{tmp_path / 'meta.db'}")
    ensure_schema(engine)  # migrates instead
    assert current_revision(engine) == HEAD_REVISION
    assert "wrong" not in sa.inspect(engine).get_table_names()
    engine.dispose()
