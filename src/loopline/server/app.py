"""The control-plane HTTP server: Loopline's REST API, the MLflow-compatible API, /health.

Example:
    >>> # uvicorn.run(create_app(), host="127.0.0.1", port=5000)
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse
from starlette.types import ASGIApp

from loopline import __version__
from loopline.core.context import Context, get_context
from loopline.core.hosts import AllowedHosts, protect
from loopline.server.ajax_api import AjaxApiAlias
from loopline.server.errors import error_for_path, install_error_handlers
from loopline.server.raw_path import EncodedSlashes
from loopline.server.responses import HeadAsGet, NoSniff, OrjsonResponse


class _App(FastAPI):
    """FastAPI with optional layers in front of its whole middleware stack."""

    front: Callable[[ASGIApp], ASGIApp] | None = None
    allowed_hosts: AllowedHosts | None = None

    def build_middleware_stack(self) -> ASGIApp:
        # Every answer of the routes, static files and error handlers says nosniff (the
        # fast path's answers carry it themselves: no extra layer on its requests).
        stack: ASGIApp = NoSniff(super().build_middleware_stack())
        stack = stack if self.front is None else self.front(stack)
        # Every layer (the auth gate, the fast path) and the router see a segment holding
        # %2F whole, not split at the slash the server decoded.
        stack = EncodedSlashes(stack)
        # Before anything routes on the path: MLflow's /ajax-api/ alias of /api/.
        stack = AjaxApiAlias(stack)
        # Before the auth gate and the routes: HEAD is a GET (same role) without the body.
        stack = HeadAsGet(stack)
        # Outermost, before the auth gate and the MLflow fast path: a request by a name
        # this server does not answer to (DNS rebinding) reaches nothing.
        if self.allowed_hosts is None:
            return stack
        return protect(stack, self.allowed_hosts, _host_refused)


def _host_refused(path: str, message: str, hint: str) -> ASGIApp:
    response = error_for_path(path, 403, "PERMISSION_DENIED", message, hint, field="Host")
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def create_app(ctx: Context | None = None) -> FastAPI:
    """Build the server app on ``ctx`` (default: the current context).

    Example:
        >>> # app = create_app(loopline.init(uri="postgresql://..."))
    """
    context = ctx or get_context()
    app = _App(
        title="Loopline",
        version=__version__,
        default_response_class=OrjsonResponse,
        openapi_url="/openapi.json",
        # Swagger UI and ReDoc are pages that load their scripts from a CDN: they fail
        # without network and would run a third party's code on this server's origin.
        # /docs and /redoc say where the description is instead.
        docs_url=None,
        redoc_url=None,
    )
    app.state.ctx = context
    # A bad value fails here, at start.
    app.allowed_hosts = AllowedHosts.parse(context.settings.allowed_hosts)
    install_error_handlers(app)

    @app.get("/health", tags=["ops"])
    def health() -> dict[str, Any]:
        """200 once the server and its metadata store answer."""
        _ = context.engine  # opens and migrates on first call
        return {"status": "ok", "version": __version__}

    @app.get("/docs", include_in_schema=False)
    @app.get("/redoc", include_in_schema=False)
    def no_api_browser(request: Request) -> OrjsonResponse:
        """No API browser here: where the API's description is."""
        return error_for_path(
            request.url.path,
            404,
            "NOT_FOUND",
            "this server has no API browser (Swagger UI and ReDoc would load from a CDN)",
            "the OpenAPI description is GET /openapi.json: open it in any OpenAPI viewer or "
            "client generator",
        )

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        """Prometheus text format."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    from loopline.server.api_v1_artifacts import router as api_v1_artifacts_router
    from loopline.server.api_v1_log_batch import router as api_v1_log_batch_router
    from loopline.server.api_v1_monitor import router as api_v1_monitor_router
    from loopline.server.api_v1_runs import router as api_v1_runs_router
    from loopline.server.mlflow_artifacts import router as artifacts_router
    from loopline.server.mlflow_experiments import router as experiments_router
    from loopline.server.mlflow_logged_models import router as logged_models_router
    from loopline.server.mlflow_metric_history import router as metric_history_router
    from loopline.server.mlflow_registry import router as registry_router
    from loopline.server.mlflow_run_lineage import router as run_lineage_router
    from loopline.server.mlflow_runs import router as runs_router

    # The MLflow client sends many small requests; its routes are matched first.
    app.include_router(experiments_router)
    app.include_router(runs_router)
    app.include_router(run_lineage_router)
    app.include_router(metric_history_router)
    app.include_router(api_v1_runs_router)
    app.include_router(api_v1_log_batch_router)
    app.include_router(api_v1_artifacts_router)
    app.include_router(api_v1_monitor_router)
    app.include_router(registry_router)
    app.include_router(logged_models_router)
    app.include_router(artifacts_router)

    from loopline.server.fast_path import MAX_BODY, MlflowFastPath

    # The MLflow client's frequent calls (log-metric, log-batch, runs/create, ...) skip
    # FastAPI's routing and validation; anything unexpected still reaches the routes.
    if context.settings.auth:  # behind the token gate, like every route
        app.add_middleware(MlflowFastPath, ctx=context)
    else:  # in front of every layer; reads no body the size limit would refuse
        limit = min(MAX_BODY, int(context.settings.max_request_mb * 1024 * 1024))
        app.front = partial(MlflowFastPath, ctx=context, max_body=limit)

    from loopline.server.ui import install_ui

    install_ui(app)

    from loopline.server.limits import install_body_limit

    # Around every route and the fast path: no handler sees a body over the limit.
    install_body_limit(app, context.settings.max_request_mb, context.settings.max_artifact_mb)

    from loopline.server.auth import install_auth

    # Last, so that with --auth its gate is the outermost layer, before the fast path.
    install_auth(app, context, enabled=context.settings.auth)
    return app
