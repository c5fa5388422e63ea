"""The request body limit of ``loopline server``: 413 before a byte too many is read.

Two limits, both settings (:mod:`loopline.config`): artifact uploads
(``PUT /api/v1/runs/{id}/artifacts/content``, ``PUT /api/2.0/mlflow-artifacts/...``) may
be up to ``LOOPLINE_MAX_ARTIFACT_MB``; every other request up to
``LOOPLINE_MAX_REQUEST_MB``. A declared ``Content-Length`` over the limit is refused at
once; a streamed body is counted as it arrives and refused when it crosses the limit, so
a client cannot fill the server's memory or disk by lying about the size.

Example:
    >>> # app.add_middleware(BodySizeLimit, max_request_mb=64, max_artifact_mb=5120)
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.requests import Request

from loopline.server.errors import error_response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_MB = 1024 * 1024
_UPLOAD = re.compile(
    r"^(/api/v1/runs/[^/]+/artifacts/content|/api/2\.0/mlflow-artifacts/artifacts/.+)$"
)


class _TooLarge(Exception):
    """The body crossed the limit while being read."""


class BodySizeLimit:
    """ASGI middleware answering 413, with the limit and the setting to raise, beyond it.

    Example:
        >>> # app.add_middleware(BodySizeLimit, max_request_mb=1, max_artifact_mb=1024)
    """

    def __init__(self, app: ASGIApp, *, max_request_mb: float, max_artifact_mb: float) -> None:
        self.app = app
        self.max_request_mb = max_request_mb
        self.max_artifact_mb = max_artifact_mb

    def _limit(self, scope: Scope) -> tuple[float, str]:
        if scope["method"] == "PUT" and _UPLOAD.match(scope["path"]):
            return self.max_artifact_mb, "LOOPLINE_MAX_ARTIFACT_MB"
        return self.max_request_mb, "LOOPLINE_MAX_REQUEST_MB"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit_mb, setting = self._limit(scope)
        limit = int(limit_mb * _MB)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, send, limit_mb, setting)
            return
        seen = 0
        started = crossed = refused = False

        async def counted_receive() -> Message:
            nonlocal seen, crossed
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    crossed = True
                    raise _TooLarge
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started, refused
            if crossed and not started:
                # The app caught the overflow (FastAPI's body reader answers any error
                # while reading with a 400 "error parsing the body"): the answer is ours.
                if not refused:
                    refused = True
                    await self._refuse(scope, send, limit_mb, setting)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _TooLarge:
            if started:  # the answer is on its way; nothing sensible is left to send
                raise
            if not refused:
                await self._refuse(scope, send, limit_mb, setting)

    async def _refuse(self, scope: Scope, send: Send, limit_mb: float, setting: str) -> None:
        response = error_response(
            Request(scope),
            413,
            "PAYLOAD_TOO_LARGE",
            f"the request body is over the limit of {limit_mb:g} MB ({setting})",
            hint=f"send less per request, or raise the limit: {setting}=<MB> for the server",
            field="body",
        )
        await response(scope, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


def install_body_limit(app: Any, max_request_mb: float, max_artifact_mb: float) -> None:
    """Add :class:`BodySizeLimit` to ``app`` with limits given in MB.

    Example:
        >>> # install_body_limit(app, ctx.settings.max_request_mb, ctx.settings.max_artifact_mb)
    """
    app.add_middleware(
        BodySizeLimit, max_request_mb=max_request_mb, max_artifact_mb=max_artifact_mb
    )
