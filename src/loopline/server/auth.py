"""Authentication for ``loopline server --auth``: an ASGI gate in front of every route.

Every request is looked up in the access table (:mod:`loopline.server.access`) before any
route, middleware or fast path runs:

* a public route (``/health``, the login form) goes on;
* otherwise the caller must send ``Authorization: Bearer TOKEN`` with an active token -
  else **401** with ``WWW-Authenticate: Bearer`` - whose role includes the one the table
  names - else **403**. Both answers are JSON naming what is needed (MLflow's
  ``{"error_code", "message"}`` on its routes, Loopline's ``{"error": {...}}`` elsewhere);
* a route missing from the table is refused to everyone (default deny); a path that is no
  route at all gets the app's 404, and a method a route does not serve the app's 405, once
  the caller has a valid token.

Browsers cannot add a header to a link, so the UI has a login form (``/login``) that puts
the token in a cookie - ``HttpOnly`` (page scripts cannot read it), ``SameSite=Strict``
(no other site can make the browser send it: no cross-site request forgery) and ``Secure``
when the server is reached over HTTPS. The cookie is accepted on UI pages only, never on
``/api/...``, and a state-changing UI request must come from the same origin.

Tokens are checked in memory (:class:`loopline.core.auth.TokenCache`): a revoked token is
refused within ``LOOPLINE_AUTH_REFRESH_S`` seconds (5 by default), at once when revoked
through this server's ``DELETE /api/v1/tokens/NAME``. Changes made through the server are
audited as ``token:NAME`` (:data:`loopline.config.request_actor`).

Example:
    >>> # install_auth(app, ctx, enabled=True)  # done by loopline.server.app.create_app
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import iter_route_contexts
from starlette.types import ASGIApp, Receive, Scope, Send

from loopline.config import request_actor
from loopline.core.access import DENY, PUBLIC, AccessTable, bearer_token, compile_route
from loopline.core.auth import Principal, TokenCache
from loopline.core.context import Context
from loopline.server.access import TABLE
from loopline.server.errors import error_for_path
from loopline.server.strict_json import StrictJsonRoute

COOKIE = "loopline_token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_MACHINE_PATHS = ("/api/", "/metrics", "/openapi.json", "/health")
_HINT_401 = (
    "make a token with `loopline tokens create --role viewer` on the server and send it as "
    "'Authorization: Bearer TOKEN' (MLflow client: MLFLOW_TRACKING_TOKEN; Loopline SDK: "
    "LOOPLINE_TOKEN; browser: /login)"
)


def _is_page(path: str) -> bool:
    return not path.startswith(_MACHINE_PATHS)


def _cookie(scope: Scope) -> str | None:
    for key, value in scope["headers"]:
        if key == b"cookie":
            for part in value.decode("latin-1").split(";"):
                name, _, val = part.strip().partition("=")
                if name == COOKIE and val:
                    return str(val)
    return None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _same_origin(scope: Scope) -> bool:
    """False when the browser says the request comes from another origin.

    ``Sec-Fetch-Site`` (sent by current browsers) must be ``same-origin`` or ``none`` (the
    user typed the address); ``Origin``, when sent, must be this server's own.
    """
    site = _header(scope, b"sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = _header(scope, b"origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == (_header(scope, b"host") or "")


def cross_origin_form(request: Request) -> Response | None:
    """The 403 for a form posted from another origin, else None.

    Without it a page on another site could log the user's browser in with the attacker's
    token (login CSRF: what the user then logs or uploads goes to the attacker's account,
    under the attacker's name in the audit log), log the user out, or make a server without
    ``--auth`` walk its whole audit chain as often as the page likes.

    Example:
        >>> # refused = cross_origin_form(request); if refused: return refused
    """
    if _same_origin(request.scope):
        return None
    from loopline.server.ui.routes import error_page

    return error_page(
        403,
        "Not allowed",
        f"{request.url.path} was posted from another site",
        "log in with the form of this server",
    )


class AuthGate:
    """ASGI middleware: 401 without a valid token, 403 without the role, else the app.

    Example:
        >>> # app.add_middleware(AuthGate, cache=TokenCache(ctx.engine))
    """

    def __init__(self, app: ASGIApp, cache: TokenCache, table: AccessTable = TABLE) -> None:
        self.app = app
        self.cache = cache
        self.table = table
        self._routes: list[tuple[frozenset[str], re.Pattern[str]]] | None = None

    def _is_route(self, scope: Scope, method: str, path: str) -> bool:
        """True when the app has a route for ``method`` at ``path``.

        Another method of an existing route is not one: the app answers it 405 (to a caller
        with a valid token), not the 403 of a route the access table forgot.
        """
        if self._routes is None:
            app = scope.get("app")
            routes = getattr(app, "routes", [])
            self._routes = [
                (
                    # A mount (static files, no methods) serves GET (and HEAD) below it.
                    frozenset(r.methods or ("GET",)),
                    compile_route(str(r.path) + ("" if r.methods else "/{rest:path}")),
                )
                for r in iter_route_contexts(routes)
                if r.path
            ]
        method = "GET" if method == "HEAD" else method  # as the access table reads it
        return any(method in methods and regex.fullmatch(path) for methods, regex in self._routes)

    async def _principal(self, scope: Scope, path: str) -> tuple[Principal | None, bool, bool]:
        """(caller, a credential was sent, it came from the UI cookie)."""
        token = bearer_token(_header(scope, b"authorization"))
        from_cookie = False
        if token is None and _is_page(path):
            token = _cookie(scope)
            from_cookie = token is not None
        if token is None:
            return None, False, False
        found = self.cache.lookup(token)
        if found is None:
            found = await anyio.to_thread.run_sync(self.cache.lookup_after_miss, token)
        return found, True, from_cookie

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self.app(scope, receive, send)
            return  # no websockets here: nothing to authenticate them against
        method: str = scope["method"]
        path = scope["path"]  # MLflow's /ajax-api/ alias is already /api/ here (ajax_api.py)
        need = self.table.lookup(method, path)
        if need == PUBLIC:
            await self.app(scope, receive, send)
            return
        unlisted = need == DENY and self._is_route(scope, method, path)
        if need == DENY and not unlisted:
            # Another method of a listed route (405), or no route at all (404): the app
            # answers that, to a caller with a valid token.
            need = "viewer"
        principal, sent, from_cookie = await self._principal(scope, path)
        if principal is None:
            response = _unauthenticated(scope, path, sent)
        elif unlisted:
            response = _forbidden(
                scope,
                path,
                f"{method} {path} has no role in the access table, so nobody may call it",
                "this is a bug in Loopline: report it (loopline/server/access.py)",
            )
        elif need not in (PUBLIC, DENY) and not principal.allows(need):
            response = _forbidden(
                scope,
                path,
                f"{method} {path} needs the role {need!r}; token {principal.name!r} has "
                f"{principal.role!r}",
                f"use a token with role {need} or higher (an admin makes one with "
                f"`loopline tokens create --role {need}`)",
            )
        elif from_cookie and method not in _SAFE_METHODS and not _same_origin(scope):
            response = _forbidden(
                scope, path, "cross-site request refused", "use the UI of this server"
            )
        else:
            scope.setdefault("state", {})["principal"] = principal
            # Audit events written for this request name the token (copied into the
            # worker threads that run sync endpoints).
            reset = request_actor.set(f"token:{principal.name}")
            try:
                await self.app(scope, receive, send)
            finally:
                request_actor.reset(reset)
            return
        await response(scope, receive, send)


def _unauthenticated(scope: Scope, path: str, sent: bool) -> Response:
    if sent:
        message = "the API token is not valid: unknown or revoked"
        challenge = 'Bearer realm="loopline", error="invalid_token"'
    else:
        message = "this server requires an API token"
        challenge = 'Bearer realm="loopline"'
    response: Response
    if _is_page(path) and scope["method"] in _SAFE_METHODS:
        query = scope.get("query_string", b"").decode("latin-1")
        target = scope["path"] + (f"?{query}" if query else "")
        response = login_page(target, message if sent else None, status=401)
    else:
        response = error_for_path(path, 401, "UNAUTHENTICATED", message, _HINT_401)
    response.headers["WWW-Authenticate"] = challenge
    return response


def _forbidden(scope: Scope, path: str, message: str, hint: str) -> Response:
    response: Response
    if _is_page(path) and scope["method"] in _SAFE_METHODS:
        from loopline.server.ui.routes import error_page

        response = error_page(403, "Not allowed", message, hint)
    else:
        response = error_for_path(path, 403, "PERMISSION_DENIED", message, hint)
    response.headers["WWW-Authenticate"] = 'Bearer realm="loopline", error="insufficient_scope"'
    return response


# -- the UI's login form ---------------------------------------------------------------


def _safe_next(target: str | None) -> str:
    """Only a path on this server (no ``//host`` or ``scheme:``): no open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def login_page(next_path: str, error: str | None, status: int = 200) -> HTMLResponse:
    """The login form, posting the token to ``/login``.

    Example:
        >>> login_page("/runs", None).status_code
        200
    """
    from loopline.server.ui.render import page

    return page("login.html", status, nav="", next=_safe_next(next_path), error=error)


router = APIRouter(route_class=StrictJsonRoute, include_in_schema=False)


@router.get("/login", response_class=HTMLResponse)
def login_form(next: str = "/") -> HTMLResponse:
    """The form a browser uses to give its token."""
    return login_page(next, None)


@router.post("/login", response_model=None)
async def login(request: Request) -> Response:
    """Check the posted token; on success keep it in an HttpOnly, SameSite=Strict cookie."""
    refused = cross_origin_form(request)
    if refused is not None:
        return refused
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0].strip()
    target = _safe_next((form.get("next") or ["/"])[0])
    cache: TokenCache = request.app.state.token_cache
    found = await anyio.to_thread.run_sync(cache.lookup_after_miss, token) if token else None
    if found is None:
        return login_page(target, "that token is not valid: unknown or revoked", status=401)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/logout", response_model=None)
def logout(request: Request) -> Response:
    """Forget the cookie."""
    refused = cross_origin_form(request)
    if refused is not None:
        return refused
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


def install_auth(app: FastAPI, ctx: Context, *, enabled: bool) -> None:
    """Add the token API; with ``enabled``, the login form and the gate (outermost).

    Call it last in ``create_app``, so that the gate wraps every other middleware.

    Example:
        >>> # install_auth(app, ctx, enabled=ctx.settings.auth)
    """
    from loopline.server.tokens_api import router as tokens_router

    app.state.auth = enabled
    app.include_router(tokens_router)
    if not enabled:
        return
    cache = TokenCache(ctx.engine, refresh_s=ctx.settings.auth_refresh_s)
    cache.start()
    app.state.token_cache = cache
    app.include_router(router)
    app.add_middleware(AuthGate, cache=cache)


def principal_of(request: Request) -> Principal | None:
    """The caller the gate let in, or None when auth is off.

    Example:
        >>> # principal_of(request).name -> 'ci'
    """
    state: dict[str, Any] = request.scope.get("state", {})
    found = state.get("principal")
    return found if isinstance(found, Principal) else None
