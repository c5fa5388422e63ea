"""DNS rebinding: ``loopline server`` answers only the Host names it is known by.

A page of attacker.example whose name was made to resolve to 127.0.0.1 calls the server
as ``http://attacker.example:PORT``: its requests carry that Host, and must reach nothing -
not the MLflow fast path, not the routes, not the UI - while the server's own names work.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.server.conftest import start_server, stop_server


def _port(url: str) -> str:
    return url.rsplit(":", 1)[1]


def test_a_rebound_page_can_neither_write_nor_read(db_uri: str, tmp_path: Path) -> None:
    proc, url = start_server(db_uri, str(tmp_path / "art"))
    evil = {"Host": f"attacker.example:{_port(url)}"}
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            # The fast path (runs/create, log-metric...) ...
            r = client.post(
                "/api/2.0/mlflow/runs/create", json={"experiment_id": "0"}, headers=evil
            )
            assert r.status_code == 403, r.text
            assert r.json()["error_code"] == "PERMISSION_DENIED"  # MLflow's shape there
            assert f"'attacker.example:{_port(url)}'" in r.json()["message"]
            assert "--allowed-hosts attacker.example" in r.json()["message"]
            assert r.headers["x-content-type-options"] == "nosniff"
            # ... the FastAPI routes and the UI
            r = client.post("/api/v1/runs", json={"experiment": "x"}, headers=evil)
            assert r.status_code == 403 and r.json()["error"]["field"] == "Host"
            r = client.get("/api/v1/experiments/by-name", params={"name": "Default"}, headers=evil)
            assert r.status_code == 403
            assert client.get("/", headers=evil).status_code == 403
            assert client.get("/openapi.json", headers=evil).status_code == 403
            # Nothing was written.
            r = client.post("/api/2.0/mlflow/runs/search", json={"experiment_ids": ["0"]})
            assert r.status_code == 200 and r.json().get("runs", []) == []
            # Probes and the server's own names.
            assert client.get("/health", headers={"Host": "10.0.0.7:5000"}).status_code == 200
            for host in ("localhost", "127.0.0.1", "[::1]"):
                for port in ("", f":{_port(url)}", ":80"):
                    r = client.post(
                        "/api/2.0/mlflow/runs/create",
                        json={"experiment_id": "0"},
                        headers={"Host": host + port},
                    )
                    assert r.status_code == 200, (host + port, r.text)
                    r = client.get("/", headers={"Host": host + port})
                    assert r.status_code == 200, host + port
    finally:
        stop_server(proc)


@pytest.mark.parametrize(
    ("extra_env", "args"),
    [
        ({"LOOPLINE_ALLOWED_HOSTS": "mlflow.internal,*.corp.example"}, ()),
        ({}, ("--allowed-hosts", "mlflow.internal,*.corp.example")),
        # The option wins over the setting.
        (
            {"LOOPLINE_ALLOWED_HOSTS": "other"},
            ("--allowed-hosts", "mlflow.internal,*.corp.example"),
        ),
    ],
    ids=["setting", "option", "option-over-setting"],
)
def test_allowed_hosts_add_names(
    migrated_sqlite_uri: str, tmp_path: Path, extra_env: dict[str, str], args: tuple[str, ...]
) -> None:
    proc, url = start_server(migrated_sqlite_uri, str(tmp_path / "art"), extra_env, args)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            for host, status in [
                ("mlflow.internal:443", 200),
                ("team.corp.example", 200),
                ("localhost:5000", 200),
                ("other", 403),
                ("attacker.example", 403),
            ]:
                r = client.post(
                    "/api/2.0/mlflow/experiments/search", json={}, headers={"Host": host}
                )
                assert r.status_code == status, host
    finally:
        stop_server(proc)


def test_a_server_bound_to_every_address_answers_any_host_by_default(
    migrated_sqlite_uri: str, tmp_path: Path
) -> None:
    # As in a container (`--host 0.0.0.0`): clients reach it by a Service name, a load
    # balancer's or a pod's address, none of which the server knows.
    proc, url = start_server(migrated_sqlite_uri, str(tmp_path / "art"), args=("--host", "0.0.0.0"))
    try:
        for host in ("loopline.mlops.svc.cluster.local:5000", "10.1.2.3:5000"):
            r = httpx.post(
                f"{url}/api/2.0/mlflow/runs/create",
                json={"experiment_id": "0"},
                headers={"Host": host},
                timeout=30,
            )
            assert r.status_code == 200, (host, r.text)
    finally:
        stop_server(proc)


def test_a_bad_allowed_host_stops_the_server_at_start(
    migrated_sqlite_uri: str, tmp_path: Path
) -> None:
    env = {**os.environ, "LOOPLINE_URI": migrated_sqlite_uri, "LOOPLINE_ARTIFACTS": str(tmp_path)}
    bad = "mlflow.internal,http://mlflow.internal"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "loopline.cli.main",
            "server",
            "--port",
            "1",
            "--allowed-hosts",
            bad,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    err = " ".join(done.stderr.split())
    assert "'http://mlflow.internal' is not a host name" in err, err
