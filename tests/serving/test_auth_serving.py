"""``loopline serve --auth``: every endpoint of the prediction API checked for its role."""

from __future__ import annotations

import time

import httpx
import pytest

import loopline as ll
from loopline.core import auth
from loopline.core.access import PUBLIC
from loopline.core.context import Context
from loopline.serving.auth import RULES, TABLE
from tests.serving.helpers import good_model, register, row, serving, toy_data

LOWER = {"viewer": None, "editor": "viewer", "admin": "editor"}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"], ids=["one-worker", "two-workers"])
def test_every_endpoint_needs_its_role_and_revocation_takes_effect(
    embedded_ctx: Context, monkeypatch: pytest.MonkeyPatch, workers: str
) -> None:
    data = toy_data()
    ll.deploy("churn", register(good_model(data), "churn", data))
    tokens = {
        r: auth.create_token(embedded_ctx.engine, r, name=r, actor="t").token for r in auth.ROLES
    }
    monkeypatch.setenv("LOOPLINE_AUTH_REFRESH_S", "0.5")
    bodies = {
        "/v1/models/{name}/predict": {"instances": [row()]},
        "/v1/models/{name}/feedback": {"request_id": "x", "label": 1},
    }
    with (
        serving(embedded_ctx, "--auth", "--workers", workers) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        for method, pattern, need in RULES:
            path = pattern.replace("{name}", "churn")
            body = bodies.get(pattern)
            where = f"{method} {pattern} (needs {need})"
            if need == PUBLIC:
                assert client.request(method, path).status_code == 200, where
                continue
            r = client.request(method, path, json=body)
            assert r.status_code == 401, where
            assert r.headers["www-authenticate"].startswith("Bearer"), where
            assert r.json()["error"]["code"] == "UNAUTHENTICATED", where
            lower = LOWER[need]
            if lower is not None:
                r = client.request(method, path, json=body, headers=_bearer(tokens[lower]))
                assert r.status_code == 403, where
                assert f"needs the role {need!r}" in r.json()["error"]["message"], where
            r = client.request(method, path, json=body, headers=_bearer(tokens[need]))
            assert r.status_code == 200, (where, r.text)
        # Not in the table: never reaches the model server.
        r = client.post("/v1/models/churn/reload", headers=_bearer(tokens["admin"]))
        assert r.status_code == 404
        assert TABLE.lookup("POST", "/v1/models/churn/reload") == "deny"

        auth.revoke_token(embedded_ctx.engine, "viewer", actor="t")
        revoked = time.monotonic()
        predict = "/v1/models/churn/predict"
        while (
            client.post(
                predict, json=bodies["/v1/models/{name}/predict"], headers=_bearer(tokens["viewer"])
            ).status_code
            != 401
        ):
            assert time.monotonic() - revoked < 3, "still accepted 3 s after revocation"
            time.sleep(0.05)
