"""Authentication for ``loopline serve --auth``: a plain ASGI gate around the model server.

The same tokens and roles as ``loopline server --auth`` (:mod:`loopline.core.auth`):

==========================================  =========  ===========================
``GET  /health``                            open       probes; the status only
``GET  /livez``                             open       liveness probes; "alive" only
``GET  /metrics``                           viewer     Prometheus sends a bearer token
``GET  /v1/models``, ``/v1/models/{name}``  viewer     what is served
``POST /v1/models/{name}/predict``          viewer     reading a model's answer
``POST /v1/models/{name}/feedback``         editor     labels move canary decisions
==========================================  =========  ===========================

A path not in :data:`TABLE` gets a 404 from the gate itself - it never reaches the model
server, so an endpoint added there without a row here is unreachable (default deny).

The hot path stays a hash and a dict lookup: tokens live in memory
(:class:`loopline.core.auth.TokenCache`) and are reloaded every ``LOOPLINE_AUTH_REFRESH_S``
seconds (5 by default) - the longest a revoked token keeps working. An unknown token
reloads the table at once (at most once a second), so a new token works immediately.

Example:
    >>> # uvicorn.run(ServingAuthGate(ModelServer(ctx), TokenCache(ctx.engine)), port=8080)
"""

from __future__ import annotations

import asyncio
from typing import Any

from loopline.core.access import PUBLIC, AccessTable, Rule, bearer_token
from loopline.core.auth import TokenCache
from loopline.serving.app import ModelServer, with_host_check
from loopline.serving.server_base import ASGIApp, Message, Receive, Scope, Send, error_body

RULES: list[Rule] = [
    ("GET", "/health", PUBLIC),
    ("GET", "/livez", PUBLIC),
    ("GET", "/metrics", "viewer"),
    ("GET", "/openapi.json", "viewer"),  # as on loopline server
    ("GET", "/v1/models", "viewer"),
    ("GET", "/v1/models/{name}", "viewer"),
    ("POST", "/v1/models/{name}/predict", "viewer"),
    ("POST", "/v1/models/{name}/feedback", "editor"),
]
TABLE = AccessTable(RULES)
_HINT = (
    "make a token with `loopline tokens create --role viewer` and send it as "
    "'Authorization: Bearer TOKEN'"
)


def _answer(status: int, code: str, message: str, hint: str, challenge: str) -> list[Message]:
    body = error_body(code, message, hint=hint)
    headers = [
        (b"content-type", b"application/json"),
        (b"x-content-type-options", b"nosniff"),
        (b"content-length", str(len(body)).encode()),
        (b"www-authenticate", challenge.encode()),
    ]
    return [
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": body},
    ]


class ServingAuthGate:
    """The model server behind a token check (see the module docstring).

    Example:
        >>> # gate = ServingAuthGate(ModelServer(ctx), TokenCache(ctx.engine))
    """

    def __init__(self, app: ModelServer, cache: TokenCache) -> None:
        self.app = app
        self.cache = cache

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.app(scope, self._lifespan_receive(receive), send)
            return
        if kind != "http":
            return
        method: str = scope["method"]
        path: str = scope["path"]
        need = TABLE.lookup(method, path)
        if need == PUBLIC:
            await self.app(scope, receive, send)
            return
        token = None
        for key, value in scope["headers"]:
            if key == b"authorization":
                token = bearer_token(value.decode("latin-1"))
                break
        principal = None
        if token is not None:
            principal = self.cache.lookup(token)
            if principal is None:
                loop = asyncio.get_running_loop()
                principal = await loop.run_in_executor(None, self.cache.lookup_after_miss, token)
        if principal is None:
            messages = _answer(
                401,
                "UNAUTHENTICATED",
                "the API token is not valid: unknown or revoked"
                if token
                else "this model server requires an API token",
                _HINT,
                'Bearer realm="loopline", error="invalid_token"'
                if token
                else 'Bearer realm="loopline"',
            )
        elif need == "deny":
            if TABLE.knows_path(path):  # another method of a listed endpoint: the app's 405
                await self.app(scope, receive, send)
                return
            messages = _answer(
                404,
                "NOT_FOUND",
                f"no endpoint {method} {path}",
                "POST /v1/models/NAME/predict",
                'Bearer realm="loopline"',
            )
        elif not principal.allows(need):
            messages = _answer(
                403,
                "PERMISSION_DENIED",
                f"{method} {path} needs the role {need!r}; token {principal.name!r} has "
                f"{principal.role!r}",
                f"use a token with role {need} or higher",
                'Bearer realm="loopline", error="insufficient_scope"',
            )
        else:
            await self.app(scope, receive, send)
            return
        if method != "GET":
            await _drain(receive)
        for message in messages:
            await send(message)

    def _lifespan_receive(self, receive: Receive) -> Receive:
        """``receive`` that also loads the tokens at start and writes their use at stop."""

        async def wrapped() -> Message:
            message = await receive()
            loop = asyncio.get_running_loop()
            if message["type"] == "lifespan.startup":
                await loop.run_in_executor(None, self.cache.start)
            elif message["type"] == "lifespan.shutdown":
                await loop.run_in_executor(None, self.cache.stop)
            return message

        return wrapped


async def _drain(receive: Receive) -> None:
    """Read the refused request's body, up to 1 MiB, so the client reads the answer."""
    budget = 1024 * 1024
    while budget > 0:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
        budget -= len(message.get("body", b""))


def with_auth(server: ModelServer) -> ServingAuthGate:
    """``server`` behind a token check on its own store's tokens.

    Example:
        >>> # uvicorn.run(with_auth(ModelServer(ctx)), port=8080)
    """
    settings: Any = server.ctx.settings
    return ServingAuthGate(server, TokenCache(server.ctx.engine, refresh_s=settings.auth_refresh_s))


def create_app() -> ASGIApp:
    """The app factory uvicorn calls in each worker of ``loopline serve --auth --workers N``.

    Example:
        >>> # uvicorn.run("loopline.serving.auth:create_app", factory=True, workers=4)
    """
    server = ModelServer()
    return with_host_check(with_auth(server), server.ctx)
