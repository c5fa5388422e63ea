"""Fixtures for real backends: SQLite and PostgreSQL, a local folder and S3, Redis.

`make test` starts PostgreSQL, an S3-compatible server and Redis on loopback and exports
their addresses as LOOPLINE_TEST_*; it also sets LOOPLINE_REQUIRE_SERVICES=1 (as does CI),
under which a missing service fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import loopline
from loopline.core.artifacts import ArtifactStore, open_artifact_store
from loopline.core.context import Context
from loopline.core.db import create_engine_for


def _require(var: str) -> str:
    value = os.environ.get(var)
    if value:
        return value
    msg = f"{var} is not set: run the suite with `make test`, which starts the services"
    if os.environ.get("LOOPLINE_REQUIRE_SERVICES") == "1" or os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs in its own folder, so ./.loopline and loopline.toml never leak."""
    monkeypatch.chdir(tmp_path)
    for var in list(os.environ):
        if (
            var.startswith("LOOPLINE_")
            and not var.startswith("LOOPLINE_TEST_")
            and var not in ("LOOPLINE_REQUIRE_SERVICES",)
        ):
            monkeypatch.delenv(var)


@pytest.fixture
def pg_uri() -> Iterator[str]:
    """A fresh, empty PostgreSQL database on the test server; dropped afterwards."""
    admin_uri = _require("LOOPLINE_TEST_PG_ADMIN_URI")
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine_for(admin_uri).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    uri = admin_uri.rsplit("/", 1)[0] + "/" + name
    try:
        yield uri
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def sqlite_uri(tmp_path: Path) -> str:
    """A fresh SQLite file."""
    return f"sqlite:///{tmp_path / 'meta.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh metadata database, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'meta.db'}"
    return str(request.getfixturevalue("pg_uri"))


def s3_options() -> dict[str, str]:
    """Storage options for the test S3 server."""
    return {
        "endpoint_url": _require("LOOPLINE_TEST_S3_ENDPOINT"),
        "key": _require("LOOPLINE_TEST_S3_KEY"),
        "secret": _require("LOOPLINE_TEST_S3_SECRET"),
    }


@pytest.fixture
def s3_url() -> str:
    """A fresh prefix in the test bucket on the S3-compatible server."""
    bucket = _require("LOOPLINE_TEST_S3_BUCKET")
    return f"s3://{bucket}/t-{uuid.uuid4().hex[:16]}"


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Point Loopline's S3 settings at the test server."""
    opts = s3_options()
    monkeypatch.setenv("LOOPLINE_S3_ENDPOINT_URL", opts["endpoint_url"])
    monkeypatch.setenv("LOOPLINE_S3_ACCESS_KEY_ID", opts["key"])
    monkeypatch.setenv("LOOPLINE_S3_SECRET_ACCESS_KEY", opts["secret"])


@pytest.fixture(params=["local", "s3"])
def artifacts_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty artifact store location: a local folder, then an S3 prefix."""
    if request.param == "local":
        return str(tmp_path / "artifacts")
    request.getfixturevalue("s3_env")
    return str(request.getfixturevalue("s3_url"))


@pytest.fixture
def artifact_store(artifacts_url: str) -> ArtifactStore:
    """An opened artifact store on each backend."""
    opts = s3_options() if artifacts_url.startswith("s3://") else None
    return open_artifact_store(artifacts_url, opts)


@pytest.fixture
def redis_url() -> str:
    """The test Redis server, on a database of its own per xdist worker, flushed first."""
    import redis

    url = _require("LOOPLINE_TEST_REDIS_URL")
    # One Redis database per pytest-xdist worker (gw0 -> 0, gw1 -> 1, ...), so a worker's
    # flush never empties a store another worker's test is using.
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    url = f"{url.rsplit('/', 1)[0]}/{int(worker.removeprefix('gw') or 0) % 16}"
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture
def ctx(db_uri: str, tmp_path: Path) -> Iterator[Context]:
    """A Loopline context on each metadata backend, with a local artifact folder."""
    context = loopline.init(uri=db_uri, artifacts=str(tmp_path / "artifacts"))
    yield context
    context.close()


@pytest.fixture
def embedded_ctx(tmp_path: Path) -> Iterator[Context]:
    """The embedded default: SQLite + a local folder, in the test's own folder."""
    context = loopline.init(
        uri=f"sqlite:///{tmp_path / 'meta.db'}", artifacts=str(tmp_path / "artifacts")
    )
    yield context
    context.close()
