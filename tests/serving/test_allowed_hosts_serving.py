"""DNS rebinding: ``loopline serve`` answers only the Host names it is known by."""

from __future__ import annotations

import httpx
import pytest

from loopline.core.context import Context
from loopline.serving.package import PORT, PackageSpec, dockerfile
from tests.serving.helpers import serving

EVIL = {"Host": "attacker.example:8080"}


@pytest.mark.parametrize(
    "args",
    [(), ("--auth",), ("--workers", "2")],
    ids=["one-worker", "auth", "two-workers"],
)
def test_a_rebound_page_gets_nothing_from_a_loopback_model_server(
    embedded_ctx: Context, args: tuple[str, ...]
) -> None:
    with serving(embedded_ctx, *args) as url, httpx.Client(base_url=url, timeout=30) as client:
        for method, path in [
            ("GET", "/v1/models"),
            ("POST", "/v1/models/churn/predict"),
            ("POST", "/v1/models/churn/feedback"),
            ("GET", "/metrics"),
            ("GET", "/openapi.json"),
        ]:
            r = client.request(method, path, json={"instances": [{"a": 1}]}, headers=EVIL)
            assert r.status_code == 403, (method, path, r.text)
            error = r.json()["error"]
            assert error["field"] == "Host" and "'attacker.example:8080'" in error["message"]
            assert "--allowed-hosts attacker.example" in error["hint"]
            assert r.headers["x-content-type-options"] == "nosniff"
        assert client.get("/health", headers={"Host": "10.1.2.3:8080"}).status_code == 200
        for host in ("localhost:8080", "127.0.0.1", "[::1]:1"):
            r = client.get("/v1/models", headers={"Host": host})
            assert r.status_code == (401 if "--auth" in args else 200), host
            assert r.headers["x-content-type-options"] == "nosniff"


def test_the_packaged_server_answers_its_probes_and_any_host(embedded_ctx: Context) -> None:
    # The image runs `loopline serve --host 0.0.0.0`; Kubernetes probes /health by the pod's
    # address and clients call a Service name: the server cannot know them, so by default
    # a server bound to every address answers every Host.
    assert '"--host", "0.0.0.0"' in dockerfile(PackageSpec("models:/m", "app", "img"), {})
    with serving(embedded_ctx, "--host", "0.0.0.0") as url:
        for host in (f"10.1.2.3:{PORT}", "churn.models.svc.cluster.local"):
            for path in ("/health", "/v1/models"):
                r = httpx.get(f"{url}{path}", headers={"Host": host}, timeout=30)
                assert r.status_code == 200, (host, path)


def test_names_set_for_a_server_on_every_address_still_let_the_probes_in(
    embedded_ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOPLINE_ALLOWED_HOSTS", "churn.models.svc.cluster.local")
    with serving(embedded_ctx, "--host", "0.0.0.0") as url:
        probe = {"Host": f"10.1.2.3:{PORT}"}
        assert httpx.get(f"{url}/health", headers=probe, timeout=30).status_code == 200
        assert httpx.get(f"{url}/v1/models", headers=probe, timeout=30).status_code == 403
        named = {"Host": "churn.models.svc.cluster.local"}
        assert httpx.get(f"{url}/v1/models", headers=named, timeout=30).status_code == 200
