"""``loopline server``: the control-plane HTTP server (REST API, MLflow API, UI)."""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType

import typer

from loopline.cli._common import err_console
from loopline.cli._listen import ALLOWED_HOSTS_HELP


def server(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback by default)."),
    port: int = typer.Option(5000, "--port", min=1, max=65535, help="Port to listen on."),
    workers: int = typer.Option(1, "--workers", min=1, help="Worker processes."),
    log_level: str = typer.Option("warning", "--log-level", help="uvicorn log level."),
    auth: bool = typer.Option(
        False,
        "--auth",
        help="Require an API token (Authorization: Bearer) with the right role on every "
        "request but /health; see `loopline tokens`.",
    ),
    allowed_hosts: str | None = typer.Option(
        None,
        "--allowed-hosts",
        help=ALLOWED_HOSTS_HELP,
    ),
    loop: bool = typer.Option(
        True,
        "--loop/--no-loop",
        envvar="LOOPLINE_SERVER_LOOP",
        help="Run the closed loop (as `loopline loop run`) when policies exist; of several "
        "servers on one store, one runs it at a time.",
    ),
    loop_interval: float = typer.Option(
        60.0,
        "--loop-interval",
        min=0.1,
        envvar="LOOPLINE_LOOP_INTERVAL",
        help="Seconds between loop passes (and between tries to take the loop lock).",
    ),
    loop_root: Path = typer.Option(
        Path(),
        "--loop-root",
        help="Folder holding the loop's policies/*.yaml and loopline.toml.",
    ),
) -> None:
    """Serve Loopline's REST API, the MLflow-compatible API and the UI, and run the loop.

    Point the MLflow client at it with mlflow.set_tracking_uri("http://127.0.0.1:5000").
    With policies in ./policies/*.yaml or loopline.toml the server also runs the closed
    loop in the background (--no-loop turns it off).
    With --auth every request but /health needs an API token (loopline tokens create).
    Example: loopline server --host 127.0.0.1 --port 5000 --auth
    """
    import uvicorn

    from loopline.cli._listen import announce, configure_hosts, enable_auth
    from loopline.config import display_uri
    from loopline.core.context import get_context
    from loopline.core.read_timeout import TimedHttpProtocol

    configure_hosts(host, allowed_hosts)
    enable_auth(auth)  # before the context is built: its settings carry it to create_app
    ctx = get_context()
    _ = ctx.engine  # migrate before the first request, and fail early on a bad URI
    err_console.print(
        f"metadata {display_uri(ctx.settings.metadata_uri)}, "
        f"artifacts {display_uri(ctx.settings.artifacts_uri)}",
        highlight=False,
    )
    announce("loopline server", host, port, ctx=ctx)
    from loopline.loop.runner import server_loop

    runner, line = server_loop(ctx, enabled=loop, root=loop_root, interval=loop_interval)
    err_console.print(line, highlight=False, soft_wrap=True)
    # uvicorn shuts down on SIGTERM/SIGINT, then re-raises the signal to the handler that
    # was there before it: ours ends run() normally, so that the loop is stopped below.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stopped)
    try:
        uvicorn.run(
            "loopline.server.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            access_log=False,
            # Slow clients are cut off (LOOPLINE_REQUEST_READ_TIMEOUT_S).
            http=TimedHttpProtocol,
        )
    except _Stopped:
        pass
    finally:
        if runner is not None and not runner.stop(timeout=30):
            err_console.print("loop: a pass was still running at shutdown; left to exit")


class _Stopped(Exception):
    """The server was asked to stop (after uvicorn's graceful shutdown)."""


def _stopped(signum: int, frame: FrameType | None) -> None:
    raise _Stopped(signum)
