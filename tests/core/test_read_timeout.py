"""Both servers cut off a client that sends its request too slowly (slowloris), not one that
keeps sending: real ``loopline server`` and ``loopline serve`` processes with a 1 s timeout."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from loopline.core.context import Context
from tests.server.conftest import start_server, stop_server
from tests.serving.helpers import serving

TIMEOUT_S = "1"


@contextmanager
def _tracking_server(tmp_path: Path) -> Iterator[str]:
    proc, url = start_server(
        f"sqlite:///{tmp_path / 'meta.db'}",
        str(tmp_path / "art"),
        extra_env={"LOOPLINE_REQUEST_READ_TIMEOUT_S": TIMEOUT_S},
    )
    try:
        yield url
    finally:
        stop_server(proc)


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    sock.settimeout(15)
    return sock


def _closed_after(sock: socket.socket) -> tuple[float, bytes]:
    """Seconds until the server closed ``sock``, and what it sent before (``sock`` is closed)."""
    start = time.monotonic()
    got = b""
    with sock:
        while chunk := sock.recv(4096):
            got += chunk
    return time.monotonic() - start, got


def _check_slow_clients(url: str, post_path: str) -> None:
    # Headers that never end: 408, then the connection is closed.
    sock = _connect(url)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    waited, got = _closed_after(sock)
    assert waited < 8, waited
    assert got.startswith(b"HTTP/1.1 408"), got
    # A connection that sends nothing at all.
    waited, got = _closed_after(_connect(url))
    assert waited < 8 and got.startswith(b"HTTP/1.1 408"), (waited, got)
    # A body announced and never sent: closed (the endpoint saw the client leave).
    sock = _connect(url)
    sock.sendall(
        f"POST {post_path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Content-Length: 100\r\n\r\n{".encode()
    )
    waited, _ = _closed_after(sock)
    assert waited < 8, waited
    # A client that keeps sending, slowly, for longer than the timeout is served.
    sock = _connect(url)
    body = b'{"experiment_ids": ["0"]}'
    sock.sendall(
        f"POST {post_path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
    )
    for i in range(0, len(body), 5):
        time.sleep(0.4)  # 2 s in all, each pause under the 1 s timeout
        sock.sendall(body[i : i + 5])
    _, got = _closed_after(sock)
    assert not got.startswith(b"HTTP/1.1 408"), got
    assert got.startswith(b"HTTP/1.1 "), got
    # The server still answers.
    assert httpx.get(f"{url}/health", timeout=10).status_code == 200


def test_loopline_server_cuts_off_slow_clients(tmp_path: Path) -> None:
    with _tracking_server(tmp_path) as url:
        _check_slow_clients(url, "/api/2.0/mlflow/runs/search")
        # A kept-alive client idle between requests is still served by the next one.
        with httpx.Client(base_url=url, timeout=10) as client:
            assert client.post("/api/2.0/mlflow/runs/search", json={}).status_code == 200
            time.sleep(1.5)
            assert client.post("/api/2.0/mlflow/runs/search", json={}).status_code == 200


def test_loopline_serve_cuts_off_slow_clients(
    embedded_ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOPLINE_REQUEST_READ_TIMEOUT_S", TIMEOUT_S)
    with serving(embedded_ctx) as url:
        _check_slow_clients(url, "/v1/models/churn/predict")
