"""``loopline server``: the control-plane HTTP server (REST API, MLflow API, UI)."""

from __future__ import annotations

import typer

from loopline.cli._common import err_console


def server(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback by default)."),
    port: int = typer.Option(5000, "--port", min=1, max=65535, help="Port to listen on."),
    workers: int = typer.Option(1, "--workers", min=1, help="Worker processes."),
    log_level: str = typer.Option("warning", "--log-level", help="uvicorn log level."),
) -> None:
    """Serve Loopline's REST API, the MLflow-compatible API and the UI.

    Point the MLflow client at it with mlflow.set_tracking_uri("http://127.0.0.1:5000").
    Example: loopline server --host 127.0.0.1 --port 5000
    """
    import uvicorn

    from loopline.core.context import get_context

    ctx = get_context()
    _ = ctx.engine  # migrate before the first request, and fail early on a bad URI
    err_console.print(
        f"loopline server on http://{host}:{port} (bound to {host}"
        f"{'; loopback only' if host in ('127.0.0.1', 'localhost', '::1') else ''}), "
        f"metadata {ctx.settings.metadata_uri}, artifacts {ctx.settings.artifacts_uri}",
        highlight=False,
    )
    uvicorn.run(
        "loopline.server.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=False,
    )
