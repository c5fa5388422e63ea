"""The MLflow side of bench_tracking: runs in the anchor venv (bench/.envs/mlflow).

Usage: python mlflow_tracking.py MODE TRACKING_URI [RECORDING]
Modes: log_metric, log_batch, runs_search, mixed. Prints one JSON line of figures.
``mixed`` with RECORDING also writes every exchange's method, path, status and answer
there, for ``bench/replay_server.py``.
"""

from __future__ import annotations

import json
import sys
import time

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric


def log_metric(uri: str, calls: int = 2000) -> dict[str, float]:
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("bench-log-metric")
    with mlflow.start_run():
        start = time.perf_counter()
        for i in range(calls):
            mlflow.log_metric("loss", 1.0 / (i + 1), step=i)
        elapsed = time.perf_counter() - start
    return {"calls": calls, "seconds": elapsed, "us_per_call": elapsed / calls * 1e6}


def log_batch(uri: str, steps: int = 1000, metrics: int = 100) -> dict[str, float]:
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment(f"bench-log-batch-{time.time_ns()}")
    run = client.create_run(exp)
    ts = int(time.time() * 1000)
    points = [
        Metric(f"m{k}", float(k * step), ts, step) for step in range(steps) for k in range(metrics)
    ]
    start = time.perf_counter()
    for i in range(0, len(points), 1000):
        client.log_batch(run.info.run_id, metrics=points[i : i + 1000])
    elapsed = time.perf_counter() - start
    return {"points": len(points), "seconds": elapsed, "points_per_s": len(points) / elapsed}


def runs_search(uri: str, runs: int = 1000) -> dict[str, float]:
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment(f"bench-runs-{time.time_ns()}")
    start = time.perf_counter()
    for i in range(runs):
        run = client.create_run(exp)
        rid = run.info.run_id
        client.log_batch(
            rid,
            params=[
                mlflow.entities.Param("model", "lgbm" if i % 2 else "rf"),
                mlflow.entities.Param("depth", str(i % 10)),
            ],
            metrics=[
                Metric("auc", (i % 100) / 100, 0, 0),
                Metric("loss", 1 - (i % 100) / 100, 0, 0),
            ],
        )
        client.set_terminated(rid)
    create = time.perf_counter() - start
    times = []
    for _ in range(5):
        start = time.perf_counter()
        found = client.search_runs(
            [exp],
            "metrics.auc > 0.5 and params.model = 'lgbm'",
            order_by=["metrics.auc DESC"],
            max_results=1000,
        )
        times.append(time.perf_counter() - start)
    return {
        "runs": runs,
        "create_seconds": create,
        "search_seconds": times[0],
        "search_seconds_median": sorted(times)[2],
        "found": len(found),
    }


def _timing_http(exchanges: list[list[object]] | None = None) -> list[float]:
    """Time every HTTP exchange of the MLflow client from now on; returns where their time
    and their count add up. With ``exchanges``, each one's method, path, status and answer
    is appended to it (after its time is taken).

    What the script spends outside them is the client's own work: no server can make the
    script faster than that.
    """
    from urllib.parse import urlsplit

    import requests

    spent = [0.0, 0.0]
    send = requests.Session.send

    def timed(self: requests.Session, request: requests.PreparedRequest, **kw: object) -> object:
        started = time.perf_counter()
        try:
            response = send(self, request, **kw)
        finally:
            spent[0] += time.perf_counter() - started
            spent[1] += 1
        if exchanges is not None:
            path = urlsplit(request.url).path
            exchanges.append([request.method, path, response.status_code, response.text])
        return response

    requests.Session.send = timed  # type: ignore[method-assign,assignment]
    return spent


def mixed(uri: str, recording: str | None = None) -> dict[str, float]:
    """One script a user might run: runs, params, metrics one by one and batched, tags, search."""
    client = MlflowClient(tracking_uri=uri)
    mlflow.set_tracking_uri(uri)
    exchanges: list[list[object]] | None = None if recording is None else []
    in_http = _timing_http(exchanges)
    start = time.perf_counter()
    exp_name = f"bench-mixed-{time.time_ns()}"
    mlflow.set_experiment(exp_name)
    for r in range(10):
        with mlflow.start_run(run_name=f"trial-{r}") as run:
            mlflow.log_params({"lr": 0.1 * (r + 1), "depth": r, "model": "gbm"})
            mlflow.set_tags({"stage": "bench", "trial": str(r)})
            for step in range(50):
                mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
            ts = int(time.time() * 1000)
            client.log_batch(
                run.info.run_id,
                metrics=[
                    Metric(f"m{k}", float(k * s), ts, s) for s in range(20) for k in range(50)
                ],
            )
            with mlflow.start_run(nested=True, run_name="child"):
                mlflow.log_metric("child_metric", 1.0)
    exp = client.get_experiment_by_name(exp_name)
    found = client.search_runs(
        [exp.experiment_id], "params.model = 'gbm'", order_by=["metrics.loss ASC"]
    )
    elapsed = time.perf_counter() - start
    if recording is not None:
        with open(recording, "w") as f:
            json.dump(exchanges, f)
    return {
        "seconds": elapsed,
        "runs_found": len(found),
        "exchanges": int(in_http[1]),
        "http_seconds": in_http[0],
        "client_seconds": elapsed - in_http[0],
    }


if __name__ == "__main__":
    mode, uri, extra = sys.argv[1], sys.argv[2], sys.argv[3:]
    result = {
        "log_metric": log_metric,
        "log_batch": log_batch,
        "runs_search": runs_search,
        "mixed": mixed,
    }[mode](uri, *extra)
    print(json.dumps(result))
