"""A real ``loopline server`` process on a free loopback port, per test."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.cli_run import Process, popen
from tests.health import wait_healthy
from tests.ports import free_port


def start_server(
    db_uri: str,
    artifacts: str,
    extra_env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
) -> tuple[Process, str]:
    """Start `loopline server` (with ``args``) and wait until /health answers; return
    (process, base URL). The process is forked from the worker's fork server
    (:func:`tests.cli_run.popen`): its imports, ~1 s of CPU, are done once per worker."""
    port = free_port()
    env = {
        **os.environ,
        "LOOPLINE_URI": db_uri,
        "LOOPLINE_ARTIFACTS": artifacts,
        **(extra_env or {}),
    }
    proc = popen(
        [sys.executable, "-m", "loopline.cli.main", "server", "--port", str(port), *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"

    def stderr() -> str:
        # Read only once the process has ended (exited, or killed on the timeout).
        return proc.stderr.read().decode() if proc.stderr else ""

    wait_healthy(url, proc, stderr, what="loopline server")
    return proc, url


def stop_server(proc: Process) -> None:
    """Stop the server process."""
    proc.terminate()
    if proc.stderr:
        proc.stderr.close()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def server_url(db_uri: str, tmp_path: Path) -> Iterator[str]:
    """A running server on each metadata backend (SQLite, PostgreSQL)."""
    proc, url = start_server(db_uri, str(tmp_path / "server-artifacts"))
    try:
        yield url
    finally:
        stop_server(proc)


@contextmanager
def mlflow_client_on(server_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An ``MlflowClient`` of ``server_url``, the fluent API pointed there too, and no
    experiment or run left active for the next test."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", server_url)
    # The fluent API remembers the active experiment across servers; start clean.
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    mlflow.set_tracking_uri(server_url)
    mlflow.set_registry_uri(server_url)
    yield mlflow.MlflowClient(tracking_uri=server_url, registry_uri=server_url)
    while mlflow.active_run():
        mlflow.end_run()
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)  # mlflow.set_experiment writes it
