"""The ``loopline`` command: a Typer app whose sub-commands live one module each.

Sub-commands load on first use: ``loopline data add`` imports the data commands and
nothing else, so a quick command does not pay for the imports of all the others
(SQLAlchemy models, FastAPI, pandas, ...). ``--help`` and the tests that walk the command
tree still see every command (:class:`LazyGroup`).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

import typer
import typer.main
from typer.core import TyperGroup

from loopline import __version__
from loopline.cli import _common
from loopline.cli._common import report_error, state

#: Each command: its name -> (module, attribute, whether the attribute is a Typer sub-app),
#: in the order ``--help`` lists them.
LAZY_COMMANDS: dict[str, tuple[str, str, bool]] = {
    "doctor": ("loopline.cli.doctor_cmd", "doctor", False),
    "drift": ("loopline.cli.drift_cmd", "drift", False),
    "demo": ("loopline.cli.demo_cmd", "demo", False),
    "server": ("loopline.cli.server_cmd", "server", False),
    "gate": ("loopline.cli.gate_cmd", "gate", False),
    "deploy": ("loopline.cli.deploy_cmd", "deploy", False),
    "serve": ("loopline.cli.serve_cmd", "serve", False),
    "score": ("loopline.cli.score_cmd", "score", False),
    "package": ("loopline.cli.package_cmd", "package", False),
    "backup": ("loopline.cli.backup_cmd", "backup", False),
    "restore": ("loopline.cli.backup_cmd", "restore", False),
    "reproduce": ("loopline.cli.reproduce_cmd", "reproduce", False),
    "db": ("loopline.cli.db_cmd", "app", True),
    "audit": ("loopline.cli.audit_cmd", "app", True),
    "runs": ("loopline.cli.runs_cmd", "app", True),
    "data": ("loopline.cli.data_cmd", "app", True),
    "features": ("loopline.cli.features_cmd", "app", True),
    "models": ("loopline.cli.models_cmd", "app", True),
    "pipeline": ("loopline.cli.pipeline_cmd", "app", True),
    "loop": ("loopline.cli.loop_cmd", "app", True),
    "tokens": ("loopline.cli.tokens_cmd", "app", True),
    "deployments": ("loopline.cli.deploy_cmd", "app", True),
}


#: What ``loopline --help`` says of each lazy command: the first paragraph of its help, kept
#: here so that the root's help imports none of the 22 modules (1 s instead of 0.3 s);
#: ``tests/cli/test_cli.py`` keeps each equal to the command's own.
COMMAND_SUMMARIES: dict[str, str] = {
    "doctor": "Check every configured backend (metadata, artifacts, online store) and report.",
    "drift": "Data drift of CURRENT against REFERENCE, with Evidently's default tests.",
    "demo": "Run the end-to-end demo in its own store folder.",
    "server": "Serve Loopline's REST API, the MLflow-compatible API and the UI, and run the loop.",
    "gate": "Run the data and performance gates; exit 1 when the challenger is blocked.",
    "deploy": "Roll a model version out; blocked versions need --force and --reason.",
    "serve": "Serve predictions of the deployed models at POST /v1/models/NAME/predict.",
    "score": "Score a file larger than memory in chunks; the output carries the model version.",
    "package": "Write a Dockerfile and a Deployment, Service and HorizontalPodAutoscaler.",
    "backup": "Back up the metadata database, every artifact and the online feature rows to DEST.",
    "restore": "Restore a backup into an empty store: its database, artifacts and online features.",
    "reproduce": "Rerun the pipeline that made a model on its recorded code, data and packages.",
    "db": "Manage the metadata database schema.",
    "audit": "Read and verify the audit log.",
    "runs": "List, inspect and compare tracked runs.",
    "data": "Versioned datasets and data contracts.",
    "features": "Feature views: list, show, materialize to the online store, read online rows.",
    "models": "List registered models, show their versions and lineage, and move aliases.",
    "pipeline": "Run cached, retryable pipelines of steps and inspect their runs.",
    "loop": "The closed loop: drift or decay -> retrain -> gate -> canary, per policy.",
    "tokens": "Make, list and revoke API tokens for `loopline server --auth` and "
    "`loopline serve --auth`.",
    "deployments": "List, inspect, promote and roll back deployments.",
}


@dataclass(frozen=True)
class _Summary:
    """What the help's table of commands reads of a command, for one not loaded yet."""

    name: str
    help: str
    short_help: None = None
    hidden: bool = False
    deprecated: bool = False
    rich_help_panel: None = None


def _noop() -> None:
    """A placeholder callback: it makes the holder app a group (see :func:`load_command`)."""


def load_command(name: str) -> Any:
    """Import the module of command ``name`` and build its click command as Typer would.

    Example:
        >>> load_command("doctor").name
        'doctor'
    """
    module, attr, is_group = LAZY_COMMANDS[name]
    target = getattr(importlib.import_module(module), attr)
    # A throw-away app with a callback is always a group, so the command can be picked
    # out of it exactly as `app.add_typer(...)` / `app.command(...)` would have built it.
    holder = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    holder.callback()(_noop)
    if is_group:
        holder.add_typer(target, name=name)
    else:
        holder.command(name)(target)
    return typer.main.get_command(holder).commands[name]  # type: ignore[attr-defined]


class _LazyCommands(MutableMapping[str, Any]):
    """A group's commands by name; a lazy one is built the first time it is looked up.

    Iterating lists every name without importing anything; looking one up (``get``,
    ``[]``, ``items()``) imports its module.
    """

    def __init__(self, eager: MutableMapping[str, Any]) -> None:
        self._loaded: dict[str, Any] = {}
        self._order = [n for n in LAZY_COMMANDS if n not in eager]
        for name, cmd in eager.items():
            self._loaded[name] = cmd
            if name not in self._order:
                self._order.append(name)

    def __getitem__(self, name: str) -> Any:
        if name not in self._loaded:
            if name not in self._order:
                raise KeyError(name)
            self._loaded[name] = load_command(name)
        return self._loaded[name]

    def __setitem__(self, name: str, cmd: Any) -> None:
        self._loaded[name] = cmd
        if name not in self._order:
            self._order.append(name)

    def __delitem__(self, name: str) -> None:
        self._loaded.pop(name, None)
        self._order.remove(name)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._order))

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, name: object) -> bool:
        return name in self._order


class LazyGroup(TyperGroup):
    """The root group: the commands of :data:`LAZY_COMMANDS` load when first looked up."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self._lazy = _LazyCommands(self.commands)
        self.commands = self._lazy

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        summary = COMMAND_SUMMARIES.get(cmd_name)
        # Only while the help is written, and only for a command not loaded already.
        loaded = cmd_name in self._lazy._loaded
        if summary is not None and ctx.meta.get(_SUMMARIES_ONLY) and not loaded:
            return _Summary(cmd_name, summary)
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)  # the names: Typer's own looks up (loads) every command

    def format_help(self, ctx: Any, formatter: Any) -> None:
        # The table of commands needs only their summaries: no command module is imported.
        ctx.meta[_SUMMARIES_ONLY] = True
        try:
            super().format_help(ctx, formatter)
        finally:
            ctx.meta.pop(_SUMMARIES_ONLY, None)


_SUMMARIES_ONLY = "loopline.help_summaries_only"


app = typer.Typer(
    name="loopline",
    cls=LazyGroup,
    help="Loopline: data, experiments, training, delivery, serving and monitoring in one loop.\n\n"
    "Example: loopline doctor",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        _common.console.print(f"loopline {__version__}")
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


# Commands are listed in LAZY_COMMANDS above (loaded on first use). A command registered
# here with app.command(...)/app.add_typer(...) works too, but its module loads every time.


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
