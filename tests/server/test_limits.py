"""Input limits of ``loopline server``: body size (413 naming the limit and the setting),
artifact size, and MLflow's key and value lengths, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from loopline.tracking.validation import (
    MAX_KEY_LENGTH,
    MAX_PARAM_VALUE_LENGTH,
    MAX_TAG_VALUE_LENGTH,
)
from tests.server.conftest import start_server, stop_server

REQUEST_MB = 0.05  # 52,428 bytes
ARTIFACT_MB = 0.1  # 104,857 bytes


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """One server with tiny limits, so that going over them is cheap (the limit is in
    front of the store, so one backend is enough)."""
    folder = tmp_path_factory.mktemp("limits")
    proc, url = start_server(
        f"sqlite:///{folder / 'meta.db'}",
        str(folder / "artifacts"),
        {"LOOPLINE_MAX_REQUEST_MB": str(REQUEST_MB), "LOOPLINE_MAX_ARTIFACT_MB": str(ARTIFACT_MB)},
    )
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            yield client
    finally:
        stop_server(proc)


def _chunks(total: int, size: int = 8192) -> Iterator[bytes]:
    """A streamed body with no Content-Length (chunked), so only counting can stop it."""
    sent = 0
    while sent < total:
        yield b" " * min(size, total - sent)
        sent += size


def test_a_request_over_the_limit_is_a_413_naming_the_setting(small_server: httpx.Client) -> None:
    run = small_server.post("/api/v1/runs", json={"experiment": "limits"}).json()
    big = {"params": {f"p{i}": "x" * 1000 for i in range(60)}}
    declared = small_server.post(f"/api/v1/runs/{run['id']}/log-batch", json=big)
    assert declared.status_code == 413, declared.text
    error = declared.json()["error"]
    assert error["code"] == "PAYLOAD_TOO_LARGE" and error["field"] == "body"
    assert "0.05 MB" in error["message"] and "LOOPLINE_MAX_REQUEST_MB" in error["message"]
    streamed = small_server.post(f"/api/v1/runs/{run['id']}/log-batch", content=_chunks(200_000))
    assert streamed.status_code == 413, streamed.text
    # Nothing of the refused batches was applied; the server still answers.
    assert small_server.get(f"/api/v1/runs/{run['id']}").json()["params"] == {}


@pytest.mark.parametrize(
    "path", ["/api/v1/runs", "/api/2.0/mlflow/experiments/create", "/api/v1/experiments"]
)
def test_a_streamed_body_over_the_limit_on_a_json_route_is_a_413(
    small_server: httpx.Client, path: str
) -> None:
    """FastAPI's body reader caught the overflow and answered 400 'error parsing the body'."""
    answer = small_server.post(
        path, content=_chunks(200_000), headers={"content-type": "application/json"}
    )
    assert answer.status_code == 413, answer.text
    assert "LOOPLINE_MAX_REQUEST_MB" in answer.text
    assert small_server.get("/health").status_code == 200


def test_mlflow_clients_get_their_own_error_shape(small_server: httpx.Client) -> None:
    answer = small_server.post("/api/2.0/mlflow/experiments/create", json={"name": "x" * 100_000})
    assert answer.status_code == 413
    assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "LOOPLINE_MAX_REQUEST_MB" in answer.json()["message"]


def test_artifact_uploads_have_their_own_larger_limit(small_server: httpx.Client) -> None:
    run = small_server.post("/api/v1/runs", json={"experiment": "limits"}).json()
    url = f"/api/v1/runs/{run['id']}/artifacts/content"
    fits = small_server.put(url, params={"path": "a.bin"}, content=b"a" * 80_000)
    assert fits.status_code == 200, fits.text  # over the request limit, under the artifact one
    too_big = small_server.put(url, params={"path": "b.bin"}, content=_chunks(150_000))
    assert too_big.status_code == 413
    assert "LOOPLINE_MAX_ARTIFACT_MB" in too_big.json()["error"]["message"]
    mlflow = small_server.put(
        "/api/2.0/mlflow-artifacts/artifacts/1/x/c.bin", content=b"c" * 150_000
    )
    assert mlflow.status_code == 413
    listed = small_server.get(f"/api/v1/runs/{run['id']}/artifacts").json()["artifacts"]
    assert [a["path"] for a in listed if not a["path"].startswith("loopline/")] == ["a.bin"]


#: (id, log-batch body, the field the 422 names): one over each of MLflow's limits.
OVER_LIMITS = [
    ("param-key", {"params": {"k" * (MAX_KEY_LENGTH + 1): "v"}}, "param"),
    ("param-value", {"params": {"lr": "v" * (MAX_PARAM_VALUE_LENGTH + 1)}}, "params.lr"),
    ("tag-value", {"tags": {"team": "v" * (MAX_TAG_VALUE_LENGTH + 1)}}, "tags.team"),
    (
        "metric-key",
        {"metrics": {"keys": ["m" * (MAX_KEY_LENGTH + 1)], "values": [1.0]}},
        "metrics.keys[0]",
    ),
]


def test_key_and_value_lengths_are_mlflows(server_url: str) -> None:
    # One server for all cases: starting one per case would dominate the test's time.
    with httpx.Client(base_url=server_url, timeout=30) as client:
        run = client.post("/api/v1/runs", json={"experiment": "limits"}).json()
        for case, body, field in OVER_LIMITS:
            answer = client.post(f"/api/v1/runs/{run['id']}/log-batch", json=body)
            assert answer.status_code == 422, (case, answer.text)
            error = answer.json()["error"]
            assert error["field"] == field, (case, error)
            assert "over the limit" in error["message"], (case, error)
        stored = client.get(f"/api/v1/runs/{run['id']}").json()
        assert stored["params"] == {} and stored["latest_metrics"] == {}
        assert "team" not in stored["tags"]


def test_the_mlflow_limits_are_the_documented_ones() -> None:
    # https://mlflow.org/docs/latest/ (tracking REST API): key 250, param 6000, tag 8000.
    assert (MAX_KEY_LENGTH, MAX_PARAM_VALUE_LENGTH, MAX_TAG_VALUE_LENGTH) == (250, 6000, 8000)
