"""A lean path for the MLflow client's most frequent request: ``POST .../runs/log-metric``.

The unmodified MLflow client sends one HTTP request per ``mlflow.log_metric`` call, so a
training script makes hundreds of them. FastAPI's routing, dependency injection and body
validation cost about a millisecond per request on a small machine, twice what writing the
point costs. This ASGI middleware answers that one route itself: the body is parsed with
orjson, the point written by the same store function as the FastAPI route
(:func:`loopline.tracking.store.log_batch`, in a worker thread) and the errors are MLflow's
(``{"error_code", "message"}``, the status from :data:`loopline.errors.ERROR_TABLE`).

Anything it does not expect (a body that is not a JSON object, a missing field, a value of
another type, a body over 64 KiB) goes on, unchanged, to the FastAPI route, which answers as
it always does; so both paths accept and refuse exactly the same requests.

Example:
    >>> # app.add_middleware(MlflowLogMetricFastPath, ctx=ctx)
"""

from __future__ import annotations

import anyio
import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loopline.core.context import Context
from loopline.errors import LooplineError
from loopline.server.errors import error_for_path
from loopline.tracking import store
from loopline.tracking.entities import Metric, now_ms

PATHS = frozenset({"/api/2.0/mlflow/runs/log-metric", "/ajax-api/2.0/mlflow/runs/log-metric"})
_MAX_BODY = 64 * 1024
_FIELDS = frozenset({"run_id", "run_uuid", "key", "value", "timestamp", "step"})
_JSON = [(b"content-type", b"application/json")]


class MlflowLogMetricFastPath:
    """ASGI middleware answering MLflow's log-metric route without FastAPI's machinery.

    Example:
        >>> # app.add_middleware(MlflowLogMetricFastPath, ctx=ctx)
    """

    def __init__(self, app: ASGIApp, ctx: Context) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in PATHS:
            await self.app(scope, receive, send)
            return
        body, complete = await _read(receive)
        parsed = _parse(body) if complete else None
        if parsed is None:
            await self.app(scope, _replay(body, receive, complete), send)
            return
        run_id, metric = parsed
        try:
            await anyio.to_thread.run_sync(_write, self.ctx, run_id, metric)
        except LooplineError as exc:
            error = error_for_path(scope["path"], exc.http_status, exc.code, exc.message, exc.hint)
            await _answer(send, exc.http_status, bytes(error.body))
            return
        await _answer(send, 200, b"{}")


def _write(ctx: Context, run_id: str, metric: Metric) -> None:
    store.log_batch(ctx.engine, run_id, metrics=[metric])


def _parse(body: bytes) -> tuple[str, Metric] | None:
    """``(run_id, metric)`` for a plain, well-typed body; None for anything else."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not data.keys() <= _FIELDS:
        return None
    run_id = data.get("run_id") or data.get("run_uuid")
    key, value = data.get("key"), data.get("value")
    timestamp, step = data.get("timestamp"), data.get("step")
    if not isinstance(run_id, str) or not run_id or not isinstance(key, str):
        return None
    if not isinstance(value, float | int) or isinstance(value, bool):
        return None  # "NaN", "Infinity" and anything odd take the FastAPI route
    if not (timestamp is None or type(timestamp) is int) or not (step is None or type(step) is int):
        return None
    return run_id, Metric(key, float(value), timestamp or now_ms(), step or 0)


async def _read(receive: Receive) -> tuple[bytes, bool]:
    """The request body, and whether it was read whole (False past the size limit)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), size <= _MAX_BODY
        if size > _MAX_BODY:
            return b"".join(chunks), False


def _replay(body: bytes, receive: Receive, complete: bool) -> Receive:
    """A ``receive`` that hands the body read so far to the next app, then the rest."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            more = not complete
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return replay


async def _answer(send: Send, status: int, body: bytes) -> None:
    headers: list[tuple[bytes, bytes]] = [*_JSON, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
