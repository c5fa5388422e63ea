"""The loop inside ``loopline server``: a real server process retrains, gates and deploys
on drift without ``loopline loop run``; of two servers on one store one runs the loop, and
the other takes over when the leader is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from loopline.core.context import Context
from loopline.errors import ConfigError
from loopline.loop import records
from loopline.loop.leader import holder
from loopline.loop.runner import server_loop
from loopline.serving.deploy import get_deployment
from tests.cli_run import popen, run_cli
from tests.health import wait_healthy
from tests.loop import scenario
from tests.server.conftest import free_port


class Server:
    """A `loopline server` process whose stderr goes to a file (read by the tests)."""

    def __init__(self, ctx: Context, log: Path, interval: float, *args: str) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        env = {
            **os.environ,
            "LOOPLINE_URI": ctx.settings.metadata_uri,
            "LOOPLINE_ARTIFACTS": ctx.settings.artifacts_uri,
            "LOOPLINE_LOOP_INTERVAL": str(interval),
        }
        with log.open("wb") as err:
            self.proc = popen(
                [sys.executable, "-m", "loopline.cli.main", "server", "--port", str(port), *args],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        wait_healthy(self.url, self.proc, log.read_text, what="loopline server")

    @property
    def holder_name(self) -> str:
        return f"{os.uname().nodename}:{self.proc.pid}"

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=60)


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()


def _wait(what: str, check: Callable[[], Any], timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _write_policy(root: Path, policy: Any) -> None:
    (root / "policies").mkdir(exist_ok=True)
    data = policy.model_dump(mode="json")
    (root / "policies" / f"{policy.model}.yaml").write_text(yaml.safe_dump(data))


def _status_cli(ctx: Context) -> dict[str, Any]:
    env = {
        **os.environ,
        "LOOPLINE_URI": ctx.settings.metadata_uri,
        "LOOPLINE_ARTIFACTS": ctx.settings.artifacts_uri,
    }
    out = run_cli(["loop", "status", "--json"], env=env)
    assert out.returncode == 0, out.stderr
    status: dict[str, Any] = orjson.loads(out.stdout)
    return status


@pytest.mark.slow
def test_the_server_runs_the_loop_on_drift(
    ctx: Context, tmp_path: Path, servers: list[Server]
) -> None:
    state = scenario.setup(seed=5, per_month=300)
    _write_policy(tmp_path, scenario.policy())
    server = Server(ctx, tmp_path / "server.log", 0.5)
    servers.append(server)
    events = _wait(
        "the server's loop to deploy",
        lambda: [e for e in records.events("flights") if e["kind"] == "deploy"],
    )
    assert "loop: on for flights" in server.log.read_text()
    kinds = [e["kind"] for e in records.events("flights")]
    assert kinds[:4] == ["trigger", "retrain", "gate", "deploy"], kinds
    d = get_deployment("flights")
    assert (d.stable_version, d.candidate_version, d.revision) == (
        state["v1"],
        2,
        events[0]["deployment_revision"],
    )
    status = _status_cli(ctx)
    assert status["leader"]["holder"] == server.holder_name
    assert status["models"][0]["model"] == "flights"
    assert server.stop() == 0  # a clean shutdown gives the lock up
    assert holder(ctx) is None


@pytest.mark.slow
def test_one_server_runs_the_loop_and_another_takes_over_when_it_is_killed(
    ctx: Context, tmp_path: Path, servers: list[Server]
) -> None:
    # a policy for a model that is not deployed: each pass is cheap ("idle")
    _write_policy(tmp_path, scenario.policy(model="idle-model"))
    a = Server(ctx, tmp_path / "a.log", 0.3)
    servers.append(a)
    b = Server(ctx, tmp_path / "b.log", 0.3)
    servers.append(b)
    first = _wait("a leader", lambda: holder(ctx))
    names = {a.holder_name: a, b.holder_name: b}
    assert first["holder"] in names
    leader = names[first["holder"]]
    other = b if leader is a else a
    time.sleep(1.0)  # several intervals: the other one keeps trying, and keeps failing
    assert holder(ctx)["holder"] == leader.holder_name  # type: ignore[index]
    leader.stop(signal.SIGKILL)
    after = _wait(
        "the other server to take over",
        lambda: (h := holder(ctx)) is not None and h["holder"] == other.holder_name,
        timeout=30,
    )
    assert after
    assert _status_cli(ctx)["leader"]["holder"] == other.holder_name
    assert "loop: on for idle-model" in other.log.read_text()


def test_without_policies_the_server_runs_no_loop(embedded_ctx: Context, tmp_path: Path) -> None:
    runner, line = server_loop(embedded_ctx, enabled=True, root=tmp_path, interval=1)
    assert runner is None and line.startswith("loop: off (no policies in")
    _write_policy(tmp_path, scenario.policy())
    runner, line = server_loop(embedded_ctx, enabled=True, root=tmp_path, interval=60)
    assert runner is not None
    assert line.startswith("loop: on for flights (a pass every 60 s") and "file lock" in line
    assert runner.stop(timeout=30) and holder(embedded_ctx) is None
    (tmp_path / "policies" / "bad.yaml").write_text("model: x\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: data: Field required"):
        server_loop(embedded_ctx, enabled=True, root=tmp_path, interval=60)


def test_no_loop_keeps_the_loop_off(ctx: Context, tmp_path: Path, servers: list[Server]) -> None:
    _write_policy(tmp_path, scenario.policy())
    off = Server(ctx, tmp_path / "off.log", 0.3, "--no-loop")
    servers.append(off)
    assert "loop: off (--no-loop)" in off.log.read_text()
    time.sleep(1.0)
    assert holder(ctx) is None
