"""Module-scoped metadata databases and ``loopline server`` processes for backend tests.

Starting a server takes seconds, so the conformance suite and the REST tests share one
database and one server per module and backend, and isolate tests by experiment name.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from loopline.core.db import create_engine_for
from tests.conftest import _require
from tests.server.conftest import start_server, stop_server


@contextmanager
def database(kind: str, folder: Path) -> Iterator[str]:
    """A fresh metadata database: a SQLite file in ``folder`` or a new PostgreSQL database."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'meta.db'}"
        return
    admin_uri = _require("LOOPLINE_TEST_PG_ADMIN_URI")
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine_for(admin_uri).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_uri.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def server(db_uri: str, folder: Path) -> Iterator[str]:
    """A running ``loopline server`` on ``db_uri``; yields its base URL."""
    proc, url = start_server(db_uri, str(folder / "server-artifacts"))
    try:
        yield url
    finally:
        stop_server(proc)


def count_points(db_uri: str, run_ids: list[str]) -> tuple[dict[str, int], list[tuple[str, ...]]]:
    """Points stored per run, and every (run, key, step, timestamp) stored more than once."""
    from loopline.tracking.metrics import stored_points

    engine = create_engine_for(db_uri)
    try:
        with engine.connect() as conn:
            points = [(r, k, p.step, p.timestamp) for r, k, p in stored_points(conn, run_ids)]
    finally:
        engine.dispose()
    counts = Counter(run_id for run_id, *_rest in points)
    dupes = [tuple(str(x) for x in point) for point, n in Counter(points).items() if n > 1]
    return dict(counts), dupes


def run_with_id(engine: sa.Engine, experiment: str, run_id: str) -> str:
    """Write a FINISHED run with the id ``run_id`` (the store draws a random one) into
    ``experiment``; for ids that share a prefix, which random ids almost never do."""
    from dataclasses import replace

    from loopline.tracking import run_creation
    from loopline.tracking.entities import now_ms
    from loopline.tracking.experiments import get_or_create_experiment

    new = run_creation.new_run(get_or_create_experiment(engine, experiment))
    new = replace(new, record=replace(new.record, id=run_id))
    run_creation.write_run(engine, new, end=("FINISHED", now_ms()))
    return run_id
