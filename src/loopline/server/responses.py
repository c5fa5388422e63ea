"""A JSON response rendered by orjson, and ``X-Content-Type-Options: nosniff`` on answers."""

from __future__ import annotations

import json
from typing import Any

import orjson
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Tells browsers to take the declared Content-Type: a JSON answer or a static file is
#: never run as a script or shown as a page, whatever it contains.
NOSNIFF = (b"x-content-type-options", b"nosniff")


class OrjsonResponse(JSONResponse):
    """``JSONResponse`` rendered with orjson.

    Example:
        >>> OrjsonResponse({"a": 1}).body
        b'{"a":1}'
    """

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(
                content, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
            )
        except orjson.JSONEncodeError:
            # A string that is not text (a lone surrogate quoted back in an error message)
            # must not turn the answer into a 500: the standard library writes it escaped.
            return json.dumps(content, default=str, ensure_ascii=True).encode("ascii")


class NoSniff:
    """ASGI middleware adding :data:`NOSNIFF` to every answer that does not carry it yet.

    Example:
        >>> # app = NoSniff(app)
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_nosniff(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if all(key.lower() != NOSNIFF[0] for key, _ in headers):
                    headers.append(NOSNIFF)
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_nosniff)


class HeadAsGet:
    """ASGI middleware answering ``HEAD`` as ``GET`` without the body (RFC 9110: the same
    status and headers, ``Content-Length`` included). FastAPI adds no HEAD to a GET route,
    so ``HEAD /health`` and the UI's pages were a 405, and load balancers and uptime
    checkers probe with HEAD. Every layer below - the token gate, the access table, the
    routes - sees a GET, so a HEAD needs exactly the role the GET needs.

    Example:
        >>> # app = HeadAsGet(app)
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_headers(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return  # a part of the body: dropped, the headers are what HEAD asks
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, send_headers)
