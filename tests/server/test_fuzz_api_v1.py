"""Schemathesis against the OpenAPI description of ``/api/v1``: no 5xx, every answer fits.

Each operation gets a bounded, derandomised set of generated requests (the same ones on
every run), sent in-process to the real app over a real store on SQLite and PostgreSQL.
A failure prints the request that reproduces it. The MLflow-compatible routes get the
same treatment on SQLite (no 5xx; their answers are MLflow's, which the description leaves
open), with the fast path in front of them as in ``loopline server``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance

import loopline as ll
from loopline.config import Settings
from loopline.core.context import Context
from loopline.core.db import create_engine_for
from loopline.server.app import create_app
from loopline.tracking import experiments as exp_store
from loopline.tracking import run_creation, run_data

#: Generated requests per operation; enough to reach every field, small enough for CI.
MAX_EXAMPLES = 30


def _operations(*prefixes: str) -> list[tuple[str, str, str]]:
    """(method, path, mode) for every operation under ``prefixes`` and each way of
    generating for it.

    ``negative`` (requests that break the schema) only where something can break it: a
    body or a query parameter; ``existing`` (ids of a real run) only where a path names one.
    """
    # The description does not depend on the store: an unopened context is enough.
    app = create_app(Context(Settings(uri="sqlite:///:memory:")))
    found = []
    for path, item in app.openapi()["paths"].items():
        if not path.startswith(prefixes):
            continue
        for method, operation in item.items():
            modes = ["positive"]
            params = operation.get("parameters", [])
            if "requestBody" in operation or any(p["in"] == "query" for p in params):
                modes.append("negative")
            if "{run_id}" in path or "{experiment_id}" in path:
                modes.append("existing")
            found += [(method.upper(), path, mode) for mode in modes]
    return found


OPERATIONS = _operations("/api/v1/")
MLFLOW_OPERATIONS = _operations("/api/2.0/mlflow/", "/api/2.0/mlflow-artifacts/", "/api/3.0/")
#: Generated requests per MLflow operation: there are 45 routes, and they share their parsing.
MLFLOW_MAX_EXAMPLES = 15


@dataclass(frozen=True)
class Target:
    """The app under test on one backend, and the ids of a real experiment and run."""

    schema: schemathesis.BaseSchema
    ids: dict[str, str]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    """One store per backend for the whole module: the fuzzer's writes pile up in it, as
    they would on a real server, and no database is created per operation."""
    folder = tmp_path_factory.mktemp("fuzz")
    with ExitStack() as stack:
        if request.param == "sqlite":
            uri = f"sqlite:///{folder / 'meta.db'}"
        else:
            uri = stack.enter_context(_pg_database())
        # The fuzzer's in-process client calls the app as "testserver".
        ctx = ll.init(uri=uri, artifacts=str(folder / "artifacts"), allowed_hosts="testserver")
        stack.callback(ctx.close)
        exp = exp_store.get_or_create_experiment(ctx.engine, "fuzz", actor="fuzz")
        run = run_creation.create_run(ctx.engine, exp.id, name="fuzz", actor="fuzz")
        run_data.log_batch(ctx.engine, run.id, params={"lr": "0.1"}, tags={"team": "a"})
        schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(ctx))
        yield Target(schema, {"experiment_id": str(exp.id), "run_id": run.id})


@contextmanager
def _pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database on the test server, dropped afterwards."""
    admin_uri = os.environ.get("LOOPLINE_TEST_PG_ADMIN_URI")
    if not admin_uri:
        if os.environ.get("LOOPLINE_REQUIRE_SERVICES") == "1":
            pytest.fail("LOOPLINE_TEST_PG_ADMIN_URI is not set: run with `make test`")
        pytest.skip("LOOPLINE_TEST_PG_ADMIN_URI is not set: run with `make test`")
    name = f"fuzz_{uuid.uuid4().hex[:16]}"
    admin = create_engine_for(admin_uri).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_uri.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "path", "mode"), OPERATIONS, ids=[f"{m} {p} {g}" for m, p, g in OPERATIONS]
)
def test_api_v1_never_fails_and_answers_its_schema(
    target: Target, method: str, path: str, mode: str
) -> None:
    _fuzz(
        target, method, path, mode, MAX_EXAMPLES, [not_a_server_error, response_schema_conformance]
    )


@pytest.mark.slow
# SQLite only: the routes and the fast path are the same code on both backends, and what
# PostgreSQL alone refuses (NUL, out-of-range numbers) meets the DataError handler, which
# tests/server/test_errors.py checks there. A 150-example random run on both found nothing.
@pytest.mark.parametrize("target", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("method", "path", "mode"),
    MLFLOW_OPERATIONS,
    ids=[f"{m} {p} {g}" for m, p, g in MLFLOW_OPERATIONS],
)
def test_mlflow_routes_never_fail(target: Target, method: str, path: str, mode: str) -> None:
    _fuzz(target, method, path, mode, MLFLOW_MAX_EXAMPLES, [not_a_server_error])


def _fuzz(
    target: Target, method: str, path: str, mode: str, examples: int, checks: list[Any]
) -> None:
    operation = target.schema[path][method]
    ids = {k: v for k, v in target.ids.items() if "{" + k + "}" in path}
    strategy = operation.as_strategy(
        GenerationMode.NEGATIVE if mode == "negative" else GenerationMode.POSITIVE,
        path_parameters=ids if mode == "existing" else None,
    )

    @given(case=strategy)
    @settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: schemathesis.Case) -> None:
        case.call_and_validate(checks=checks)

    fuzz()
