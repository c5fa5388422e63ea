"""Fault: a model that hangs. A real ``loopline serve`` process serves deployments whose
model's ``predict`` sleeps for an hour (the test flavor of :mod:`tests.e2e.hang_flavor`).

Each request times out after the configured limit (``--predict-timeout``, or a deployment's
``timeout_ms``); the fallback version answers, or - without one - the client gets a 504
naming the setting. Hung calls never block later requests, other models keep answering
at full speed, and the server still stops on SIGTERM.
"""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import loopline as ll
from loopline.core.context import Context
from tests.e2e.hang_flavor import SERVE_WITH_HANG_FLAVOR, Sleeper, install, uninstall
from tests.health import wait_healthy
from tests.serving.helpers import free_port, good_model, register, row, toy_data

TIMEOUT_S = 0.5


@pytest.fixture
def hang_flavor() -> Iterator[None]:
    install()
    yield
    uninstall()


def _register_sleeper(name: str) -> int:
    with ll.start_run(experiment=f"exp-{name}") as run:
        run.log_model(Sleeper(), "model")  # no input example: nothing predicts at save
    return int(ll.registry.register(run, name).version)


def _start(ctx: Context, log: Path, *args: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "LOOPLINE_URI": ctx.settings.metadata_uri,
        "LOOPLINE_ARTIFACTS": ctx.settings.artifacts_uri,
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVE_WITH_HANG_FLAVOR, "serve", "--port", str(port), *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc, log.read_text, timeout=120, what="loopline serve")
    return proc, url


def _timed_post(url: str, name: str) -> tuple[float, httpx.Response]:
    start = time.monotonic()
    answer = httpx.post(f"{url}/v1/models/{name}/predict", json={"instances": [row()]}, timeout=30)
    return time.monotonic() - start, answer


@pytest.mark.slow
def test_a_hung_model_times_out_and_the_fallback_answers(
    embedded_ctx: Context, hang_flavor: None, tmp_path: Path
) -> None:
    data = toy_data()
    good = register(good_model(data), "churn", data)
    hung = _register_sleeper("churn")
    ll.deploy("churn", hung, fallback=good)
    register(good_model(data), "healthy", data)
    ll.deploy("healthy", 1)
    bare = _register_sleeper("bare")  # no fallback: 504 naming the server's setting
    ll.deploy("bare", bare)
    own = _register_sleeper("own-limit")  # the deployment's own limit overrides the server's
    ll.deploy("own-limit", own, timeout_ms=100)

    proc, url = _start(embedded_ctx, tmp_path / "serve.log", "--predict-timeout", str(TIMEOUT_S))
    try:
        # 12 requests at once: far more than the prediction threads, all of them answered.
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            burst = list(pool.map(lambda _: _timed_post(url, "churn"), range(12)))
        later = [_timed_post(url, "churn") for _ in range(5)]
        healthy = [_timed_post(url, "healthy") for _ in range(20)]
        no_fallback = _timed_post(url, "bare")
        own_limit = _timed_post(url, "own-limit")
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
        health = httpx.get(f"{url}/health", timeout=10)
    finally:
        proc.terminate()
        try:
            code: Any = proc.wait(timeout=20)  # hung threads must not keep it alive
        except subprocess.TimeoutExpired:
            proc.kill()
            code = "still running 20 s after SIGTERM"
    # uvicorn ends by raising the signal it caught again: -15 is its graceful exit.
    assert code in (0, -15), (code, (tmp_path / "serve.log").read_text()[-2000:])

    for elapsed, answer in burst + later:
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_version"] == str(good)
        assert elapsed < TIMEOUT_S + 3, elapsed  # one timeout at most, never the hour
    # Once two calls hang, the version is skipped: the fallback answers without waiting.
    assert min(elapsed for elapsed, _ in later) < TIMEOUT_S
    assert all(a.status_code == 200 for _, a in healthy)
    assert max(elapsed for elapsed, _ in healthy) < 1.0

    elapsed, answer = no_fallback
    assert answer.status_code == 504 and elapsed < TIMEOUT_S + 3
    error = answer.json()["error"]
    assert error["code"] == "MODEL_TIMEOUT"
    assert "LOOPLINE_SERVE_PREDICT_TIMEOUT_S" in error["message"]
    assert f"within {TIMEOUT_S:g} s" in error["message"]
    assert "--fallback" in error["hint"]

    elapsed, answer = own_limit
    assert answer.status_code == 504 and elapsed < TIMEOUT_S
    assert "within 0.1 s (the deployment's timeout_ms)" in answer.json()["error"]["message"]

    assert f'loopline_model_failures_total{{kind="timeout",model="churn",version="{hung}"}}' in (
        metrics
    )
    assert health.status_code == 200
