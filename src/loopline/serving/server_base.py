"""What every endpoint of the model server shares: its state, the ASGI types, answering.

:class:`ServerBase` holds the server's state (settings, deployments, metrics, the label
relay, the predict runners) and the HTTP plumbing of its endpoints: a JSON answer with its
headers, the body read within ``max_body_mb`` (413 beyond) and the answers any endpoint
may give (404 for no such model or endpoint, 405 with ``Allow``, 503 for a model deployed
here that failed to load). :func:`error_body` and :func:`unsupported_body` (415) are the
error bodies, which the token gate (:mod:`loopline.serving.auth`) gives too.

The endpoints are built on it, each in its module - predictions
(:mod:`loopline.serving.predict_endpoint`), labels
(:mod:`loopline.serving.feedback_endpoint`) - and joined, with the lifecycle and the
routing, in :class:`loopline.serving.app.ModelServer`: the request path calls the same
methods as before, found on the class, with no wrapper in between.

Example:
    >>> error_body("NOT_FOUND", "no endpoint /x")
    b'{"error":{"code":"NOT_FOUND","message":"no endpoint /x"}}'
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from loopline.core.access import is_json_media_type
from loopline.core.context import Context, get_context
from loopline.serving.control import RETRY_LOAD_AFTER, Controller
from loopline.serving.feedback import RecentAnswers, Relay
from loopline.serving.prom import ServingMetrics
from loopline.serving.serve_settings import ServeSettings
from loopline.serving.timeouts import AbandonedCalls, PredictRunner

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_JSON = (b"content-type", b"application/json")
# Browsers take the declared type: an answer echoing input is never read as a page.
_NOSNIFF = (b"x-content-type-options", b"nosniff")


class _TooLarge(Exception):
    pass


def error_body(code: str, message: str, field: str | None = None, hint: str | None = None) -> bytes:
    """The JSON error body of the model server: ``{"error": {code, message, field?, hint?}}``.

    Example:
        >>> error_body("NOT_FOUND", "no such model", hint="GET /v1/models")
        b'{"error":{"code":"NOT_FOUND","message":"no such model","hint":"GET /v1/models"}}'
    """
    body: dict[str, Any] = {"code": code, "message": message}
    if field:
        body["field"] = field
    if hint:
        body["hint"] = hint
    try:
        return orjson.dumps({"error": body})
    except TypeError:
        # A message echoing what no UTF-8 holds (a lone surrogate) must not turn a 4xx into
        # a 500: such characters are written as their escapes (\udfff) instead.
        printable = {k: v.encode("utf-8", "backslashreplace").decode() for k, v in body.items()}
        return orjson.dumps({"error": printable})


def unsupported_body(content_type: bytes | None, encoding: bytes | None) -> bytes | None:
    """The 415 error body for a request body not sent as plain JSON; None when it is.

    A body is taken only with ``Content-Type: application/json`` (or ``application/*+json``,
    as on ``loopline server``): a page on another site can make a browser post a form or a
    ``text/plain`` body here without asking the server first, and labels posted so would
    move canary decisions. A ``Content-Encoding`` (gzip, ...) is not decoded, so it is
    refused too rather than read as broken text. The caller compares the usual header with
    ``b"application/json"`` first: on the fast path this is not called.

    Example:
        >>> unsupported_body(b"application/json; charset=utf-8", None) is None
        True
        >>> orjson.loads(unsupported_body(b"text/plain", None))["error"]["field"]
        'Content-Type'
    """
    if encoding is not None and encoding.strip().lower() not in (b"", b"identity"):
        shown = encoding.decode("latin-1")
        return error_body(
            "UNSUPPORTED_MEDIA_TYPE",
            f"Content-Encoding {shown!r} is not supported: the model server reads the body "
            "as it is sent",
            field="Content-Encoding",
            hint="send the JSON body uncompressed, without a Content-Encoding header",
        )
    if content_type is not None and is_json_media_type(content_type.decode("latin-1")):
        return None
    sent = "no Content-Type" if content_type is None else repr(content_type.decode("latin-1"))
    return error_body(
        "UNSUPPORTED_MEDIA_TYPE",
        f"the request body must be sent as JSON with 'Content-Type: application/json', not {sent}",
        field="Content-Type",
        hint="send the header 'Content-Type: application/json' (curl -H ...; clients that "
        "send JSON set it, e.g. httpx/requests with json=...)",
    )


class ServerBase:
    """The state and the HTTP plumbing the model server's endpoints share (see the module)."""

    def __init__(self, ctx: Context | None = None, settings: ServeSettings | None = None) -> None:
        self.settings = settings or ServeSettings()
        self.ctx = ctx or get_context()
        self.worker = f"{socket.gethostname()}-{os.getpid()}"
        self.control = Controller(
            self.ctx,
            worker=self.worker,
            models=self.settings.models,
            poll_interval=self.settings.poll_interval,
            native_threads=self.settings.native_threads,
        )
        self.metrics = ServingMetrics(multiprocess=self.settings.multiprocess)
        self.max_body = int(self.settings.max_body_mb * 1024 * 1024)
        self.ready = False
        self._ids = itertools.count(1)
        self._prefix = secrets.token_hex(4) + "-"
        self._recent = RecentAnswers()
        # Labels for requests other workers answered go to them through the store, and
        # theirs come here (see loopline.serving.feedback).
        self._relay = Relay(self.worker, horizon=self.settings.label_horizon_s)
        self._relay_task: asyncio.Task[None] | None = None
        self._runner: PredictRunner | None = None
        self._shadow_runner: PredictRunner | None = None
        # The calls abandoned at their timeout, on either runner: they excuse the late
        # calls of other versions (see loopline.serving.timeouts).
        self._abandoned = AbandonedCalls()
        self._shadow_tasks: set[asyncio.Task[None]] = set()
        self._predlog: Any = None
        self._saved: tuple[float, tuple[int, ...]] | None = None

    @staticmethod
    async def _send(
        send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    _JSON,
                    _NOSNIFF,
                    (b"content-length", str(len(body)).encode()),
                    *(headers or ()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _no_endpoint(self, send: Send, path: str) -> None:
        body = error_body("NOT_FOUND", f"no endpoint {path}", hint="POST /v1/models/NAME/predict")
        await self._send(send, 404, body)

    async def _not_allowed(self, send: Send, method: str, path: str, allow: str) -> None:
        """405 with the ``Allow`` header: the endpoint exists, not with this method."""
        body = error_body(
            "METHOD_NOT_ALLOWED",
            f"{method} is not allowed on {path}; use {allow}",
            hint=f"{allow} {path}",
        )
        await self._send(send, 405, body, [(b"allow", allow.encode())])

    async def _not_found(self, send: Send, name: str) -> int:
        """404 for a model not served here; 503 naming the error for one deployed here
        whose versions failed to load (deploying it again would not help). The status."""
        failed = self.control.errors.get(name)
        if failed is not None:
            await self._send(
                send,
                503,
                error_body(
                    "MODEL_UNAVAILABLE",
                    f"model {name!r} is deployed, but this server could not load it: {failed}",
                    field="name",
                    hint="fix what the error names (the server log has the traceback; GET "
                    f"/v1/models lists the load errors); the server tries again every "
                    f"{RETRY_LOAD_AFTER:g} s, or deploy a version that loads",
                ),
            )
            return 503
        served = ", ".join(sorted(self.control.routes)) or "none"
        await self._send(
            send,
            404,
            error_body(
                "NOT_FOUND",
                f"model {name!r} is not served here",
                field="name",
                hint=f"served models: {served}; deploy one with `loopline deploy NAME VERSION`",
            ),
        )
        return 404

    async def _body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.max_body
        for k, v in scope["headers"]:
            if k == b"content-length":
                if v.isdigit() and int(v) > limit:
                    await self._drain(receive)
                    raise _TooLarge
                break
        message = await receive()
        body: bytes = message.get("body", b"")
        if not message.get("more_body", False):
            if len(body) > limit:
                raise _TooLarge
            return body
        parts = [body]
        size = len(body)
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _TooLarge
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                if message.get("more_body", False):
                    await self._drain(receive)
                raise _TooLarge
            parts.append(chunk)
            if not message.get("more_body", False):
                return b"".join(parts)

    def _too_large(self, advice: str) -> bytes:
        """The 413 body: the limit, and the setting that raises it."""
        return error_body(
            "PAYLOAD_TOO_LARGE",
            f"the request body is over the limit of {self.settings.max_body_mb:g} MB",
            field="body",
            hint=f"{advice}, or raise the limit: loopline serve --max-body-mb N "
            "(LOOPLINE_SERVE_MAX_BODY_MB)",
        )

    async def _drain(self, receive: Receive) -> None:
        """Read and drop the rest of an oversized body, so the client can read the 413."""
        budget = max(8 * self.max_body, 256 * 1024 * 1024)
        while budget > 0:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                return
            budget -= len(message.get("body", b""))
