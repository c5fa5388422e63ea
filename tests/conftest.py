"""Fixtures for real backends: SQLite and PostgreSQL, a local folder and S3, Redis.

`make test` starts PostgreSQL, an S3-compatible server and Redis on loopback and exports
their addresses as LOOPLINE_TEST_*; it also sets LOOPLINE_REQUIRE_SERVICES=1 (as does CI),
under which a missing service fails the test instead of skipping it.

A test that uses ``ctx`` or ``embedded_ctx`` gets its database as a copy of one migrated
once per worker session by the real migrations
(:func:`loopline.core.db_migrations.upgrade`): running all of them again per test cost
~0.15 s on SQLite and ~0.25 s on PostgreSQL, on ~900 tests.
A test or fixture that only needs a working store, not a first use, asks for
``migrated_db_uri`` or ``migrated_sqlite_uri`` to get the same copy. ``db_uri``, ``pg_uri``
and ``sqlite_uri`` stay fresh and empty for every other test, so the tests of migrations and
of first use still start from nothing. Tests that each touch only what they make (their
own runs) or only read may share one store per module and backend: ``module_ctx``.
A fixture that fills the test's store with the same things for every test (models trained
and registered) can build them once per worker and backend with :func:`seeded`: each test
still gets its own copy of the filled database and artifact folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import loopline
from loopline.core.artifacts import ArtifactStore, open_artifact_store
from loopline.core.context import Context
from loopline.core.db import create_engine_for
from loopline.core.db_migrations import upgrade

# The real MLflow client's telemetry, on by default: with no network here its config thread
# gives up and deletes a variable from os.environ while the client's requests iterate over
# it (KeyError '_MLFLOW_TELEMETRY_SESSION_ID', once in a full run). MLflow decides at import,
# before pytest sets PYTEST_CURRENT_TEST, so the test modules' imports would switch it on.
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

# OpenMP (scikit-learn's gradient boosting, LightGBM) keeps a team as wide as the machine and
# by default its idle members spin between parallel regions. The suite runs three workers
# and their servers on two cores: a spinning member holds a core another process needs, and
# a region waits for a member the kernel has descheduled. HistGradientBoosting's fit of
# 1,500 rows took 3-14 s instead of 0.4 s on the loaded machine (one region per tree and
# iteration). Passive members sleep instead; the team keeps its width, so what the tests
# assert about thread counts (tests/training/test_native_threads.py, the model server's
# native_threads) is unchanged. Set before any test imports scikit-learn (libgomp reads it
# once, as it loads); the servers and CLI processes the tests start inherit it. A value
# already set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# NumPy's OpenBLAS does the same with its own pthreads pool (no wait-policy setting): under
# the same load 30 fits of a LogisticRegression on 200 rows took 1.1-1.6 s on its default
# two threads and 0.1 s on one. No test asserts on BLAS threads; one per process, as the
# workers already number more than the cores.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules that hold a slow test run first, each kept whole (its module fixtures are
    made once); the order is otherwise the collection's.

    Under xdist the slowest tests (a fresh venv for a reproduction, ~75 s; the demo, ~35 s)
    then start early instead of being the last thing one worker does while the other
    waits. Every worker sorts alike, so their collections still agree.
    """
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)


def _require(var: str) -> str:
    value = os.environ.get(var)
    if value:
        return value
    msg = f"{var} is not set: run the suite with `make test`, which starts the services"
    if os.environ.get("LOOPLINE_REQUIRE_SERVICES") == "1" or os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


def env_without_loopline() -> dict[str, str]:
    """This process's environment without any ``LOOPLINE_*`` setting, for a subprocess that
    must start from Loopline's defaults (plus what the caller adds)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("LOOPLINE_")}


def run_python(code: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` (``python -c``) with ``args`` in a fresh interpreter in ``cwd``, with
    :func:`env_without_loopline`; its output is text."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env_without_loopline(),
        timeout=120,
    )


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


def _pg_uri_of(database: str) -> str:
    """The URI of ``database`` on the test PostgreSQL server."""
    return _require("LOOPLINE_TEST_PG_ADMIN_URI").rsplit("/", 1)[0] + "/" + database


@contextmanager
def _pg_database(admin: sa.Engine, template: str | None = None) -> Iterator[str]:
    """A new PostgreSQL database (a copy of ``template`` if given), dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    copy = f' TEMPLATE "{template}"' if template else ""
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"{copy}'))
    try:
        yield _pg_uri_of(name)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def _pg_admin() -> Iterator[sa.Engine]:
    """One autocommit connection pool per worker for CREATE/DROP DATABASE."""
    admin_uri = _require("LOOPLINE_TEST_PG_ADMIN_URI")
    admin = create_engine_for(admin_uri).execution_options(isolation_level="AUTOCOMMIT")
    yield admin
    admin.dispose()


class MigratedTemplates:
    """Databases at the newest schema, migrated once per worker by the real migrations.

    Each is made on first use by :func:`loopline.core.db_migrations.upgrade` (never a hand-written
    schema) and only copied afterwards: a SQLite file by a file copy, a PostgreSQL database
    by ``CREATE DATABASE ... TEMPLATE``. Nobody writes to a template: the SQLite one lives
    outside every test's folder and the PostgreSQL one refuses connections once migrated.
    """

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._sqlite: Path | None = None
        self._pg: str | None = None
        self._admin: sa.Engine | None = None
        self._seeded: dict[tuple[tuple[str, str], str], tuple[Path, str | None, Any]] = {}
        self._pg_seeded: list[str] = []

    def sqlite_copy(self, dest: Path) -> None:
        """Write a copy of the migrated SQLite database to ``dest``."""
        if self._sqlite is None:
            # A new name per attempt: a migration that failed half-way is never copied.
            path = self._folder / f"template-{uuid.uuid4().hex[:8]}.db"
            engine = create_engine_for(f"sqlite:///{path}")
            upgrade(engine)
            # Closing the last connection checkpoints the WAL into the file and removes it,
            # so the one file is the whole database.
            engine.dispose()
            assert not Path(f"{path}-wal").exists(), "template WAL was not checkpointed"
            self._sqlite = path
        shutil.copyfile(self._sqlite, dest)

    def pg_template(self, admin: sa.Engine) -> str:
        """The name of the migrated PostgreSQL template database."""
        if self._pg is None:
            name = f"tmpl_{uuid.uuid4().hex[:16]}"
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
            try:
                engine = create_engine_for(_pg_uri_of(name))
                upgrade(engine)
                # CREATE DATABASE ... TEMPLATE needs the template without connections.
                engine.dispose()
                with admin.connect() as conn:
                    conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            except BaseException:
                with admin.connect() as conn:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                raise
            self._admin, self._pg = admin, name
        return self._pg

    def seeded_copy(
        self, seed: Seed, backend: str, artifacts: Path, admin: sa.Engine | None = None
    ) -> tuple[str | None, Any]:
        """Copy the store ``seed`` built (once per worker and backend) for one test: its
        artifact folder to ``artifacts``; on SQLite its database file to ``artifacts``'s
        sibling ``meta.db`` (None is returned), on PostgreSQL the name of the filled template
        database to copy. Returns that and what the seed's builder returned."""
        key = (seed.key, backend)
        if key not in self._seeded:
            self._seeded[key] = self._seed(seed, backend, admin)
        folder, template, value = self._seeded[key]
        shutil.copytree(folder / "artifacts", artifacts)
        if backend == "sqlite":
            shutil.copyfile(folder / "meta.db", artifacts.parent / "meta.db")
        return template, value

    def _seed(
        self, seed: Seed, backend: str, admin: sa.Engine | None
    ) -> tuple[Path, str | None, Any]:
        """Run ``seed``'s builder on a new copy of the migrated template, in a folder of its
        own; nobody writes to the result afterwards (tests get copies)."""
        folder = self._folder / f"seed-{uuid.uuid4().hex[:8]}"
        folder.mkdir()
        template: str | None = None
        if backend == "sqlite":
            self.sqlite_copy(folder / "meta.db")
            uri = f"sqlite:///{folder / 'meta.db'}"
        else:
            assert admin is not None
            template = f"seed_{uuid.uuid4().hex[:16]}"
            with admin.connect() as conn:
                conn.execute(
                    sa.text(f'CREATE DATABASE "{template}" TEMPLATE "{self.pg_template(admin)}"')
                )
            self._pg_seeded.append(template)
            uri = _pg_uri_of(template)
        cwd = Path.cwd()
        os.chdir(folder)  # whatever the builder writes to its working folder stays here
        try:
            context = loopline.init(uri=uri, artifacts=str(folder / "artifacts"))
            try:
                value = seed.builder()
            finally:
                context.close()
        finally:
            os.chdir(cwd)
        if backend == "sqlite":
            assert not Path(f"{folder / 'meta.db'}-wal").exists(), "seed WAL was not checkpointed"
        else:
            assert admin is not None
            with admin.connect() as conn:
                conn.execute(sa.text(f'ALTER DATABASE "{template}" ALLOW_CONNECTIONS false'))
                # CREATE DATABASE ... TEMPLATE needs it without connections: a pool the
                # builder's calls opened besides the context's engine is done with it.
                conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": template},
                )
        return folder, template, value

    def close(self) -> None:
        """Drop the PostgreSQL templates (the SQLite ones go with pytest's temp folder)."""
        if self._admin is None:
            return
        with self._admin.connect() as conn:
            for name in [*self._pg_seeded, *([self._pg] if self._pg else [])]:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        # The session's admin pool may already be closed (fixtures end in reverse order
        # of first use): close the connections these drops opened.
        self._admin.dispose()


class Seed:
    """What a :func:`seeded` fixture fills a store with: its builder, and its key."""

    def __init__(self, builder: Callable[[], Any]) -> None:
        self.builder = builder
        self.key = (builder.__module__, builder.__name__)


#: What the builder of a test's seeded fixture returned (kept by ``db_uri``).
_SEEDED_VALUE = pytest.StashKey[Any]()
#: The seeded fixtures, by (module, fixture name): ``db_uri`` looks its test's names up here.
_SEEDS: dict[tuple[str, str], Seed] = {}


def seeded(builder: Callable[[], Any]) -> Any:
    """Make ``builder`` a fixture of the same name that fills the test's ``ctx`` store (or
    ``embedded_ctx``'s, if the test does not use ``ctx``): the builder runs once per worker
    and backend on a store of its own (the current context), and each test that asks for
    the fixture gets its own copy of that database and artifact folder as its store, and the
    builder's return value.

    For a setup that is the same for every test of a module and costs more than the copy
    (models trained, logged and registered: ~0.25 s each). The copy is writable and the
    test's own, so tests stay independent.

    Example:
        @seeded
        def versions() -> tuple[int, int]:
            return register(good_model(data), "m", data), register(weak_model(data), ...)

        def test_deploys(ctx: Context, versions: tuple[int, int]) -> None: ...
    """
    seed = Seed(builder)
    if seed.key in _SEEDS:
        raise ValueError(f"two seeded fixtures named {seed.key}")
    _SEEDS[seed.key] = seed

    def fixture(request: pytest.FixtureRequest) -> Any:
        # The store's fixture (``ctx``'s ``db_uri``, or ``embedded_ctx``) copies the seeded
        # store and keeps the builder's value.
        request.getfixturevalue("ctx" if "ctx" in request.fixturenames else "embedded_ctx")
        return request.node.stash[_SEEDED_VALUE]

    fixture.__doc__ = builder.__doc__
    return pytest.fixture(name=builder.__name__)(fixture)


def _seed_of(request: pytest.FixtureRequest) -> Seed | None:
    """The seeded fixture the test asks for (at most one), if any."""
    module = request.module.__name__
    found = [_SEEDS[module, n] for n in request.fixturenames if (module, n) in _SEEDS]
    assert len(found) <= 1, f"a test can use one seeded fixture, not {len(found)}"
    return found[0] if found else None


@pytest.fixture(scope="session")
def migrated_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MigratedTemplates]:
    """This worker's migrated template databases, made on first use."""
    templates = MigratedTemplates(tmp_path_factory.mktemp("migrated-template"))
    yield templates
    templates.close()


@pytest.fixture
def pg_uri(_pg_admin: sa.Engine) -> Iterator[str]:
    """A fresh, empty PostgreSQL database on the test server; dropped afterwards."""
    with _pg_database(_pg_admin) as uri:
        yield uri


@pytest.fixture
def sqlite_uri(tmp_path: Path) -> str:
    """A fresh SQLite file."""
    return f"sqlite:///{tmp_path / 'meta.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh metadata database, once on SQLite and once on PostgreSQL.

    Empty, unless the test uses ``ctx`` or ``migrated_db_uri``: then it is that context's
    database, already at the newest schema (a copy of a :class:`MigratedTemplates`
    database), as ``ctx`` would have migrated it on first use anyway; or, if the test asks
    for a :func:`seeded` fixture, a copy of the store that fixture's builder filled (with
    its artifacts in ``ctx``'s folder).
    """
    migrated = "ctx" in request.fixturenames or "migrated_db_uri" in request.fixturenames
    seed = _seed_of(request)
    if seed is not None:
        assert "ctx" in request.fixturenames, f"{seed.key[1]} fills ctx's store, not this one"
        templates: MigratedTemplates = request.getfixturevalue("migrated_templates")
        admin = None if request.param == "sqlite" else request.getfixturevalue("_pg_admin")
        template, value = templates.seeded_copy(seed, request.param, tmp_path / "artifacts", admin)
        request.node.stash[_SEEDED_VALUE] = value
        if template is None:
            yield f"sqlite:///{tmp_path / 'meta.db'}"
        else:
            assert admin is not None
            with _pg_database(admin, template) as uri:
                yield uri
    elif request.param == "sqlite":
        path = tmp_path / "meta.db"
        if migrated:
            templates = request.getfixturevalue("migrated_templates")
            templates.sqlite_copy(path)
        yield f"sqlite:///{path}"
    elif migrated:
        admin = request.getfixturevalue("_pg_admin")
        templates = request.getfixturevalue("migrated_templates")
        with _pg_database(admin, templates.pg_template(admin)) as uri:
            yield uri
    else:
        yield str(request.getfixturevalue("pg_uri"))


@pytest.fixture
def migrated_db_uri(db_uri: str) -> str:
    """``db_uri`` already at the newest schema, for a test that needs a working store but does
    not test migrations or first use: a copy of the worker's migrated template instead of
    ~0.15 s (SQLite) or ~0.3 s (PostgreSQL) of migrations on an empty database.

    It is the same database as ``db_uri`` (``db_uri`` sees this fixture and copies the
    template), so a test may ask for both.

    Example:
        def test_reads(migrated_db_uri: str) -> None:
            ctx = loopline.init(uri=migrated_db_uri, artifacts="art")
    """
    return db_uri


@pytest.fixture
def migrated_sqlite_uri(tmp_path: Path, migrated_templates: MigratedTemplates) -> str:
    """A SQLite file already at the newest schema (a copy of the migrated template), for a
    test that needs a working store on SQLite but does not test first use.

    Example:
        def test_reads(migrated_sqlite_uri: str) -> None:
            ctx = loopline.init(uri=migrated_sqlite_uri, artifacts="art")
    """
    path = tmp_path / "meta.db"
    migrated_templates.sqlite_copy(path)
    return f"sqlite:///{path}"


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


@pytest.fixture(params=["sqlite", "redis"])
def online_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty online feature store URL: a SQLite file, then the test Redis."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'online.db'}"
    return str(request.getfixturevalue("redis_url"))


@pytest.fixture
def ctx(db_uri: str, tmp_path: Path) -> Iterator[Context]:
    """A Loopline context on each metadata backend, with a local artifact folder.

    Its database starts at the newest schema (see ``db_uri``).
    """
    context = loopline.init(uri=db_uri, artifacts=str(tmp_path / "artifacts"))
    yield context
    context.close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_store(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    migrated_templates: MigratedTemplates,
) -> Iterator[tuple[str, str]]:
    """(metadata URI, artifacts folder) of one store at the newest schema per backend, shared
    by the tests of a module that use ``module_ctx``; dropped after the module."""
    folder = tmp_path_factory.mktemp(f"module-store-{request.param}")
    artifacts = str(folder / "artifacts")
    if request.param == "sqlite":
        migrated_templates.sqlite_copy(folder / "meta.db")
        yield f"sqlite:///{folder / 'meta.db'}", artifacts
        return
    admin: sa.Engine = request.getfixturevalue("_pg_admin")
    with _pg_database(admin, migrated_templates.pg_template(admin)) as uri:
        yield uri, artifacts


@pytest.fixture
def module_ctx(module_store: tuple[str, str]) -> Iterator[Context]:
    """The current Loopline context, on the module's shared store (``module_store``), once on
    SQLite and once on PostgreSQL.

    For tests that only read, or write only what they make themselves (their own runs, under
    names of their own) and assert only on that: they skip the ~0.1 s (SQLite) to ~0.3 s
    (PostgreSQL) of a store of their own. A test that counts or lists everything in a
    store, or changes what others made, takes ``ctx``.

    Example:
        def test_rejects(module_ctx: Context) -> None:
            with loopline.start_run(experiment="keys") as run:
                ...
    """
    uri, artifacts = module_store
    context = loopline.init(uri=uri, artifacts=artifacts)
    yield context
    context.close()


@pytest.fixture
def embedded_ctx(
    request: pytest.FixtureRequest, tmp_path: Path, migrated_templates: MigratedTemplates
) -> Iterator[Context]:
    """The embedded default: SQLite + a local folder, in the test's own folder.

    Its database starts as a copy of the migrated template (see :class:`MigratedTemplates`),
    or of the store the test's :func:`seeded` fixture filled.
    """
    path = tmp_path / "meta.db"
    seed = _seed_of(request)
    if seed is not None:
        _, request.node.stash[_SEEDED_VALUE] = migrated_templates.seeded_copy(
            seed, "sqlite", tmp_path / "artifacts"
        )
    elif not path.exists():
        migrated_templates.sqlite_copy(path)
    context = loopline.init(uri=f"sqlite:///{path}", artifacts=str(tmp_path / "artifacts"))
    yield context
    context.close()
