"""The fast path's parsers: what they take, and everything they leave to FastAPI."""

from __future__ import annotations

from functools import partial

import pytest

from loopline.server import fast_routes
from loopline.tracking.entities import Metric

RUN = "0123456789abcdef0123456789abcdef"


def test_a_plain_log_batch_becomes_the_call_the_route_makes() -> None:
    body = (
        b'{"run_id": "%s", "metrics": [{"key": "loss", "value": 1, "timestamp": 5}],'
        b' "params": [{"key": "lr", "value": "0.1"}, {"key": "empty"}],'
        b' "tags": [{"key": "team", "value": null}]}' % RUN.encode()
    )
    operation = fast_routes.log_batch(body, b"")
    assert isinstance(operation, partial)
    assert operation.keywords == {
        "run_id": RUN,
        "metrics": [Metric("loss", 1.0, 5, 0)],
        "params": [("lr", "0.1"), ("empty", "")],
        "tags": [("team", "")],
    }


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'{"run_id": "R", "surprise": 1}',
        b'{"run_id": 5}',
        b'{"run_id": "R", "metrics": {"key": "loss"}}',
        b'{"run_id": "R", "metrics": [{"key": "loss", "value": "NaN"}]}',
        b'{"run_id": "R", "metrics": [{"key": "loss", "value": true}]}',
        b'{"run_id": "R", "metrics": [{"key": "loss", "value": 1.0, "step": 1.5}]}',
        b'{"run_id": "R", "metrics": [{"key": "loss", "value": 1.0, "timestamp": "5"}]}',
        b'{"run_id": "R", "params": [{"key": "lr", "value": 0.1}]}',
        b'{"run_id": "R", "tags": [{"key": 1, "value": "x"}]}',
        b'{"run_id": "R", "tags": [{"key": "a", "value": "x", "more": 1}]}',
        b'{"run_id": "R", "metrics": [{"key": "acc", "value": 0.9, "model_id": "m-1"}]}',
        b'{"run_id": "R", "metrics": [{"key": "acc", "value": 1, "dataset_name": "train"}]}',
    ],
    ids=[
        "not-json",
        "not-an-object",
        "unknown-field",
        "run-id-number",
        "metrics-not-a-list",
        "nan-string",
        "bool-value",
        "float-step",
        "string-timestamp",
        "number-param-value",
        "number-tag-key",
        "unknown-tag-field",
        "linked-to-a-logged-model",  # the FastAPI route stores the link
        "on-a-dataset",
    ],
)
def test_anything_unusual_in_a_log_batch_is_left_to_fastapi(body: bytes) -> None:
    assert fast_routes.log_batch(body, b"") is None


@pytest.mark.parametrize(
    ("parser", "body"),
    [
        (fast_routes.log_metric, b'{"key": "loss", "value": 1.0}'),
        (fast_routes.log_metric, b'{"run_id": "", "key": "loss", "value": 1.0}'),
        (fast_routes.log_metric, b'{"run_id": "R", "key": "loss", "value": "Infinity"}'),
        (fast_routes.log_metric, b'{"run_id": "R", "key": "acc", "value": 1, "model_id": "m"}'),
        (fast_routes.log_parameter, b'{"run_id": "R", "key": "lr", "value": 0.1}'),
        (fast_routes.set_tag, b'{"run_id": "R", "key": "a"}'),
        (fast_routes.create_run, b'{"experiment_id": 1}'),
        (fast_routes.create_run, b'{"start_time": "now"}'),
        (fast_routes.update_run, b'{"run_id": "R", "end_time": 1.0}'),
        (fast_routes.update_run, b'{"run_id": "R", "status": 3}'),
    ],
    ids=[
        "metric-no-run",
        "metric-empty-run",
        "metric-infinity-string",
        "metric-linked-to-a-logged-model",
        "param-number",
        "tag-no-value",
        "create-number-experiment",
        "create-string-start",
        "update-float-end",
        "update-number-status",
    ],
)
def test_unusual_bodies_of_the_other_routes_are_left_to_fastapi(
    parser: fast_routes.Parser, body: bytes
) -> None:
    assert parser(body, b"") is None


@pytest.mark.parametrize(
    ("parser", "query", "expected"),
    [
        (fast_routes.get_run, b"run_id=R&run_uuid=R", {"run_id": "R"}),
        (fast_routes.get_run, b"run_uuid=U", {"run_id": "U"}),
        (fast_routes.get_run, b"run_id=a%2Fb", {"run_id": "a/b"}),
        (fast_routes.get_run, b"run_id=A&run_id=B", None),
        (fast_routes.get_run, b"run_id=R&other=1", None),
        (fast_routes.get_experiment_by_name, b"experiment_name=my+exp", {"name": "my exp"}),
        (fast_routes.get_experiment_by_name, b"", None),
        (fast_routes.get_experiment, b"experiment_id=3", {"raw_id": "3"}),
        (fast_routes.get_experiment, b"experiment=3", None),
    ],
    ids=[
        "both-ids",
        "uuid-only",
        "escaped",
        "repeated",
        "unknown-parameter",
        "name",
        "name-missing",
        "experiment",
        "experiment-misspelt",
    ],
)
def test_query_strings_are_read_as_starlette_reads_them(
    parser: fast_routes.Parser, query: bytes, expected: dict[str, str] | None
) -> None:
    operation = parser(b"", query)
    if expected is None:
        assert operation is None
    else:
        assert isinstance(operation, partial) and operation.keywords == expected


def test_every_fast_route_is_an_mlflow_route_of_the_app() -> None:
    from fastapi.routing import APIRoute

    from loopline.server import (
        mlflow_experiments,
        mlflow_metric_history,
        mlflow_run_lineage,
        mlflow_runs,
    )

    modules = (mlflow_experiments, mlflow_runs, mlflow_run_lineage, mlflow_metric_history)
    routes = [r for m in modules for r in m.router.routes if isinstance(r, APIRoute)]
    served = {(m, r.path) for r in routes for m in r.methods or ()}
    for method, path in fast_routes.ROUTES:
        assert (method, path) in served, (method, path)
