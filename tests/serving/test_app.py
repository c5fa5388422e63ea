"""The model server app in-process: how it sets the interpreter up for the request path."""

from __future__ import annotations

import asyncio
import gc
import sys
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from loopline.core.context import Context
from loopline.serving.app import GC_THRESHOLDS, ModelServer, ServeSettings
from loopline.serving.deploy import deploy
from tests.serving.helpers import good_model, register, row, toy_data


async def _post(app: ModelServer, path: str, payload: Any) -> tuple[int, dict[str, Any]]:
    """One POST through the ASGI callable, as uvicorn would make it."""
    body = orjson.dumps(payload)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(b"content-length", str(len(body)).encode())],
    }
    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    answer = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, orjson.loads(answer)


def test_startup_shortens_the_switch_interval_and_shutdown_restores_it(
    embedded_ctx: Context,
) -> None:
    data = toy_data()
    version = register(good_model(data), "churn", data)
    deploy("churn", version)
    before = (sys.getswitchinterval(), gc.get_threshold())
    server = ModelServer(embedded_ctx, ServeSettings(switch_interval_ms=0.25))
    try:
        server.startup()
        assert sys.getswitchinterval() == pytest.approx(0.00025)
        assert gc.get_threshold() == GC_THRESHOLDS
        status, answer = asyncio.run(
            _post(server, "/v1/models/churn/predict", {"instances": [row()]})
        )
        assert status == 200, answer
        assert answer["model_version"] == str(version) and len(answer["predictions"]) == 1
        status, error = asyncio.run(
            _post(server, "/v1/models/churn/predict", {"instances": [{"a": 1.0}]})
        )
        assert status == 422 and error["error"]["field"] == "b"
    finally:
        server.shutdown()
        gc.unfreeze()  # startup froze this test process's objects; give them back
    assert (sys.getswitchinterval(), gc.get_threshold()) == before
    assert server._predlog is not None and server._predlog.written_rows == 1


@pytest.mark.parametrize("value", ["0", "-1", "500"], ids=["zero", "negative", "too-long"])
def test_a_bad_switch_interval_is_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("LOOPLINE_SERVE_SWITCH_INTERVAL_MS", value)
    with pytest.raises(ValidationError, match="switch_interval_ms"):
        ServeSettings()
