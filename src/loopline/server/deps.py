"""FastAPI dependencies shared by the routers."""

from __future__ import annotations

from fastapi import Request

from loopline.core.context import Context


def get_ctx(request: Request) -> Context:
    """The Loopline context the app was built on."""
    ctx: Context = request.app.state.ctx
    return ctx
