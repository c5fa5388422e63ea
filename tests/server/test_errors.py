"""A value the database refuses is the client's error: 422, on either backend."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import psycopg
import pytest
from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy.exc import DataError

import loopline
from loopline.core.context import Context
from loopline.server.errors import database_error, install_error_handlers

with warnings.catch_warnings():
    # Starlette asks for its httpx fork ("httpx2"); the test client works the same on httpx.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def _app_raising(ctx: Context, error: Exception) -> FastAPI:
    app = FastAPI()
    app.state.ctx = ctx
    install_error_handlers(app)

    @app.get("/boom")
    def boom() -> None:
        raise error

    return app


def _refused(driver_error: Exception) -> DataError:
    return DataError("INSERT ...", {}, driver_error)


def _answer(ctx: Context, error: Exception) -> dict[str, str]:
    client = TestClient(_app_raising(ctx, error), raise_server_exceptions=False)
    answer = client.get("/boom")
    assert answer.status_code == 422, answer.text
    body: dict[str, str] = answer.json()["error"]
    assert body["code"] == "INVALID_INPUT"
    return body


def test_a_refused_value_is_422_naming_the_reason(module_ctx: Context) -> None:
    body = _answer(module_ctx, _refused(psycopg.DataError("invalid byte sequence: 0x00")))
    assert "0x00" in body["message"]


def test_a_like_pattern_sqlite_finds_too_complex_is_422_not_an_outage(
    module_ctx: Context,
) -> None:
    import sqlite3

    from sqlalchemy.exc import OperationalError

    refused = OperationalError(
        "SELECT ...", {}, sqlite3.OperationalError("LIKE or GLOB pattern too complex")
    )
    assert "LIKE pattern" in _answer(module_ctx, refused)["message"]


def test_a_sqlite_lock_held_past_the_busy_timeout_is_503_saying_why(module_ctx: Context) -> None:
    import sqlite3

    from sqlalchemy.exc import OperationalError

    locked = OperationalError("INSERT ...", {}, sqlite3.OperationalError("database is locked"))
    answer = TestClient(_app_raising(module_ctx, locked), raise_server_exceptions=False).get(
        "/boom"
    )
    assert answer.status_code == 503, answer.text
    body = answer.json()["error"]
    assert body["code"] == "BACKEND_UNAVAILABLE"
    assert "stayed locked by another process" in body["message"]
    assert "stopped (^Z) or hung" in body["hint"]


def test_a_raw_driver_error_is_422_on_postgresql(pg_uri: str, tmp_path: Path) -> None:
    # core.bulk writes through the driver's own cursor: its errors arrive unwrapped.
    ctx = loopline.init(uri=pg_uri, artifacts=str(tmp_path / "artifacts"))
    try:
        body = _answer(ctx, psycopg.DataError("value out of range for type bigint"))
    finally:
        ctx.close()
    assert "out of range" in body["message"]


def test_database_error_reads_psycopg_errors_only_once_loaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = psycopg.DataError("value out of range")
    assert database_error(raw) is not None
    assert database_error(ValueError("x")) is None
    # Without psycopg loaded no psycopg error can exist; the check must not import it.
    monkeypatch.delitem(sys.modules, "psycopg")
    assert database_error(ValueError("x")) is None
    assert "psycopg" not in sys.modules


class Thing(BaseModel):
    name: str


@pytest.mark.parametrize(
    ("path", "body", "said"),
    [
        ("/api/v1/things", b"{bad", "the request body is not valid JSON at character 1"),
        ("/api/v1/things", b"[1]", "the request body must be an object"),
        ("/api/2.0/mlflow/things", b"{bad", "the request body is not valid JSON"),
    ],
)
def test_a_body_that_is_no_json_object_is_named_as_the_body(
    embedded_ctx: Context, path: str, body: bytes, said: str
) -> None:
    """It was "1: JSON decode error" (the character position as a field name)."""
    app = FastAPI()
    app.state.ctx = embedded_ctx
    install_error_handlers(app)

    @app.post(path)
    def make(thing: Thing) -> str:
        return thing.name

    answer = TestClient(app).post(path, content=body, headers={"content-type": "application/json"})
    assert answer.status_code in (400, 422)
    text = answer.text
    assert said in text and "Content-Type: application/json" in text
    if path.startswith("/api/v1"):
        assert answer.json()["error"]["field"] == "body"
