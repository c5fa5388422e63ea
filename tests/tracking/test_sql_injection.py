"""Search filters cannot inject SQL: the SDK, ``/api/v1``, the MLflow run search and the
MLflow registry search, on SQLite and PostgreSQL.

Every payload below would, pasted into SQL text, widen the result (``OR 1=1``), end the
statement and run another (``; DROP TABLE``), or hide the rest behind a comment. Each
filter's honest reading matches nothing, so the only right answers are a clear
``InvalidInput`` (400/422 over HTTP) or an empty result; afterwards every row is intact.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa
from sklearn.linear_model import LogisticRegression

import loopline as ll
from loopline.core.context import Context
from loopline.errors import InvalidInput
from loopline.server.app import create_app

#: (id, filter) on runs: injection in values and in backticked keys.
RUN_FILTERS = [
    ("or-true", "params.lr = 'nope' OR '1'='1'"),
    ("stacked-drop", "params.lr = 'nope'; DROP TABLE runs; --'"),
    ("escaped-quote", "params.lr = 'nope''; DROP TABLE runs; --'"),
    ("union", "params.lr = 'nope' UNION SELECT id FROM runs --'"),
    ("block-comment", "tags.team = 'nope' /* c */ OR 1=1"),
    ("line-comment", "tags.team = 'nope' -- ' OR 1=1"),
    ("backslash-escape", "params.lr = 'nope\\' OR 1=1 --'"),
    ("key-drop", "params.`lr'; DROP TABLE runs; --` = 'x'"),
    ("key-backtick", "tags.`team`` OR 1=1 --` = 'x'"),
    ("key-paren", "metrics.`auc) OR (1=1` > 0"),
    ("key-quote", 'params."lr"" OR 1=1 --" = \'x\''),
    ("like-or", "params.lr LIKE 'nope%' OR '1'='1'"),
    ("in-or", "attributes.run_id IN ('nope') OR 1=1"),
    ("semicolon-value", "attributes.run_name = 'x; DELETE FROM runs'"),
    ("nul", "params.lr = 'a\x00b'"),
]

#: (id, filter) on registered models and versions.
REGISTRY_FILTERS = [
    ("or-true", "name = 'nope' OR '1'='1'"),
    ("stacked-drop", "name = 'nope'; DROP TABLE registered_models; --'"),
    ("escaped-quote", "name = 'nope''; DROP TABLE registered_models; --'"),
    ("like-or", "name LIKE 'nope%' OR 1=1"),
    ("key-drop", "tags.`a'; DROP TABLE registered_models; --` = 'b'"),
    ("comment", "name = 'nope' -- ' OR 1=1"),
    ("nul", "name = 'a\x00b'"),
]

#: Tables whose row counts must not change.
TABLES = ["experiments", "runs", "params", "tags", "registered_models", "model_versions"]


def _counts(ctx: Context) -> dict[str, int]:
    with ctx.engine.connect() as conn:
        return {
            t: int(conn.execute(sa.text(f'SELECT COUNT(*) FROM "{t}"')).scalar_one())
            for t in TABLES
        }


@pytest.fixture
def seeded(ctx: Context) -> Iterator[Context]:
    """One run with a param, a tag and a metric, and one registered model."""
    frame = pd.DataFrame({"x": [0.0, 1.0]})
    with ll.start_run(experiment="inj") as run:
        run.log_params({"lr": "0.1"})
        run.set_tag("team", "risk")
        run.log_metric("auc", 0.9)
        run.log_model(LogisticRegression().fit(frame, [0, 1]), "model", input_example=frame)
    ll.registry.register(run, "churn")
    before = _counts(ctx)
    yield ctx
    assert _counts(ctx) == before, "a search changed the data"
    assert [r.id for r in ll.search_runs("inj", filter="params.lr = '0.1'")] == [run.id]


def test_sdk_search_runs_cannot_be_injected(seeded: Context) -> None:
    # One seeded store for all payloads (a store per payload would dominate the time);
    # the seeded fixture checks after the last one that every row is intact.
    for case, text in RUN_FILTERS:
        try:
            page = ll.search_runs("inj", filter=text)
        except InvalidInput as exc:
            assert exc.field == "filter", (case, exc)
        else:
            assert list(page) == [], case


def _call(ctx: Context, method: str, url: str, **kw: Any) -> httpx.Response:
    """One request to the real app, in process."""

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(ctx))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            return await c.request(method, url, **kw)

    return asyncio.run(go())


def _empty_or_4xx(case: str, answer: httpx.Response, items: str) -> None:
    assert answer.status_code in (200, 400, 422), (case, answer.text)
    if answer.status_code == 200:
        assert answer.json().get(items, []) == [], (case, answer.text)


def test_api_v1_run_search_cannot_be_injected(seeded: Context) -> None:
    for case, text in RUN_FILTERS:
        answer = _call(
            seeded, "POST", "/api/v1/runs/search", json={"experiments": ["inj"], "filter": text}
        )
        _empty_or_4xx(case, answer, "runs")
        if answer.status_code != 200:
            assert answer.json()["error"]["field"] == "filter", (case, answer.text)


def test_mlflow_run_search_cannot_be_injected(seeded: Context) -> None:
    exp = ll.search_runs("inj")[0].experiment_id
    for case, text in RUN_FILTERS:
        answer = _call(
            seeded,
            "POST",
            "/api/2.0/mlflow/runs/search",
            json={"experiment_ids": [str(exp)], "filter": text},
        )
        _empty_or_4xx(case, answer, "runs")
        if answer.status_code != 200:
            assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE", case


def test_mlflow_registry_search_cannot_be_injected(seeded: Context) -> None:
    for case, text in REGISTRY_FILTERS:
        for path, items in (
            ("/api/2.0/mlflow/registered-models/search", "registered_models"),
            ("/api/2.0/mlflow/model-versions/search", "model_versions"),
        ):
            _empty_or_4xx(case, _call(seeded, "GET", path, params={"filter": text}), items)
            _empty_or_4xx(case, _call(seeded, "POST", path, json={"filter": text}), items)
