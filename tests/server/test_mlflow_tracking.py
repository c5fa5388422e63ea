"""The MLflow tracking routes read what a request sends as MLflow's server does, and no
looser: a value is refused with a 4xx naming its field, never coerced into another.

One ``loopline server`` per backend (SQLite, PostgreSQL) for the module; each test makes
its own experiment and runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from loopline.tracking.validation import MAX_FLOAT
from tests.tracking.backends import database, server


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def base_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The URL of one server per backend."""
    folder = tmp_path_factory.mktemp(request.param)
    with database(request.param, folder) as db_uri, server(db_uri, folder) as url:
        yield url


@pytest.fixture
def mlflow(base_url: str) -> Iterator[httpx.Client]:
    """A client of the server's MLflow-compatible API."""
    with httpx.Client(base_url=f"{base_url}/api/2.0/mlflow", timeout=60) as client:
        yield client


def _experiment(mlflow: httpx.Client) -> str:
    created = mlflow.post("/experiments/create", json={"name": f"e-{uuid.uuid4().hex}"})
    assert created.status_code == 200, created.text
    return str(created.json()["experiment_id"])


def _run(mlflow: httpx.Client, experiment: str | None = None) -> str:
    body = {"experiment_id": experiment or _experiment(mlflow)}
    created = mlflow.post("/runs/create", json=body)
    assert created.status_code == 200, created.text
    return str(created.json()["run"]["info"]["run_id"])


def _refused(answer: httpx.Response, field: str) -> str:
    """The message of a 4xx MLflow error, which names ``field``."""
    assert 400 <= answer.status_code < 500, answer.text
    body = answer.json()
    assert body["error_code"] == "INVALID_PARAMETER_VALUE", body
    message: str = body["message"]
    assert field in message, message
    return message


def _history(mlflow: httpx.Client, run_id: str, key: str) -> list[dict[str, Any]]:
    answer = mlflow.get("/metrics/get-history", params={"run_id": run_id, "metric_key": key})
    assert answer.status_code == 200, answer.text
    points: list[dict[str, Any]] = answer.json()["metrics"]
    return points


# What float() or pydantic's lax int would have read as a number the client never sent.
BAD_VALUES = ["1_000", "٣", " 5 ", "+3", "nan", "inf", "0x10", "", True, False, [1]]
BAD_INTS = [True, " 7 ", "+3", "1_0", "٣", "1.0", 1.5, 1.0, "", [1]]


@pytest.mark.parametrize("value", BAD_VALUES, ids=repr)
def test_a_metric_value_that_is_no_number_on_the_wire_is_refused(
    mlflow: httpx.Client, value: Any
) -> None:
    run_id = _run(mlflow)
    one = {"run_id": run_id, "key": "m", "value": value, "timestamp": 1, "step": 0}
    assert "value" in _refused(mlflow.post("/runs/log-metric", json=one), "value")
    batch = {"run_id": run_id, "metrics": [{"key": "m", "value": value, "timestamp": 1}]}
    _refused(mlflow.post("/runs/log-batch", json=batch), "metrics.0.value")
    assert _history(mlflow, run_id, "m") == []


@pytest.mark.parametrize("field", ["timestamp", "step"])
@pytest.mark.parametrize("number", BAD_INTS, ids=repr)
def test_a_step_or_timestamp_that_is_no_integer_on_the_wire_is_refused(
    mlflow: httpx.Client, field: str, number: Any
) -> None:
    run_id = _run(mlflow)
    one = {"run_id": run_id, "key": "m", "value": 1.0, "timestamp": 1, "step": 0, field: number}
    _refused(mlflow.post("/runs/log-metric", json=one), field)
    point = {"key": "m", "value": 1.0, field: number}
    batch = {"run_id": run_id, "metrics": [point]}
    _refused(mlflow.post("/runs/log-batch", json=batch), f"metrics.0.{field}")
    assert _history(mlflow, run_id, "m") == []


def test_what_protobuf_writes_is_read_back_as_sent(mlflow: httpx.Client) -> None:
    run_id = _run(mlflow)
    sent = [  # (value, as read back, step, as read back); infinities are stored as MLflow's
        ("NaN", "NaN", "3", 3),
        ("Infinity", MAX_FLOAT, "-2", -2),
        ("-Infinity", -MAX_FLOAT, 4, 4),
        ("1e3", 1000.0, "007", 7),
        (0.25, 0.25, 5, 5),
    ]
    for i, (value, _, step, _) in enumerate(sent):
        body = {"run_id": run_id, "key": f"m{i}", "value": value, "timestamp": "9", "step": step}
        assert mlflow.post("/runs/log-metric", json=body).status_code == 200
    for i, (_, value, _, step) in enumerate(sent):
        assert _history(mlflow, run_id, f"m{i}") == [
            {"key": f"m{i}", "value": value, "timestamp": 9, "step": step}
        ]


def test_start_and_end_times_are_integers_on_the_wire(mlflow: httpx.Client) -> None:
    experiment = _experiment(mlflow)
    created = mlflow.post("/runs/create", json={"experiment_id": experiment, "start_time": True})
    _refused(created, "start_time")
    run_id = _run(mlflow, experiment)
    ended = mlflow.post("/runs/update", json={"run_id": run_id, "end_time": " 5 "})
    _refused(ended, "end_time")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/experiments/search"),
        ("GET", "/experiments/search"),
        ("POST", "/runs/search"),
        ("POST", "/registered-models/search"),
        ("GET", "/registered-models/search"),
        ("POST", "/model-versions/search"),
        ("GET", "/model-versions/search"),
    ],
)
@pytest.mark.parametrize("max_results", [True, " 5", "+5", 5.0])
def test_max_results_is_a_whole_number_not_a_bool(
    mlflow: httpx.Client, method: str, path: str, max_results: Any
) -> None:
    body: dict[str, Any] = {"max_results": max_results, "experiment_ids": [_experiment(mlflow)]}
    if method == "GET":
        text = {True: "true"}.get(max_results, str(max_results))
        answer = mlflow.get(path, params={"max_results": text})
    else:
        answer = mlflow.post(path, json=body)
    _refused(answer, "max_results")


def test_max_results_of_loopline_searches_is_a_whole_number_not_a_bool(base_url: str) -> None:
    for path in ("/api/v1/experiments/search", "/api/v1/runs/search"):
        answer = httpx.post(f"{base_url}{path}", json={"max_results": True}, timeout=60)
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["field"] == "max_results"


BAD_VIEWS = ["DELETED_ONLYY", "all", "", "\x00", "x" * 200, 0, 4, " 2", True, 2.0, [2]]


@pytest.mark.parametrize("view", BAD_VIEWS, ids=lambda v: repr(v)[:20])
def test_an_unknown_view_type_is_refused_not_read_as_active_only(
    mlflow: httpx.Client, view: Any
) -> None:
    experiment = _experiment(mlflow)
    _run(mlflow, experiment)
    body = {"experiment_ids": [experiment], "run_view_type": view}
    message = _refused(mlflow.post("/runs/search", json=body), "run_view_type")
    assert "ACTIVE_ONLY, DELETED_ONLY or ALL" in message
    assert len(message) < 400  # the 200 x's are not all echoed
    _refused(mlflow.post("/experiments/search", json={"view_type": view}), "view_type")
    if isinstance(view, str) and "\x00" not in view:
        _refused(mlflow.get("/experiments/search", params={"view_type": view}), "view_type")


@pytest.mark.parametrize("view", ["DELETED_ONLY", 2, "2"], ids=repr)
def test_a_view_type_is_read_by_its_name_or_its_number(mlflow: httpx.Client, view: Any) -> None:
    experiment = _experiment(mlflow)
    kept, deleted = _run(mlflow, experiment), _run(mlflow, experiment)
    assert mlflow.post("/runs/delete", json={"run_id": deleted}).status_code == 200
    body = {"experiment_ids": [experiment], "run_view_type": view}
    found = mlflow.post("/runs/search", json=body).json()["runs"]
    assert [r["info"]["run_id"] for r in found] == [deleted]
    body["run_view_type"] = {"DELETED_ONLY": "ALL", 2: 3, "2": "3"}[view]
    found = mlflow.post("/runs/search", json=body).json()["runs"]
    assert {r["info"]["run_id"] for r in found} == {kept, deleted}
    gone = _experiment(mlflow)
    assert mlflow.post("/experiments/delete", json={"experiment_id": gone}).status_code == 200
    for answer in (
        mlflow.post("/experiments/search", json={"view_type": view}),
        mlflow.get("/experiments/search", params={"view_type": str(view)}),
    ):
        assert gone in [e["experiment_id"] for e in answer.json()["experiments"]], answer.text


def _dataset(**change: Any) -> dict[str, Any]:
    dataset = {"name": "churn", "digest": "d0", "source_type": "code", "source": "{}"}
    return {
        "dataset": {**dataset, **change},
        "tags": [{"key": "mlflow.data.context", "value": "train"}],
    }


#: (dataset input, the field the refusal names): NUL, control characters, MLflow's limits.
BAD_DATASETS = [
    (_dataset(name="a\x00b"), "datasets.0.dataset.name"),
    (_dataset(name="\x01\nb"), "datasets.0.dataset.name"),
    (_dataset(name="x" * 100_000), "datasets.0.dataset.name"),
    (_dataset(digest="d\x00"), "datasets.0.dataset.digest"),
    (_dataset(digest="d" * 37), "datasets.0.dataset.digest"),
    (_dataset(source_type="s\x00"), "datasets.0.dataset.source_type"),
    (_dataset(source_type="\x01\n"), "datasets.0.dataset.source_type"),
    (_dataset(source_type="s" * 37), "datasets.0.dataset.source_type"),
    ({**_dataset(), "tags": [{"key": "k" * 256, "value": "v"}]}, "datasets.0.tags.0.key"),
    ({**_dataset(), "tags": [{"key": "k", "value": "v" * 501}]}, "datasets.0.tags.0.value"),
]


@pytest.mark.parametrize(("item", "field"), BAD_DATASETS, ids=lambda v: repr(v)[:40])
def test_a_dataset_input_with_nul_control_characters_or_over_mlflows_limits_is_refused(
    mlflow: httpx.Client, item: dict[str, Any], field: str
) -> None:
    run_id = _run(mlflow)
    answer = mlflow.post("/runs/log-inputs", json={"run_id": run_id, "datasets": [item]})
    assert len(_refused(answer, field)) < 1000
    run = mlflow.get("/runs/get", params={"run_id": run_id}).json()["run"]
    assert run["inputs"] == {"dataset_inputs": []}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"run_name": "a\x01\nb"}, "name"),
        ({"run_name": "x\x1b[2J"}, "name"),
        ({"tags": [{"key": "mlflow.runName", "value": "x\x1b[2J"}]}, "name"),
        ({"user_id": "u\x1b[31m"}, "user_id"),
        ({"user_id": "u\x00"}, "user_id"),
    ],
    ids=[
        "control-in-name",
        "escape-in-name",
        "escape-in-name-tag",
        "escape-in-user",
        "nul-in-user",
    ],
)
def test_a_run_name_or_user_with_control_characters_is_refused(
    mlflow: httpx.Client, body: dict[str, Any], field: str
) -> None:
    experiment = _experiment(mlflow)
    _refused(mlflow.post("/runs/create", json={"experiment_id": experiment, **body}), field)
    found = mlflow.post("/runs/search", json={"experiment_ids": [experiment]}).json()
    assert found == {"runs": []}


def test_renaming_a_run_to_a_name_with_escapes_is_refused(mlflow: httpx.Client) -> None:
    run_id = _run(mlflow)
    _refused(mlflow.post("/runs/update", json={"run_id": run_id, "run_name": "x\x1b[2J"}), "name")
    tag = {"run_id": run_id, "key": "mlflow.runName", "value": "x\x1b[2J"}
    _refused(mlflow.post("/runs/set-tag", json=tag), "name")
    info = mlflow.get("/runs/get", params={"run_id": run_id}).json()["run"]
    assert "\x1b" not in info["info"]["run_name"]
    assert all("\x1b" not in t["value"] for t in info["data"]["tags"])


def test_a_run_name_keeps_tab_and_newline_as_in_mlflow(mlflow: httpx.Client) -> None:
    body = {"experiment_id": _experiment(mlflow), "run_name": "a\tb\nc"}
    created = mlflow.post("/runs/create", json=body)
    assert created.status_code == 200 and created.json()["run"]["info"]["run_name"] == "a\tb\nc"
