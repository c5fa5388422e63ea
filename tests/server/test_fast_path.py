"""The fast path answers MLflow's frequent routes exactly as the FastAPI routes do.

Every case is sent twice to a real ``loopline server`` (SQLite and PostgreSQL): once as the
MLflow client sends it, which the fast path answers, and once with one field more (an
unknown body field, an unknown query parameter), which the fast path leaves to FastAPI
(both ignore unknown fields). Status, answer and the stored run must be the same.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from loopline.core import audit
from loopline.core.db import create_engine_for
from loopline.tracking import experiments, run_data
from tests.server.conftest import start_server, stop_server
from tests.tracking.backends import database, server

SLOW_FIELD = "extra_field_for_the_slow_path"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def mlflow(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    """A client of the MLflow-compatible API of one server per backend."""
    folder = tmp_path_factory.mktemp(request.param)
    with (
        database(request.param, folder) as db_uri,
        server(db_uri, folder) as url,
        httpx.Client(base_url=f"{url}/api/2.0/mlflow", timeout=120) as client,
    ):
        yield client


@dataclass
class Case:
    """One request; ``runs`` collects the ids it made, so that answers can be compared."""

    client: httpx.Client
    experiment: str
    runs: list[str] = field(default_factory=list)

    def new_run(self, **extra: Any) -> str:
        body = {"experiment_id": self.experiment, "start_time": 1000, "run_name": "r", **extra}
        answer = self.client.post("/runs/create", json=body)
        assert answer.status_code == 200, answer.text
        run_id: str = answer.json()["run"]["info"]["run_id"]
        self.runs.append(run_id)
        return run_id


Request = tuple[str, str, dict[str, Any]]  # method, path, JSON body or query parameters


def _create(c: Case) -> Request:
    tags = [{"key": "mlflow.user", "value": "ada"}, {"key": "mlflow.source.name", "value": "t.py"}]
    body = {"experiment_id": c.experiment, "user_id": "ada", "run_name": "trial", "tags": tags}
    return "POST", "/runs/create", {**body, "start_time": 1234}


CASES: dict[str, Callable[[Case], Request]] = {
    "create-run": _create,
    "create-run-named-by-tag": lambda c: (
        "POST",
        "/runs/create",
        {
            "experiment_id": c.experiment,
            "start_time": 1,
            "tags": [{"key": "mlflow.runName", "value": "n"}],
        },
    ),
    "create-run-unknown-experiment": lambda c: ("POST", "/runs/create", {"experiment_id": "98765"}),
    "create-run-bad-experiment-id": lambda c: ("POST", "/runs/create", {"experiment_id": "abc"}),
    "create-run-bad-name": lambda c: (
        "POST",
        "/runs/create",
        {"experiment_id": c.experiment, "run_name": "x" * 1000},
    ),
    "update-run": lambda c: (
        "POST",
        "/runs/update",
        {"run_id": c.new_run(), "status": "FINISHED", "end_time": 2000},
    ),
    "update-run-by-uuid": lambda c: (
        "POST",
        "/runs/update",
        {"run_uuid": c.new_run(), "status": "KILLED", "run_name": "renamed"},
    ),
    "update-run-no-id": lambda c: ("POST", "/runs/update", {"status": "FINISHED"}),
    "update-run-bad-status": lambda c: (
        "POST",
        "/runs/update",
        {"run_id": c.new_run(), "status": "DONE"},
    ),
    "update-run-unknown": lambda c: ("POST", "/runs/update", {"run_id": "0" * 32}),
    "get-run": lambda c: ("GET", "/runs/get", {"run_id": c.new_run(), "run_uuid": "ignored"}),
    "get-run-empty-id": lambda c: ("GET", "/runs/get", {"run_id": ""}),
    "get-run-unknown": lambda c: ("GET", "/runs/get", {"run_uuid": "0" * 32}),
    "log-batch": lambda c: (
        "POST",
        "/runs/log-batch",
        {
            "run_id": c.new_run(),
            "metrics": [
                {"key": "loss", "value": 0.5, "timestamp": 7, "step": 1},
                {"key": "acc", "value": 1, "timestamp": 7},
            ],
            "params": [{"key": "lr", "value": "0.1"}, {"key": "empty"}],
            "tags": [{"key": "team", "value": "risk"}],
        },
    ),
    "log-batch-unknown-run": lambda c: ("POST", "/runs/log-batch", {"run_id": "0" * 32}),
    "log-batch-bad-key": lambda c: (
        "POST",
        "/runs/log-batch",
        {"run_id": c.new_run(), "params": [{"key": "a/../b", "value": "1"}]},
    ),
    "log-batch-param-changed": lambda c: (
        "POST",
        "/runs/log-batch",
        {
            "run_id": c.new_run(),
            "params": [{"key": "lr", "value": "0.1"}, {"key": "lr", "value": "0.2"}],
        },
    ),
    "log-metric": lambda c: (
        "POST",
        "/runs/log-metric",
        {"run_uuid": c.new_run(), "key": "loss", "value": 2, "timestamp": 5, "step": 3},
    ),
    "log-parameter": lambda c: (
        "POST",
        "/runs/log-parameter",
        {"run_id": c.new_run(), "key": "depth", "value": "7"},
    ),
    "log-parameter-unknown-run": lambda c: (
        "POST",
        "/runs/log-parameter",
        {"run_id": "0" * 32, "key": "depth", "value": "7"},
    ),
    "set-tag": lambda c: (
        "POST",
        "/runs/set-tag",
        {"run_id": c.new_run(), "key": "stage", "value": "candidate"},
    ),
    "set-tag-renames": lambda c: (
        "POST",
        "/runs/set-tag",
        {"run_id": c.new_run(), "key": "mlflow.runName", "value": "better"},
    ),
    "get-by-name": lambda c: ("GET", "/experiments/get-by-name", {"experiment_name": "Default"}),
    "get-by-name-missing": lambda c: (
        "GET",
        "/experiments/get-by-name",
        {"experiment_name": "no-such-experiment"},
    ),
    "get-experiment": lambda c: ("GET", "/experiments/get", {"experiment_id": c.experiment}),
    "get-experiment-bad-id": lambda c: ("GET", "/experiments/get", {"experiment_id": "abc"}),
}


def _send(client: httpx.Client, request: Request, *, slow: bool) -> httpx.Response:
    method, path, data = request
    if method == "GET":
        params = {**data, SLOW_FIELD: "1"} if slow else data
        return client.get(path, params=params)
    return client.post(path, json={**data, SLOW_FIELD: 1} if slow else data)


def _normal(value: Any, case: Case) -> Any:
    """``value`` with the case's run ids written as their order of creation."""
    text = orjson.dumps(value).decode()
    for i, run_id in enumerate(case.runs):
        text = text.replace(run_id, f"RUN{i}")
    return orjson.loads(text)


@pytest.mark.parametrize("name", list(CASES), ids=list(CASES))
def test_the_fast_path_answers_like_the_fastapi_route(mlflow: httpx.Client, name: str) -> None:
    created = mlflow.post("/experiments/create", json={"name": f"fast-{uuid.uuid4().hex}"})
    experiment = created.json()["experiment_id"]
    outcomes = []
    for slow in (False, True):
        case = Case(mlflow, experiment)
        answer = _send(mlflow, CASES[name](case), slow=slow)
        body = answer.json()
        if "run" in body:  # a created run is one more id to write in its place
            case.runs.append(body["run"]["info"]["run_id"])
        stored = [mlflow.get("/runs/get", params={"run_id": r}).json() for r in case.runs]
        outcomes.append((answer.status_code, _normal(body, case), _normal(stored, case)))
    assert outcomes[0] == outcomes[1]
    status, body, _stored = outcomes[0]
    if status != 200:
        assert 400 <= status < 500 and body["error_code"] and body["message"], body


def test_the_fast_path_writes_what_it_acknowledges(mlflow: httpx.Client) -> None:
    created = mlflow.post("/experiments/create", json={"name": f"fast-{uuid.uuid4().hex}"})
    case = Case(mlflow, created.json()["experiment_id"])
    run_id = case.new_run()
    metrics = [
        {"key": f"m{k}", "value": float(k), "timestamp": 9, "step": s}
        for s in range(20)
        for k in range(50)
    ]  # MLflow's largest batch, 1,000 points, as the mixed benchmark sends it
    batch = mlflow.post("/runs/log-batch", json={"run_id": run_id, "metrics": metrics})
    assert batch.status_code == 200 and batch.json() == {}
    history = mlflow.get("/metrics/get-history", params={"run_id": run_id, "metric_key": "m7"})
    assert [p["step"] for p in history.json()["metrics"]] == list(range(20))
    assert {p["value"] for p in history.json()["metrics"]} == {7.0}
    ended = mlflow.post("/runs/update", json={"run_id": run_id, "status": "FINISHED"})
    assert ended.json()["run_info"]["status"] == "FINISHED"
    run = mlflow.get("/runs/get", params={"run_id": run_id}).json()["run"]
    assert run["info"]["status"] == "FINISHED" and len(run["data"]["metrics"]) == 50


def test_a_body_over_the_request_limit_is_refused_on_the_fast_path_too(
    tmp_path: Path,
) -> None:
    # The fast path stands in front of the body limit: it must not accept what it refuses.
    env = {"LOOPLINE_MAX_REQUEST_MB": "0.01"}
    proc, url = start_server(f"sqlite:///{tmp_path / 'meta.db'}", str(tmp_path / "art"), env)
    try:
        with httpx.Client(base_url=f"{url}/api/2.0/mlflow", timeout=60) as client:
            run = client.post("/runs/create", json={"experiment_id": "0"}).json()["run"]
            run_id = run["info"]["run_id"]
            metrics = [{"key": "loss", "value": 0.5, "timestamp": 1, "step": s} for s in range(300)]
            answer = client.post("/runs/log-batch", json={"run_id": run_id, "metrics": metrics})
            assert answer.status_code == 413, answer.text
            assert "LOOPLINE_MAX_REQUEST_MB" in answer.json()["message"]
            small = client.post("/runs/log-batch", json={"run_id": run_id, "metrics": metrics[:5]})
            assert small.status_code == 200, small.text
            history = client.get(
                "/metrics/get-history", params={"run_id": run_id, "metric_key": "loss"}
            )
            assert [p["step"] for p in history.json()["metrics"]] == [0, 1, 2, 3, 4]
    finally:
        stop_server(proc)


@pytest.mark.parametrize("content_type", [None, "text/plain"], ids=["untyped", "text"])
def test_a_body_not_sent_as_json_is_refused_as_the_fastapi_route_refuses_it(
    mlflow: httpx.Client, content_type: str | None
) -> None:
    # What a page on another site can make a browser send without asking the server first
    # (fetch with mode "no-cors", a form): the fast path took it, and a run was created on
    # a server without --auth by any web page its user opened.
    created = mlflow.post("/experiments/create", json={"name": f"csrf-{uuid.uuid4().hex}"})
    experiment = created.json()["experiment_id"]
    run_id = Case(mlflow, experiment).new_run()
    headers = {"Content-Type": content_type} if content_type else {}
    requests = [
        ("/runs/create", {"experiment_id": experiment, "run_name": "from-elsewhere"}),
        ("/runs/log-metric", {"run_id": run_id, "key": "m", "value": 1.0, "timestamp": 1}),
        ("/runs/log-parameter", {"run_id": run_id, "key": "p", "value": "1"}),
        ("/runs/set-tag", {"run_id": run_id, "key": "t", "value": "1"}),
        ("/runs/log-batch", {"run_id": run_id, "params": [{"key": "b", "value": "1"}]}),
        ("/runs/update", {"run_id": run_id, "status": "KILLED"}),
    ]
    for path, body in requests:
        request = mlflow.build_request("POST", path, content=orjson.dumps(body), headers=headers)
        request.headers.pop("Content-Type", None)
        if content_type:
            request.headers["Content-Type"] = content_type
        answer = mlflow.send(request)
        assert answer.status_code == 400, (path, answer.text)
        assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE", answer.text
        assert "Content-Type: application/json" in answer.json()["message"], answer.text
    found = mlflow.post("/runs/search", json={"experiment_ids": [experiment]}).json()["runs"]
    assert [r["info"]["run_id"] for r in found] == [run_id]
    run = found[0]
    assert run["info"]["status"] == "RUNNING"
    assert not run["data"].get("metrics") and not run["data"].get("params")
    assert {t["key"] for t in run["data"].get("tags", [])} <= {"mlflow.runName"}


def test_a_point_sent_twice_is_stored_once_on_either_path(mlflow: httpx.Client) -> None:
    # MLflow's client sends a log-batch again after a timeout, a 5xx or a 429; its server
    # stores a point once (the point is its metrics table's primary key), and so must ours.
    created = mlflow.post("/experiments/create", json={"name": f"fast-{uuid.uuid4().hex}"})
    run_id = Case(mlflow, created.json()["experiment_id"]).new_run()
    point = {"run_id": run_id, "key": "loss", "value": 0.5, "timestamp": 7, "step": 1}
    for slow in (False, True, False):  # the fast path, FastAPI's route, the fast path again
        answer = _send(mlflow, ("POST", "/runs/log-metric", point), slow=slow)
        assert answer.status_code == 200, answer.text
    metrics = [
        {"key": "loss", "value": v, "timestamp": 7, "step": 1} for v in (0.5, 0.25, 0.25)
    ] + [{"key": "loss", "value": "NaN", "timestamp": 8, "step": 2}]
    batch = {"run_id": run_id, "metrics": metrics}
    for slow in (False, False, True):  # a retried batch, on both paths
        answer = _send(mlflow, ("POST", "/runs/log-batch", batch), slow=slow)
        assert answer.status_code == 200, answer.text
    history = mlflow.get("/metrics/get-history", params={"run_id": run_id, "metric_key": "loss"})
    points = [(p["step"], p["timestamp"], p["value"]) for p in history.json()["metrics"]]
    assert points == [(1, 7, 0.5), (1, 7, 0.25), (2, 8, "NaN")]
    run = mlflow.get("/runs/get", params={"run_id": run_id}).json()["run"]
    assert run["data"]["metrics"] == [{"key": "loss", "value": "NaN", "timestamp": 8, "step": 2}]


@contextmanager
def _sqlite_server_and_run(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A real ``loopline server`` on a SQLite file in ``tmp_path`` (``meta.db``): the base
    URL of its MLflow API and a new run's id; the server stops after the block."""
    proc, url = start_server(f"sqlite:///{tmp_path / 'meta.db'}", str(tmp_path / "art"))
    try:
        base = f"{url}/api/2.0/mlflow"
        with httpx.Client(base_url=base, timeout=60) as client:
            run = client.post("/runs/create", json={"experiment_id": "0"}).json()["run"]
        yield base, run["info"]["run_id"]
    finally:
        stop_server(proc)


def test_a_write_waits_for_another_writers_lock_and_is_stored_once(tmp_path: Path) -> None:
    # On SQLite a write runs on the server's event loop with a busy timeout of 0: while
    # another process holds the write lock it must go to the thread pool, wait there as
    # before, and be stored - not fail, not block, not be stored twice.
    db = tmp_path / "meta.db"
    with (
        _sqlite_server_and_run(tmp_path) as (base, run_id),
        httpx.Client(base_url=base, timeout=60) as client,
    ):
        point = {"run_id": run_id, "key": "loss", "timestamp": 5}
        before = client.post("/runs/log-metric", json={**point, "value": 0.5, "step": 0})
        assert before.status_code == 200, before.text
        holder = sqlite3.connect(db, isolation_level=None, timeout=30, check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")
        released = threading.Timer(1.0, holder.execute, ("COMMIT",))
        released.start()
        started = time.monotonic()
        waited = client.post("/runs/log-metric", json={**point, "value": 0.25, "step": 1})
        took = time.monotonic() - started
        released.join()
        holder.close()
        assert waited.status_code == 200, waited.text
        assert took >= 0.9, f"answered in {took:.2f} s while the lock was held"
        tag = client.post("/runs/set-tag", json={"run_id": run_id, "key": "k", "value": "v"})
        assert tag.status_code == 200, tag.text
        history = client.get(
            "/metrics/get-history", params={"run_id": run_id, "metric_key": "loss"}
        ).json()["metrics"]
        assert [(p["step"], p["value"]) for p in history] == [(0, 0.5), (1, 0.25)]
        tags = client.get("/runs/get", params={"run_id": run_id}).json()["run"]["data"]
        assert {"key": "k", "value": "v"} in tags["tags"]


def test_a_sqlite_write_runs_on_the_event_loop_and_other_requests_still_go_on(
    tmp_path: Path,
) -> None:
    # Writes on the loop must not keep other requests from being answered: 8 clients send
    # writes and reads at once; every write is stored exactly once.
    with _sqlite_server_and_run(tmp_path) as (base, run_id):

        def log(worker: int) -> list[int]:
            statuses = []
            with httpx.Client(base_url=base, timeout=60) as mine:
                for step in range(25):
                    point = {"key": f"w{worker}", "value": float(step), "timestamp": 1}
                    sent = mine.post(
                        "/runs/log-metric", json={"run_id": run_id, **point, "step": step}
                    )
                    statuses.append(sent.status_code)
                    statuses.append(mine.get("/runs/get", params={"run_id": run_id}).status_code)
            return statuses

        with ThreadPoolExecutor(8) as pool:
            statuses = [s for found in pool.map(log, range(8)) for s in found]
        assert set(statuses) == {200}
        with httpx.Client(base_url=base, timeout=60) as client:
            for worker in range(8):
                history = client.get(
                    "/metrics/get-history", params={"run_id": run_id, "metric_key": f"w{worker}"}
                ).json()["metrics"]
                assert [p["step"] for p in history] == list(range(25))


def test_a_failed_write_on_the_held_connection_leaves_nothing_and_the_next_is_stored(
    tmp_path: Path,
) -> None:
    # The writes on the loop's thread share one connection held open: a transaction that
    # fails (a changed param, a deleted run) must be rolled back on it, and the next write
    # must run on it and be stored.
    with (
        _sqlite_server_and_run(tmp_path) as (base, run_id),
        httpx.Client(base_url=base, timeout=60) as client,
    ):
        param = {"run_id": run_id, "key": "lr", "value": "0.1"}
        assert client.post("/runs/log-parameter", json=param).status_code == 200
        changed = {
            "run_id": run_id,
            "params": [{"key": "lr", "value": "0.2"}],
            "metrics": [{"key": "loss", "value": 9.0, "timestamp": 1, "step": 9}],
            "tags": [{"key": "t", "value": "lost"}],
        }
        refused = client.post("/runs/log-batch", json=changed)
        assert refused.status_code == 422, refused.text
        assert refused.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        point = {"run_id": run_id, "key": "loss", "value": 0.5, "timestamp": 1, "step": 1}
        stored = client.post("/runs/log-metric", json=point)
        assert stored.status_code == 200, stored.text
        other = client.post("/runs/create", json={"experiment_id": "0"}).json()["run"]
        other_id = other["info"]["run_id"]
        assert client.post("/runs/delete", json={"run_id": other_id}).status_code == 200
        deleted = client.post("/runs/log-metric", json={**point, "run_id": other_id})
        assert deleted.status_code == 422, deleted.text
        tag = client.post("/runs/set-tag", json={"run_id": run_id, "key": "k", "value": "v"})
        assert tag.status_code == 200, tag.text
        data = client.get("/runs/get", params={"run_id": run_id}).json()["run"]["data"]
        assert data["params"] == [{"key": "lr", "value": "0.1"}]
        assert data["metrics"] == [{"key": "loss", "value": 0.5, "timestamp": 1, "step": 1}]
        assert {"key": "k", "value": "v"} in data["tags"]
        assert {"key": "t", "value": "lost"} not in data["tags"]
        history = client.get(
            "/metrics/get-history", params={"run_id": other_id, "metric_key": "loss"}
        ).json()
        assert history.get("metrics", []) == []


def _while_locked(db: Path, send: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    """``send()``'s answer and how long it took while another process held SQLite's write
    lock on ``db`` for 1 s."""
    holder = sqlite3.connect(db, isolation_level=None, timeout=30, check_same_thread=False)
    try:
        holder.execute("BEGIN IMMEDIATE")
        released = threading.Timer(1.0, holder.execute, ("COMMIT",))
        released.start()
        started = time.monotonic()
        answer = send()
        took = time.monotonic() - started
        released.join()
    finally:
        holder.close()
    return answer, took


def test_a_create_and_an_update_wait_for_another_writers_lock_and_are_stored_once(
    tmp_path: Path,
) -> None:
    # runs/create and runs/update run on the server's event loop with a busy timeout of 0:
    # while another process holds the write lock they must go to the thread pool, wait
    # there, and be stored once, their audit events with them.
    db = tmp_path / "meta.db"
    with (
        _sqlite_server_and_run(tmp_path) as (base, run_id),
        httpx.Client(base_url=base, timeout=60) as client,
    ):
        ended = client.post("/runs/update", json={"run_id": run_id, "status": "FINISHED"})
        assert ended.status_code == 200, ended.text  # on the loop's thread: its connection
        body = {"experiment_id": "0", "run_name": "waited", "tags": [{"key": "t", "value": "1"}]}
        created, took = _while_locked(db, lambda: client.post("/runs/create", json=body))
        assert created.status_code == 200, created.text
        assert took >= 0.9, f"answered in {took:.2f} s while the lock was held"
        new_id = created.json()["run"]["info"]["run_id"]
        finish = {"run_id": new_id, "status": "FINISHED", "end_time": 7}
        updated, took = _while_locked(db, lambda: client.post("/runs/update", json=finish))
        assert updated.status_code == 200, updated.text
        assert took >= 0.9, f"answered in {took:.2f} s while the lock was held"
        assert updated.json()["run_info"]["status"] == "FINISHED"
        found = client.post("/runs/search", json={"experiment_ids": ["0"]}).json()["runs"]
        named = [r["info"] for r in found if r["info"]["run_name"] == "waited"]
        assert [(i["run_id"], i["status"], i["end_time"]) for i in named] == [
            (new_id, "FINISHED", 7)
        ]
    engine = create_engine_for(f"sqlite:///{db}")
    try:
        changes = [(e.action, e.object_id) for e in audit.events(engine, object_id=new_id)]
        assert changes == [("run.create", new_id), ("run.update", new_id)]
        assert audit.verify(engine).ok
    finally:
        engine.dispose()


def test_a_read_on_the_event_loop_sees_what_another_process_committed_just_before(
    tmp_path: Path,
) -> None:
    # Reads run on the loop's thread on a connection held open: each must be a new read
    # transaction, or it would keep answering what the database held at its first read.
    db = tmp_path / "meta.db"
    engine = create_engine_for(f"sqlite:///{db}")
    try:
        with (
            _sqlite_server_and_run(tmp_path) as (base, run_id),
            httpx.Client(base_url=base, timeout=60) as client,
        ):
            for i in range(5):
                run_data.set_tag(engine, run_id, "round", str(i))  # this process, not the server
                run = client.get("/runs/get", params={"run_id": run_id}).json()["run"]
                assert {"key": "round", "value": str(i)} in run["data"]["tags"]
                made = experiments.create_experiment(engine, f"made-{i}")
                by_name = client.get(
                    "/experiments/get-by-name", params={"experiment_name": made.name}
                )
                assert by_name.status_code == 200, by_name.text
                assert by_name.json()["experiment"]["experiment_id"] == str(made.id)
                experiments.rename_experiment(engine, made.id, f"renamed-{i}")
                by_id = client.get("/experiments/get", params={"experiment_id": str(made.id)})
                assert by_id.json()["experiment"]["name"] == f"renamed-{i}"
    finally:
        engine.dispose()


def test_eight_mlflow_clients_creating_and_ending_runs_store_each_run_and_event_once(
    tmp_path: Path,
) -> None:
    # 8 clients at once, as MLflow's client sends them: create a run (with its tags), log a
    # point, end it. Some requests run on the loop's thread, others in the pool meanwhile:
    # every run must be stored once, ended, and audited once per change.
    with (
        _sqlite_server_and_run(tmp_path) as (base, _run_id),
        httpx.Client(base_url=base, timeout=60) as client,
    ):
        created = client.post("/experiments/create", json={"name": "eight"})
        experiment = created.json()["experiment_id"]

        def work(worker: int) -> list[str]:
            made = []
            with httpx.Client(base_url=base, timeout=60) as mine:
                for i in range(10):
                    tags = [
                        {"key": "mlflow.user", "value": f"w{worker}"},
                        {"key": "mlflow.source.name", "value": "train.py"},
                        {"key": "mlflow.runName", "value": f"w{worker}-{i}"},
                    ]
                    body = {"experiment_id": experiment, "start_time": 1, "tags": tags}
                    answer = mine.post("/runs/create", json={**body, "run_name": f"w{worker}-{i}"})
                    assert answer.status_code == 200, answer.text
                    run_id = answer.json()["run"]["info"]["run_id"]
                    point = {"run_id": run_id, "key": "loss", "value": 0.5, "timestamp": 1}
                    assert mine.post("/runs/log-metric", json=point).status_code == 200
                    end = {"run_id": run_id, "status": "FINISHED", "end_time": 2}
                    assert mine.post("/runs/update", json=end).status_code == 200
                    made.append(run_id)
            return made

        with ThreadPoolExecutor(8) as pool:
            made = [run_id for found in pool.map(work, range(8)) for run_id in found]
        search = {"experiment_ids": [experiment], "max_results": 1000}
        found = client.post("/runs/search", json=search).json()["runs"]
        assert sorted(r["info"]["run_id"] for r in found) == sorted(made)
        assert len(set(made)) == 80
        assert {r["info"]["status"] for r in found} == {"FINISHED"}
        assert {len(r["data"]["metrics"]) for r in found} == {1}
    engine = create_engine_for(f"sqlite:///{tmp_path / 'meta.db'}")
    try:
        changes = Counter((e.action, e.object_id) for e in audit.events(engine, object_type="run"))
        expected = {(action, r): 1 for r in made for action in ("run.create", "run.update")}
        assert {k: v for k, v in changes.items() if k[1] in set(made)} == expected
        assert audit.verify(engine).ok
    finally:
        engine.dispose()
