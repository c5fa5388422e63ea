"""A real ``loopline server --auth``: the unmodified MLflow client and Loopline's remote SDK."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import loopline
from loopline.core import auth
from loopline.errors import PermissionDenied
from tests.cli_run import popen
from tests.conftest import env_without_loopline
from tests.health import wait_healthy
from tests.server.conftest import free_port, stop_server

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::Warning:mlflow")


class Server:
    def __init__(self, url: str, tokens: dict[str, str], log: Path, db_uri: str) -> None:
        self.url = url
        self.tokens = tokens
        self.log = log
        self.db_uri = db_uri


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    db_uri = f"sqlite:///{tmp_path / 'meta.db'}"
    ctx = loopline.init(uri=db_uri, artifacts=str(tmp_path / "art"))
    tokens: dict[str, str] = {
        r: auth.create_token(ctx.engine, r, name=r, actor="t").token for r in auth.ROLES
    }
    ctx.close()
    port = free_port()
    env = {
        **os.environ,
        "LOOPLINE_URI": db_uri,
        "LOOPLINE_ARTIFACTS": str(tmp_path / "art"),
        "LOOPLINE_AUTH_REFRESH_S": "0.5",
    }
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = popen(
            [sys.executable, "-m", "loopline.cli.main", "server", "--port", str(port), "--auth"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc, log.read_text, what="loopline server --auth")
    try:
        yield Server(url, tokens, log, db_uri)
    finally:
        stop_server(proc)


def test_the_server_says_where_it_listens_and_that_auth_is_on(server: Server) -> None:
    text = server.log.read_text()
    port = server.url.rsplit(":", 1)[1]
    assert f"listening on http://127.0.0.1:{port} (loopback only); auth ON" in text


def test_the_mlflow_client_works_with_a_token_and_is_told_why_without(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
    client = MlflowClient(tracking_uri=server.url)
    with pytest.raises(MlflowException, match="requires an API token") as refused:
        client.create_experiment("nope")
    assert refused.value.get_http_status_code() == 401

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", server.tokens["viewer"])
    with pytest.raises(MlflowException, match="needs the role 'editor'"):
        client.create_experiment("nope")

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", server.tokens["editor"])
    mlflow.set_tracking_uri(server.url)
    exp = mlflow.create_experiment("secured")
    with mlflow.start_run(experiment_id=exp) as run:
        mlflow.log_params({"depth": 5, "lr": 0.1})
        for step in range(3):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", server.tokens["viewer"])
    found = mlflow.search_runs(experiment_ids=[exp], output_format="list")
    assert [r.info.run_id for r in found] == [run.info.run_id]
    assert found[0].data.params == {"depth": "5", "lr": "0.1"}
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [m.value for m in history] == [1.0, 0.5, 1.0 / 3]
    with pytest.raises(MlflowException, match="needs the role 'admin'"):
        MlflowClient(tracking_uri=server.url).delete_run(run.info.run_id)


def test_the_loopline_sdk_sends_loopline_token(server: Server, tmp_path: Path) -> None:
    ctx = loopline.init(uri=server.url, artifacts=str(tmp_path / "client-art"), token="ll_bad")
    with pytest.raises(PermissionDenied, match="not valid"):
        loopline.search_runs()
    # Without a token the CLI exits 7 (PermissionDenied), not 1 (a command's failed result).
    env = {**env_without_loopline(), "LOOPLINE_URI": server.url}
    done = subprocess.run(
        [sys.executable, "-m", "loopline.cli.main", "runs", "ls"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 7, done.stderr
    assert "requires an API token" in done.stderr and "LOOPLINE_TOKEN" in done.stderr
    ctx = loopline.init(
        uri=server.url, artifacts=str(tmp_path / "client-art"), token=server.tokens["editor"]
    )
    with loopline.start_run(experiment="remote-secured") as run:
        run.log_params({"k": "v"})
        run.log_metric("auc", 0.9)
    assert [r.id for r in loopline.search_runs()] == [run.id]
    ctx.close()


def test_a_revoked_token_is_refused_within_the_refresh_interval(server: Server) -> None:
    headers = {"Authorization": f"Bearer {server.tokens['viewer']}"}
    assert httpx.get(f"{server.url}/api/v1/whoami", headers=headers).status_code == 200
    ctx = loopline.init(uri=server.db_uri, artifacts="unused")
    auth.revoke_token(ctx.engine, "viewer", actor="t")
    ctx.close()
    revoked = time.monotonic()
    while httpx.get(f"{server.url}/api/v1/whoami", headers=headers).status_code != 401:
        assert time.monotonic() - revoked < 3, "still accepted 3 s after revocation (refresh 0.5 s)"
        time.sleep(0.05)


def test_the_login_cookie_is_secure_behind_a_trusted_tls_proxy(server: Server) -> None:
    # A TLS-terminating proxy speaks HTTP to the server: the cookie is Secure only when the
    # proxy is trusted for X-Forwarded-Proto (FORWARDED_ALLOW_IPS; 127.0.0.1 and ::1 by
    # default, which is where this test's requests come from).
    form = {"token": server.tokens["viewer"], "next": "/"}
    with httpx.Client(base_url=server.url) as browser:
        plain = browser.post("/login", data=form)
        proxied = browser.post("/login", data=form, headers={"X-Forwarded-Proto": "https"})
    assert plain.status_code == proxied.status_code == 303
    assert "secure" not in plain.headers["set-cookie"].lower()
    assert "; secure" in proxied.headers["set-cookie"].lower()
