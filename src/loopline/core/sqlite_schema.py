"""A new SQLite database gets the newest schema in one transaction, not every migration.

Running each Alembic migration on an empty SQLite file took about 0.4 s, plus 0.15 s to
import Alembic: the first command of every new home, and every test on a fresh database.
What the migrations build is shipped instead, as the statements that rebuild it
(``migrations/sqlite_schema.json``: Python's ``iterdump`` of a database the real migrations
made, written by ``python -m loopline.core.sqlite_schema``), and :func:`create_if_empty`
runs them on an empty database in one transaction.

The migrations stay the truth: ``tests/core/test_sqlite_schema.py`` fails when the file is
not what they make now (regenerate it after adding a migration), and a file of another
revision than :data:`~loopline.core.schema_revision.HEAD_REVISION` is never used (Alembic
migrates instead). PostgreSQL always migrates.

Example:
    >>> from loopline.core.db import create_engine_for
    >>> create_if_empty(create_engine_for("sqlite:///:memory:"))
    True
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import time
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection, Engine

from loopline.core.schema_revision import HEAD_REVISION

SCHEMA_FILE = Path(__file__).parent / "migrations" / "sqlite_schema.json"

#: Rows the migrations add with the time they ran (MLflow's "Default" experiment): shipped
#: with 0 there, and stamped with the time the database is made.
_STAMPED = ('UPDATE "experiments" SET "creation_time" = {t}, "last_update_time" = {t}',)

# iterdump wraps its statements in a transaction of its own; create_if_empty runs them in
# the engine's (BEGIN IMMEDIATE), so that the check for an empty database and the schema are
# one step for any other process starting on the same file.
_OWN_TRANSACTION = ("BEGIN TRANSACTION;", "COMMIT;")


def dump_statements(path: Path) -> list[str]:
    """The statements that rebuild the SQLite database at ``path`` (tables in name order,
    each with its rows, then indexes), without ``iterdump``'s own transaction.

    Example:
        >>> # dump_statements(Path("meta.db"))[0]  -> 'CREATE TABLE alembic_version (...);'
    """
    conn = sqlite3.connect(path)
    try:
        return [s for s in conn.iterdump() if s not in _OWN_TRANSACTION]
    finally:
        conn.close()


@cache
def _shipped() -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found


def create_if_empty(engine: Engine) -> bool:
    """Create the newest schema on an empty SQLite database; True if it did.

    False, touching nothing, on another backend, on a database that has any table, or when
    the shipped statements are not of the newest revision: the caller migrates then.

    Example:
        >>> # if not create_if_empty(engine): upgrade(engine)
    """
    schema = _shipped()
    if engine.dialect.name != "sqlite" or schema is None or schema["revision"] != HEAD_REVISION:
        return False
    with engine.begin() as conn:  # BEGIN IMMEDIATE: another first user waits, then sees tables
        if conn.exec_driver_sql("SELECT count(*) FROM sqlite_master").scalar():
            return False
        # Tables come in name order with their rows: check references at commit, not per row.
        conn.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
        for statement in schema["statements"]:
            conn.exec_driver_sql(statement)
        _stamp(conn, time.time_ns() // 1_000_000)
    return True


def _stamp(conn: Connection, now_ms: int) -> None:
    for statement in _STAMPED:
        conn.exec_driver_sql(statement.format(t=int(now_ms)))


def migrated_statements() -> list[str]:
    """What the migrations make of an empty SQLite database, as :func:`dump_statements`
    (the times of the rows they add set to 0).

    Example:
        >>> # migrated_statements()[:1]
    """
    from loopline.core.db import create_engine_for
    from loopline.core.db_migrations import upgrade

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "meta.db"
        engine = create_engine_for(f"sqlite:///{path}")
        try:
            upgrade(engine)
            with engine.begin() as conn:
                _stamp(conn, 0)
        finally:
            engine.dispose()
        return dump_statements(path)


def write_schema_file(path: Path = SCHEMA_FILE) -> None:
    """Write the statements of the newest schema to ``path`` (after adding a migration).

    Example:
        >>> # python -m loopline.core.sqlite_schema
    """
    content = {"revision": HEAD_REVISION, "statements": migrated_statements()}
    path.write_text(json.dumps(content, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    write_schema_file()
    print(f"wrote {SCHEMA_FILE}")
