"""``loopline serve``: the model server (data plane) for deployed model versions."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

import typer

from loopline.cli._common import err_console
from loopline.cli._listen import ALLOWED_HOSTS_HELP


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback by default)."),
    port: int = typer.Option(8080, "--port", min=1, max=65535, help="Port to listen on."),
    workers: int = typer.Option(1, "--workers", min=1, help="Worker processes."),
    model: list[str] = typer.Option(
        [],
        "--model",
        "-m",
        help="Serve only this deployment (NAME or models:/NAME), or pin a version "
        "(models:/NAME/VERSION or models:/NAME@ALIAS). Repeatable. Default: every deployment.",
    ),
    poll_interval: float = typer.Option(
        1.0, "--poll-interval", min=0.05, help="Seconds between polls of the deployments."
    ),
    max_body_mb: float = typer.Option(
        16.0, "--max-body-mb", min=0.001, help="Largest request body, in MB (413 beyond)."
    ),
    log_predictions: bool = typer.Option(
        True,
        "--log-predictions/--no-log-predictions",
        help="Write every answered request to the prediction log (on by default).",
    ),
    predict_timeout: float | None = typer.Option(
        None,
        "--predict-timeout",
        min=0.001,
        help="Seconds one prediction may take before the fallback version answers (or 504); "
        "a deployment's timeout_ms overrides it. Also LOOPLINE_SERVE_PREDICT_TIMEOUT_S. "
        "Default: no limit.",
    ),
    native_threads: int | None = typer.Option(
        None,
        "--native-threads",
        min=0,
        max=1024,
        help="Native (OpenMP) threads one prediction may use: LightGBM, XGBoost and "
        "scikit-learn's gradient boosting. 0: the library's default, all cores (for large "
        "batches on a machine of its own). Also LOOPLINE_SERVE_NATIVE_THREADS. Default: 1.",
    ),
    allowed_hosts: str | None = typer.Option(
        None,
        "--allowed-hosts",
        help=ALLOWED_HOSTS_HELP,
    ),
    log_level: str = typer.Option("warning", "--log-level", help="uvicorn log level."),
    auth: bool = typer.Option(
        False,
        "--auth",
        help="Require an API token (Authorization: Bearer): viewer to predict, editor to "
        "send feedback; /health and /livez stay open. See `loopline tokens`.",
    ),
) -> None:
    """Serve predictions of the deployed models at POST /v1/models/NAME/predict.

    Deployment changes (loopline deploy, canary steps, rollbacks) are picked up within
    --poll-interval seconds without dropping a request. /health (ready), /livez (alive) and
    /metrics (Prometheus) are served too.

    Example: loopline serve --host 127.0.0.1 --port 8080 --workers 2 --auth
    """
    import uvicorn

    from loopline.cli._listen import announce, configure_hosts, enable_auth
    from loopline.config import display_uri
    from loopline.core.context import get_context
    from loopline.core.read_timeout import TimedHttpProtocol
    from loopline.serving.control import check_selection

    configure_hosts(host, allowed_hosts)
    enable_auth(auth)  # before the context is built; workers read it from the environment
    ctx = get_context()
    _ = ctx.engine  # migrate before the first worker starts, and fail early on a bad URI
    # A bad --model value or a missing pinned version stops here with one line; inside
    # uvicorn's startup it would be a traceback after "listening on".
    check_selection(model)
    _warn_undeployed(model)
    err_console.print(
        f"loopline serve: {workers} worker(s), "
        f"metadata {display_uri(ctx.settings.metadata_uri)}, "
        f"artifacts {display_uri(ctx.settings.artifacts_uri)}",
        highlight=False,
    )
    announce("loopline serve", host, port, ctx=ctx)
    common = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "access_log": False,
        "timeout_graceful_shutdown": 10,
        # Slow clients are cut off (LOOPLINE_REQUEST_READ_TIMEOUT_S).
        "http": TimedHttpProtocol,
    }
    if workers == 1:
        from loopline.serving.app import ModelServer, with_host_check
        from loopline.serving.serve_settings import ServeSettings

        settings = ServeSettings(
            models=model,
            poll_interval=poll_interval,
            max_body_mb=max_body_mb,
            log_predictions=log_predictions,
        )
        if predict_timeout is not None:  # else LOOPLINE_SERVE_PREDICT_TIMEOUT_S, if set
            settings.predict_timeout_s = predict_timeout
        if native_threads is not None:  # else LOOPLINE_SERVE_NATIVE_THREADS, or 1
            settings.native_threads = native_threads
        server = ModelServer(ctx, settings)
        app: Any = server
        if ctx.settings.auth:
            from loopline.serving.auth import with_auth

            app = with_auth(server)
        uvicorn.run(with_host_check(app, ctx), **common)  # type: ignore[arg-type]
        return
    # Each worker process builds its app from the environment (uvicorn imports the factory).
    import orjson

    metrics_dir = tempfile.mkdtemp(prefix="loopline-serve-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    os.environ["LOOPLINE_SERVE_MODELS"] = orjson.dumps(model).decode()
    os.environ["LOOPLINE_SERVE_POLL_INTERVAL"] = str(poll_interval)
    os.environ["LOOPLINE_SERVE_MAX_BODY_MB"] = str(max_body_mb)
    os.environ["LOOPLINE_SERVE_MULTIPROCESS"] = "1"
    os.environ["LOOPLINE_SERVE_LOG_PREDICTIONS"] = "1" if log_predictions else "0"
    if predict_timeout is not None:
        os.environ["LOOPLINE_SERVE_PREDICT_TIMEOUT_S"] = str(predict_timeout)
    if native_threads is not None:
        os.environ["LOOPLINE_SERVE_NATIVE_THREADS"] = str(native_threads)
    try:
        uvicorn.run(
            f"loopline.serving.{'auth' if ctx.settings.auth else 'app'}:create_app",
            factory=True,
            workers=workers,
            **common,  # type: ignore[arg-type]
        )
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _warn_undeployed(models: list[str]) -> None:
    """Say at start which followed deployments do not exist yet: the server serves them
    once deployed, but a typo looked the same as a healthy server (/health 200, 404s)."""
    from loopline.cli._common import esc
    from loopline.serving.control import undeployed

    missing, deployed = undeployed(models)
    for name in missing:
        if name == "*":
            text = (
                "nothing is deployed yet: every prediction is a 404 until "
                "`loopline deploy NAME VERSION` deploys a model"
            )
        else:
            text = (
                f"{name!r} is not deployed (deployed: {', '.join(deployed) or 'none'}): "
                f"it is served once `loopline deploy {name} VERSION` deploys it"
            )
        err_console.print(f"[yellow]warning:[/] {esc(text)}", highlight=False)
