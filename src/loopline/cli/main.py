"""The ``loopline`` command: a Typer app whose sub-commands live one module each."""

from __future__ import annotations

import sys

import typer

from loopline import __version__
from loopline.cli import (
    audit_cmd,
    backup_cmd,
    data_cmd,
    db_cmd,
    demo_cmd,
    deploy_cmd,
    doctor_cmd,
    drift_cmd,
    features_cmd,
    gate_cmd,
    loop_cmd,
    models_cmd,
    package_cmd,
    pipeline_cmd,
    reproduce_cmd,
    runs_cmd,
    score_cmd,
    serve_cmd,
    server_cmd,
    tokens_cmd,
)
from loopline.cli._common import console, report_error, state

app = typer.Typer(
    name="loopline",
    help="Loopline: data, experiments, training, delivery, serving and monitoring in one loop.\n\n"
    "Example: loopline doctor",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        console.print(f"loopline {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
) -> None:
    """Loopline: data, experiments, training, delivery, serving and monitoring in one loop.

    Example: loopline doctor
    """
    state.debug = debug


app.add_typer(db_cmd.app, name="db")
app.add_typer(audit_cmd.app, name="audit")
app.add_typer(runs_cmd.app, name="runs")
app.add_typer(data_cmd.app, name="data")
app.add_typer(features_cmd.app, name="features")
app.add_typer(models_cmd.app, name="models")
app.add_typer(pipeline_cmd.app, name="pipeline")
app.add_typer(loop_cmd.app, name="loop")
app.add_typer(tokens_cmd.app, name="tokens")
app.command("doctor")(doctor_cmd.doctor)
app.command("drift")(drift_cmd.drift)
app.command("demo")(demo_cmd.demo)
app.command("server")(server_cmd.server)
app.command("gate")(gate_cmd.gate)
app.command("deploy")(deploy_cmd.deploy)
app.add_typer(deploy_cmd.app, name="deployments")
app.command("serve")(serve_cmd.serve)
app.command("score")(score_cmd.score)
app.command("package")(package_cmd.package)
app.command("backup")(backup_cmd.backup)
app.command("restore")(backup_cmd.restore)
app.command("reproduce")(reproduce_cmd.reproduce)


def main() -> None:
    """Entry point of the ``loopline`` script: run the app behind the error boundary."""
    state.debug = "--debug" in sys.argv
    try:
        app()
    except SystemExit:
        raise
    except Exception as exc:
        sys.exit(report_error(exc))


if __name__ == "__main__":
    main()
