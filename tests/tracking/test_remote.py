"""Remote mode under failure: lost answers, 503s, a server restart, SIGKILL of the client.

A small reverse proxy sits between the SDK and a real ``loopline server`` and misbehaves
on request, so the tests can check the ingest contract over HTTP: what ``flush`` returned
for is stored, and every point is stored exactly once.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import orjson
import pytest

import loopline as ll
from loopline.errors import BackendUnavailable, InvalidInput
from loopline.tracking.backend import backend_for
from loopline.tracking.remote import RemoteSink
from loopline.tracking.run_handle import Run
from tests.cli_run import Process, popen
from tests.server.conftest import start_server, stop_server
from tests.tracking.backends import count_points, database

LOGGER = Path(__file__).with_name("metric_logger.py")
REPO = Path(__file__).parents[2]
_PASSED_HEADERS = ("content-type", "x-loopline-digest")


class FlakyProxy:
    """A reverse proxy that loses answers, answers 503, or has no upstream, when told to."""

    def __init__(self, upstream: str | None) -> None:
        self.upstream = upstream
        self.lock = threading.Lock()
        self.to_lose: dict[str, int] = {}  # path suffix -> answers to lose after forwarding
        self.to_refuse = 0  # requests to answer 503 without forwarding
        self.to_corrupt = 0  # uploads (PUT) to forward with their first byte changed
        self.lost = self.refused = self.duplicates = 0
        self.client = httpx.Client(timeout=120)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def lose(self, suffix: str, times: int) -> None:
        with self.lock:
            self.to_lose[suffix] = times

    def _plan(self, method: str, path: str) -> str:
        with self.lock:
            if self.to_corrupt > 0 and method == "PUT":
                self.to_corrupt -= 1
                return "corrupt"
            if self.to_refuse > 0:
                self.to_refuse -= 1
                self.refused += 1
                return "refuse"
            route = path.split("?", 1)[0]
            for suffix, left in self.to_lose.items():
                if left > 0 and method == "POST" and route.endswith(suffix):
                    self.to_lose[suffix] = left - 1
                    self.lost += 1
                    return "lose"
        return "forward"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return

            def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                plan = proxy._plan(self.command, self.path)
                upstream = proxy.upstream
                unavailable = orjson.dumps(
                    {"error": {"code": "BACKEND_UNAVAILABLE", "message": "no upstream"}}
                )
                if plan == "refuse" or upstream is None:
                    self._reply(503, {"Content-Type": "application/json"}, unavailable)
                    return
                if plan == "corrupt" and body:  # damaged on the way, not by the client
                    body = bytes([body[0] ^ 0xFF]) + body[1:]
                sent = {k: v for k, v in self.headers.items() if k.lower() in _PASSED_HEADERS}
                try:
                    answer = proxy.client.request(
                        self.command, upstream + self.path, content=body, headers=sent
                    )
                except httpx.TransportError:
                    self._reply(503, {"Content-Type": "application/json"}, unavailable)
                    return
                batch = self.path.split("?")[0].endswith("/log-batch")
                if batch and answer.status_code == 200 and answer.json().get("duplicate"):
                    with proxy.lock:
                        proxy.duplicates += 1
                if plan == "lose":  # the server acted; its answer never arrives
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                headers = {k: v for k, v in answer.headers.items() if k in _PASSED_HEADERS}
                self._reply(answer.status_code, headers, answer.content)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        return Handler

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.client.close()


@pytest.fixture(autouse=True)
def _small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of 4,000 points, so that a few thousand steps make several requests."""
    monkeypatch.setattr(RemoteSink, "max_batch_rows", 4_000)


@pytest.fixture
def db_and_server(tmp_path: Path) -> Iterator[tuple[str, list[Process], str]]:
    """(database URI, [server process], server URL); the test may replace the process."""
    with database("sqlite", tmp_path) as db_uri:
        proc, url = start_server(db_uri, str(tmp_path / "server-artifacts"))
        procs = [proc]
        try:
            yield db_uri, procs, url
        finally:
            for p in procs:
                if p.poll() is None:
                    stop_server(p)


@pytest.fixture
def proxy(db_and_server: tuple[str, list[Process], str]) -> Iterator[FlakyProxy]:
    flaky = FlakyProxy(db_and_server[2])
    yield flaky
    flaky.close()


def _log(run: Run, start: int, steps: int, keys: int = 10) -> None:
    for step in range(start, start + steps):
        run.log_metrics({f"k{k}": step * 100 + k for k in range(keys)}, step=step)


def test_lost_answers_503s_and_a_restart_lose_nothing_and_duplicate_nothing(
    proxy: FlakyProxy,
    db_and_server: tuple[str, list[Process], str],
    tmp_path: Path,
) -> None:
    db_uri, procs, _url = db_and_server
    ctx = ll.init(uri=proxy.url, http_retry_s=60)
    run = ll.start_run(experiment="flaky")
    proxy.lose("/log-batch", 2)  # the server applies two batches but the answers are lost
    _log(run, 0, 2_500)  # 25,000 points: at least seven batches
    run.flush()
    assert proxy.lost == 2 and proxy.duplicates == 2  # both were sent again and recognised
    proxy.to_refuse = 3
    _log(run, 2_500, 1_000)
    run.flush()
    assert proxy.refused == 3
    stop_server(procs[0])  # the server goes away while points are being logged
    proxy.upstream = None
    _log(run, 3_500, 1_000)
    time.sleep(1.0)  # the background writer meets 503s and keeps retrying
    proc, url = start_server(db_uri, str(tmp_path / "server-artifacts"))
    procs.append(proc)
    proxy.upstream = url
    run.end()
    counts, dupes = count_points(db_uri, [run.id])
    assert counts == {run.id: 45_000}
    assert dupes == []
    assert ll.get_run(run.id).status == "FINISHED"
    assert ll.get_run(run.id).metrics["k9"] == 4_499 * 100 + 9
    backend_for(ctx).close()


def test_flush_gives_up_after_the_retry_window_and_keeps_the_points(
    proxy: FlakyProxy, db_and_server: tuple[str, list[Process], str]
) -> None:
    ctx = ll.init(uri=proxy.url, http_retry_s=1)
    run = ll.start_run(experiment="down")
    upstream, proxy.upstream = proxy.upstream, None
    for step in range(500):
        run.log_metric("x", step, step=step)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match="could not write 500 metric points") as info:
        run.flush()
    assert time.monotonic() - started < 30
    assert "flush again" in str(info.value) and proxy.url in str(info.value)
    with pytest.raises(BackendUnavailable):
        run.end()  # the run stays open and its points stay queued
    proxy.upstream = upstream
    run.end()
    assert [p.step for p in ll.metric_history(run.id, "x")] == list(range(500))
    assert ll.get_run(run.id).status == "FINISHED"
    backend_for(ctx).close()


def test_creating_a_run_is_not_repeated_when_its_answer_is_lost(
    proxy: FlakyProxy, db_and_server: tuple[str, list[Process], str]
) -> None:
    ctx = ll.init(uri=proxy.url, http_retry_s=30)
    proxy.lose("/api/v1/runs", 1)
    with pytest.raises(BackendUnavailable, match="did not take POST /api/v1/runs"):
        ll.start_run(experiment="once")
    assert len(ll.search_runs("once")) == 1  # created once, never twice
    backend_for(ctx).close()


def test_an_upload_damaged_in_transit_is_refused_by_the_server_and_not_stored(
    proxy: FlakyProxy, db_and_server: tuple[str, list[Process], str], tmp_path: Path
) -> None:
    ctx = ll.init(uri=proxy.url, http_retry_s=30)
    (tmp_path / "w.bin").write_bytes(b"weights" * 1000)
    with ll.start_run(experiment="damaged") as run:
        proxy.to_corrupt = 1
        with pytest.raises(InvalidInput, match="nothing was stored") as info:
            run.log_dict({"a": 1}, "config.json")  # sent from memory
        assert info.value.field == "X-Loopline-Digest"
        proxy.to_corrupt = 1
        with pytest.raises(InvalidInput, match="nothing was stored"):
            run.log_artifact(tmp_path / "w.bin")  # streamed from a file
        run.log_artifact(tmp_path / "w.bin")  # sent again, intact
    assert proxy.to_corrupt == 0
    assert "config.json" not in {a.path for a in run.artifacts}
    assert run.read_artifact("w.bin") == b"weights" * 1000
    backend_for(ctx).close()


def test_sigkill_never_loses_an_acknowledged_point(
    db_and_server: tuple[str, list[Process], str],
) -> None:
    db_uri, _procs, url = db_and_server
    keys = 20
    proc = popen(
        [sys.executable, str(LOGGER), "killed", url, "unused", str(keys)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    acked: list[tuple[str, int]] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while len(acked) < 30 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("ACK "):
            _ack, run_id, step = line.split()
            acked.append((run_id, int(step)))
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert len(acked) >= 30, "the logger made no progress"
    run_id, last = acked[-1]
    counts, dupes = count_points(db_uri, [run_id])
    assert counts[run_id] >= (last + 1) * keys
    assert dupes == []
