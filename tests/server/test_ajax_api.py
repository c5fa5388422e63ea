"""MLflow's ``/ajax-api/`` prefix serves every route ``/api/`` does, with the same answers."""

from __future__ import annotations

import warnings

from loopline.core.context import Context
from loopline.server.app import create_app

with warnings.catch_warnings():
    # Starlette asks for its httpx fork ("httpx2"); the test client works the same on httpx.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

LOCAL = "http://127.0.0.1:5000"


def test_the_ajax_api_prefix_reaches_the_same_routes(ctx: Context) -> None:
    client = TestClient(create_app(ctx), base_url=LOCAL)
    made = client.post("/ajax-api/2.0/mlflow/experiments/create", json={"name": "ajax"})
    assert made.status_code == 200, made.text
    eid = made.json()["experiment_id"]
    same = client.get("/api/2.0/mlflow/experiments/get", params={"experiment_id": eid})
    assert same.json()["experiment"]["name"] == "ajax"
    run = client.post(
        "/ajax-api/2.0/mlflow/runs/create", json={"experiment_id": eid, "start_time": 1}
    ).json()["run"]["info"]["run_id"]
    metric = {"run_id": run, "key": "loss", "value": 0.5, "timestamp": 1, "step": 0}
    assert client.post("/ajax-api/2.0/mlflow/runs/log-metric", json=metric).status_code == 200
    history = client.get(
        "/ajax-api/2.0/mlflow/metrics/get-history", params={"run_id": run, "metric_key": "loss"}
    ).json()
    assert [m["value"] for m in history["metrics"]] == [0.5]
    # Errors are MLflow's, as under /api/.
    missing = client.get("/ajax-api/2.0/mlflow/runs/get", params={"run_id": "0" * 32})
    assert missing.status_code == 404
    assert missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    # Loopline's own API and the artifact proxy answer under the prefix too.
    ours = client.get(f"/ajax-api/v1/runs/{run}")
    assert ours.status_code == 200 and ours.json() == client.get(f"/api/v1/runs/{run}").json()
    put = client.put(f"/ajax-api/2.0/mlflow-artifacts/artifacts/{eid}/a.txt", content=b"hi")
    assert put.status_code == 200, put.text
    assert client.get(f"/api/2.0/mlflow-artifacts/artifacts/{eid}/a.txt").content == b"hi"


def test_an_unknown_route_under_the_prefix_is_mlflows_404(ctx: Context) -> None:
    client = TestClient(create_app(ctx), base_url=LOCAL)
    answer = client.get("/ajax-api/2.0/mlflow/no-such-route")
    assert answer.status_code == 404
    assert answer.json()["error_code"] == "ENDPOINT_NOT_FOUND"
