"""The locust users of ``bench/bench_load.py`` (run by ``locust -f`` in its own process).

``LOAD_TARGET`` picks the workload:

* ``predict`` - ``POST LOAD_PATH`` with the JSON body in ``LOAD_BODY_FILE`` (one row);
* ``tracking`` - the MLflow REST API, as the MLflow client sends it: each user creates a
  run in experiment ``LOAD_EXPERIMENT_ID``, then ``log-metric`` (weight 4), ``log-batch``
  of 10 points (2), ``runs/search`` with a filter (2) and ``runs/get`` (2);
* ``api_v1`` - Loopline's own reads: ``GET /api/v1/runs/{id}`` (2), its
  ``metric-history`` (100 points, 1) and ``POST /api/v1/runs/search`` (1), on the run
  ``LOAD_RUN_ID`` of experiment ``LOAD_EXPERIMENT_NAME``.

Users wait for nothing between requests (closed loop: throughput is the server's limit or
the generator's, the same generator for every server). Every request's latency (float ms,
locust's own measure) is kept and written with the error counts to ``LOAD_SAMPLES`` as
JSON when locust quits, for exact percentiles (locust's CSV rounds them to whole ms).
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from locust import FastHttpUser, constant, events, task

TARGET = os.environ.get("LOAD_TARGET", "predict")
_latencies: dict[str, list[float]] = defaultdict(list)
_errors: dict[str, int] = defaultdict(int)
_span: list[float] = [float("inf"), 0.0]  # first request start, last request end (s)


@events.request.add_listener
def _record(
    name: str,
    response_time: float,
    exception: BaseException | None,
    start_time: float,
    **_: Any,
) -> None:
    if exception is None:
        _latencies[name].append(response_time)
    else:
        _errors[f"{name}: {type(exception).__name__}: {exception}"[:200]] += 1
    _span[0] = min(_span[0], start_time)
    _span[1] = max(_span[1], start_time + response_time / 1000)


@events.quitting.add_listener
def _write(**_: Any) -> None:
    out = os.environ.get("LOAD_SAMPLES")
    if out:
        payload = {"latencies_ms": _latencies, "errors": _errors, "span_s": _span[1] - _span[0]}
        Path(out).write_text(json.dumps(payload))


def _now() -> int:
    return int(time.time() * 1000)


class PredictUser(FastHttpUser):
    """One-row predictions."""

    wait_time = constant(0)
    abstract = TARGET != "predict"

    def on_start(self) -> None:
        self.path = os.environ["LOAD_PATH"]
        self.body = Path(os.environ["LOAD_BODY_FILE"]).read_bytes()

    @task
    def predict(self) -> None:
        self.client.post(
            self.path,
            data=self.body,
            headers={"Content-Type": "application/json"},
            name="predict",
        )


class TrackingUser(FastHttpUser):
    """The MLflow client's requests: log metrics one by one and in batches, search, get."""

    wait_time = constant(0)
    abstract = TARGET != "tracking"
    api = "/api/2.0/mlflow"

    def on_start(self) -> None:
        self.experiment_id = os.environ["LOAD_EXPERIMENT_ID"]
        answer = self.client.post(
            f"{self.api}/runs/create",
            json={"experiment_id": self.experiment_id, "start_time": _now()},
            name="runs/create",
        )
        self.run_id = answer.json()["run"]["info"]["run_id"]
        self.step = 0

    @task(4)
    def log_metric(self) -> None:
        self.step += 1
        self.client.post(
            f"{self.api}/runs/log-metric",
            json={
                "run_id": self.run_id,
                "key": "m",
                "value": random.random(),
                "timestamp": _now(),
                "step": self.step,
            },
            name="runs/log-metric",
        )

    @task(2)
    def log_batch(self) -> None:
        now = _now()
        self.step += 1
        metrics = [
            {"key": f"k{i}", "value": random.random(), "timestamp": now, "step": self.step}
            for i in range(10)
        ]
        self.client.post(
            f"{self.api}/runs/log-batch",
            json={"run_id": self.run_id, "metrics": metrics},
            name="runs/log-batch",
        )

    @task(2)
    def search(self) -> None:
        self.client.post(
            f"{self.api}/runs/search",
            json={
                "experiment_ids": [self.experiment_id],
                "filter": "metrics.m > 0.5",
                "max_results": 50,
            },
            name="runs/search",
        )

    @task(2)
    def get(self) -> None:
        self.client.get(f"{self.api}/runs/get?run_id={self.run_id}", name="runs/get")


class ApiV1User(FastHttpUser):
    """Loopline's REST API reads."""

    wait_time = constant(0)
    abstract = TARGET != "api_v1"

    def on_start(self) -> None:
        self.run_id = os.environ["LOAD_RUN_ID"]
        self.experiment = os.environ["LOAD_EXPERIMENT_NAME"]

    @task(2)
    def get_run(self) -> None:
        self.client.get(f"/api/v1/runs/{self.run_id}", name="v1 runs/{id}")

    @task(1)
    def history(self) -> None:
        self.client.get(
            f"/api/v1/runs/{self.run_id}/metric-history?key=h", name="v1 runs/{id}/metric-history"
        )

    @task(1)
    def search(self) -> None:
        self.client.post(
            "/api/v1/runs/search",
            json={"experiments": [self.experiment], "filter": "metrics.h > 0.5", "max_results": 50},
            name="v1 runs/search",
        )
