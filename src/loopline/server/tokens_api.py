"""``/api/v1/whoami`` and the token API (admin): the HTTP face of ``loopline tokens``.

The token routes answer only on a server started with ``--auth``: on an open server anyone
could otherwise mint a token that stays valid once auth is turned on. Tokens made or
revoked here are audited with the acting token's name (``token:NAME``), and a revocation
takes effect at once in this server process.

Example:
    >>> # curl -H "Authorization: Bearer $ADMIN" -X POST localhost:5000/api/v1/tokens \\
    >>> #      -d '{"role": "viewer", "name": "grafana"}'
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from loopline.core import auth
from loopline.core.auth import Role
from loopline.core.context import Context
from loopline.errors import PermissionDenied
from loopline.server.auth import principal_of
from loopline.server.deps import get_ctx
from loopline.server.errors import ERROR_RESPONSES
from loopline.server.strict_json import StrictJsonRoute

router = APIRouter(
    route_class=StrictJsonRoute, prefix="/api/v1", tags=["auth"], responses=ERROR_RESPONSES
)
Ctx = Annotated[Context, Depends(get_ctx)]


class WhoAmIModel(BaseModel):
    """Who the server takes the caller for."""

    auth: bool = Field(description="Whether the server requires tokens.")
    name: str | None = Field(description="The token's name (None when auth is off).")
    role: Role = Field(description="The caller's role (admin when auth is off).")


class CreateTokenModel(BaseModel):
    """A token to make."""

    role: Role
    name: str | None = Field(None, max_length=100, examples=["grafana"])


class NewTokenModel(BaseModel):
    """A token just made: ``token`` is shown this once."""

    token: str
    name: str
    role: Role


class TokenModel(BaseModel):
    """What is stored about a token (never the token or its hash)."""

    name: str
    role: Role
    created_at: float
    created_by: str
    revoked_at: float | None
    last_used: float | None

    @classmethod
    def of(cls, info: auth.TokenInfo) -> TokenModel:
        """The model of a stored token."""
        return cls(
            name=info.name,
            role=info.role,
            created_at=info.created_at,
            created_by=info.created_by,
            revoked_at=info.revoked_at,
            last_used=info.last_used,
        )


def _admin_actor(request: Request) -> str:
    principal = principal_of(request)
    if not getattr(request.app.state, "auth", False) or principal is None:
        raise PermissionDenied(
            "tokens can be managed over HTTP only on a server started with --auth",
            hint="run `loopline tokens` on the server's host, or restart it with --auth",
        )
    return f"token:{principal.name}"


@router.get("/whoami", response_model=WhoAmIModel)
def whoami(request: Request) -> WhoAmIModel:
    """The caller's token name and role: a cheap way to check a token.

    Example: ``GET /api/v1/whoami`` -> ``{"auth": true, "name": "ci", "role": "editor"}``
    """
    principal = principal_of(request)
    if principal is None:
        return WhoAmIModel(auth=False, name=None, role="admin")
    return WhoAmIModel(auth=True, name=principal.name, role=principal.role)


@router.get("/tokens", response_model=list[TokenModel])
def list_tokens(request: Request, ctx: Ctx) -> list[TokenModel]:
    """Every token (admin).

    Example: ``GET /api/v1/tokens``
    """
    _admin_actor(request)
    return [TokenModel.of(t) for t in auth.list_tokens(ctx.engine)]


@router.post("/tokens", response_model=NewTokenModel, status_code=201)
def create_token(body: CreateTokenModel, request: Request, ctx: Ctx) -> NewTokenModel:
    """Make a token (admin); the answer is the only place the token is ever shown.

    Example: ``POST /api/v1/tokens {"role": "viewer", "name": "grafana"}``
    """
    actor = _admin_actor(request)
    made = auth.create_token(ctx.engine, body.role, name=body.name, actor=actor)
    return NewTokenModel(token=made.token, name=made.name, role=made.role)


@router.delete("/tokens/{name}", response_model=TokenModel)
def revoke_token(name: str, request: Request, ctx: Ctx) -> TokenModel:
    """Revoke a token (admin); this server refuses it from the next request on.

    Example: ``DELETE /api/v1/tokens/grafana``
    """
    actor = _admin_actor(request)
    info = auth.revoke_token(ctx.engine, name, actor=actor)
    cache: auth.TokenCache | None = getattr(request.app.state, "token_cache", None)
    if cache is not None:
        cache.forget()
    return TokenModel.of(info)
