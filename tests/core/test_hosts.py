"""Which Host headers the servers answer (DNS rebinding), and the 403 for the others."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from loopline.core.hosts import AllowedHosts, HostCheck, protect
from loopline.errors import ConfigError


@pytest.mark.parametrize(
    ("setting", "host", "allowed"),
    [
        ("", "localhost", True),
        ("", "localhost:5000", True),
        ("", "LOCALHOST:5000", True),
        ("", "127.0.0.1:1", True),
        ("", "[::1]:8080", True),
        ("", "[::1]", True),
        ("", "attacker.example", False),
        ("", "attacker.example:5000", False),
        ("", "localhost.attacker.example", False),
        ("", "127.0.0.1.nip.io:5000", False),
        ("", "localhost.", False),
        ("", "127.0.0.2:5000", False),
        ("", "[::2]:5000", False),
        ("", "localhost:abc", False),
        ("", "[::1", False),
        ("", "", False),
        ("models.internal", "models.internal:8080", True),
        ("models.internal", "models.internal", True),
        ("models.internal", "localhost:8080", True),  # the loopback names stay
        ("models.internal", "sub.models.internal", False),
        ("models.internal:8080", "models.internal:8080", True),
        ("models.internal:8080", "models.internal:9090", False),
        ("*.example.com", "a.example.com:5000", True),
        ("*.example.com", "a.b.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "evilexample.com", False),
        (" A.Internal , 10.0.0.7 ", "a.internal", True),
        (" A.Internal , 10.0.0.7 ", "10.0.0.7:5000", True),
        ("*", "anything.at.all:1", True),
    ],
)
def test_allowed_hosts(setting: str, host: str, allowed: bool) -> None:
    hosts = AllowedHosts.parse(setting)
    assert hosts.allows(host.encode()) is allowed
    assert hosts.allows(host.encode()) is allowed  # the memo answers alike


@pytest.mark.parametrize(
    "setting", ["http://models.internal", "models.internal/x", "a b", "*.x.com:80", "[::1"]
)
def test_a_bad_allowed_host_is_a_config_error_naming_it(setting: str) -> None:
    with pytest.raises(ConfigError) as caught:
        AllowedHosts.parse(f"ok.internal,{setting}")
    assert repr(setting.strip()) in caught.value.message
    assert "LOOPLINE_ALLOWED_HOSTS" in (caught.value.hint or "")


def test_the_memo_of_hosts_let_in_is_bounded() -> None:
    hosts = AllowedHosts.parse("*.example.com")
    for i in range(5000):
        assert hosts.allows(f"h{i}.example.com".encode())
    assert 0 < len(hosts._seen) <= 1024


async def _inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"inner"})


def _refusal(path: str, message: str, hint: str) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = orjson.dumps({"path": path, "message": message, "hint": hint})
        await send({"type": "http.response.start", "status": 403, "headers": []})
        await send({"type": "http.response.body", "body": body})

    return app


def _call(app: Any, path: str, headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "headers": headers}
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], sent[1]["body"]


def test_the_check_refuses_naming_the_host_and_the_option() -> None:
    app = HostCheck(_inner, AllowedHosts.parse("a.internal"), _refusal)
    status, body = _call(app, "/api/v1/runs", [(b"host", b"attacker.example:5000")])
    assert status == 403
    answer = orjson.loads(body)
    assert "'attacker.example:5000'" in answer["message"]
    assert "--allowed-hosts attacker.example" in answer["hint"]
    assert "LOOPLINE_ALLOWED_HOSTS=attacker.example" in answer["hint"]
    assert "localhost, 127.0.0.1, [::1], a.internal" in answer["hint"]
    assert _call(app, "/api/v1/runs", [(b"host", b"a.internal:1")]) == (200, b"inner")


def test_health_answers_any_host_and_a_request_without_host_goes_on() -> None:
    app = HostCheck(_inner, AllowedHosts.parse(""), _refusal)
    # A Kubernetes probe calls the pod by its IP address.
    assert _call(app, "/health", [(b"host", b"10.1.2.3:8080")]) == (200, b"inner")
    assert _call(app, "/health/x", [(b"host", b"10.1.2.3:8080")])[0] == 403
    assert _call(app, "/x", [(b"user-agent", b"http/1.0 client")]) == (200, b"inner")


def test_any_host_adds_no_layer() -> None:
    assert protect(_inner, AllowedHosts.parse("*"), _refusal) is _inner
    assert isinstance(protect(_inner, AllowedHosts.parse(""), _refusal), HostCheck)
