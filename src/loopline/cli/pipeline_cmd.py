"""``loopline pipeline``: run, resume, list and inspect pipeline runs."""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from loopline.cli._common import console, err_console, esc, print_json
from loopline.cli._tables import list_table
from loopline.core.calendar import utc_text
from loopline.errors import InvalidInput

if TYPE_CHECKING:
    from loopline.training.pipeline import Pipeline, PipelineResult
    from loopline.training.runner import StepEvent

app = typer.Typer(
    help="Run cached, retryable pipelines of steps and inspect their runs.\n\n"
    "Example: loopline pipeline run myproject.pipelines:train --param n=1000 --executor process",
    no_args_is_help=True,
)

_JSON = typer.Option(False, "--json", help="Print the result as JSON.")
_STYLE = {
    "finished": "green",
    "cached": "cyan",
    "failed": "red",
    "skipped": "yellow",
    "running": "blue",
    "pending": "dim",
}


def parse_params(items: list[str] | None, pipe: Pipeline[Any] | None = None) -> dict[str, Any]:
    """Turn ``k=v`` strings into params, converting ``v`` by the pipeline's annotations.

    A value is parsed as JSON (``5``, ``0.1``, ``true``, ``[1, 2]``) unless the param is
    annotated ``str``; a value that is not JSON stays a string.

    Example:
        >>> parse_params(["n=5", "name=churn", "ids=[1, 2]"])
        {'n': 5, 'name': 'churn', 'ids': [1, 2]}
    """
    hints: dict[str, Any] = {}
    if pipe is not None:
        for name, p in inspect.signature(pipe.fn).parameters.items():
            hints[name] = p.annotation
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidInput(
                f"--param {item!r} is not in k=v form",
                field="--param",
                hint="write --param n=1000 (repeat --param for several)",
            )
        if hints.get(key) in (str, "str"):
            out[key] = raw
            continue
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
        _check_scalar(key, out[key], hints.get(key))
    return out


# Annotations a value from the shell is checked against: the value must be one of the types.
_SCALARS: dict[Any, tuple[type, ...]] = {
    int: (int,),
    "int": (int,),
    float: (int, float),
    "float": (int, float),
    bool: (bool,),
    "bool": (bool,),
}


def _check_scalar(key: str, value: Any, annotation: Any) -> None:
    """InvalidInput when a param annotated int, float or bool got another kind of value
    (``n=abc`` for ``n: int`` ran the pipeline with the text ``"abc"`` until a step failed).

    Example:
        >>> _check_scalar("n", 5, int)
    """
    kinds = _SCALARS.get(annotation)
    if kinds is None:
        return
    # bool is an int in Python: true is no count, and 1 is no flag.
    if isinstance(value, kinds) and (bool in kinds) == isinstance(value, bool):
        return
    name = kinds[-1].__name__
    raise InvalidInput(
        f"--param {key}={json.dumps(value)}: the pipeline takes {key} as {name}",
        field=f"--param {key}",
        hint={"int": "e.g. --param n=1000", "float": "e.g. --param lr=0.1"}.get(
            name, f"--param {key}=true or --param {key}=false"
        ),
    )


def _seconds(start: float | None, end: float | None) -> str:
    if start is None or end is None:
        return ""
    return f"{end - start:.2f}s"


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if text and text.strip() else ""


def _project_on_path() -> None:
    """Let ``MODULE`` be a module of the current folder, as ``python -m`` does."""
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


@contextmanager
def _progress(total_hint: str) -> Iterator[Any]:
    """A Rich progress bar on stderr; yields the ``on_event`` callback for the runner."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task(total_hint, total=None)

        def on_event(event: StepEvent) -> None:
            style = _STYLE.get(event.status, "")
            bar.update(
                task,
                completed=event.done,
                total=event.total,
                description=f"{total_hint}: [{style}]{event.step} {event.status}[/]",
            )

        yield on_event


def _print_result(result: PipelineResult, json_out: bool) -> None:
    if json_out:
        print_json(result.summary())
    else:
        _print_steps(result)
        style = _STYLE.get(result.status, "")
        console.print(
            f"pipeline [bold]{result.pipeline}[/] run {result.run_id}: [{style}]{result.status}[/]"
        )
        for rec in result.steps.values():
            if rec.status == "failed":
                console.print(
                    f"[red]{rec.name}[/] failed after {rec.attempts} attempt(s): "
                    f"{esc(_first_line(rec.error))}",
                    highlight=False,
                )
        if result.status == "failed":
            console.print(f"rerun what failed: loopline pipeline resume {result.run_id}")
    if result.status != "finished":
        raise typer.Exit(1)


def _print_steps(result: PipelineResult) -> None:
    table = Table(title=f"{result.pipeline} {result.run_id}")
    for col in ("step", "status", "attempts", "time", "output"):
        table.add_column(col, overflow="fold")
    table.add_column("run", no_wrap=True)  # whole, to paste into `loopline runs show`
    for rec in result.steps.values():
        style = _STYLE.get(rec.status, "")
        output = f"{rec.output.type} {rec.output.digest[:12]}" if rec.output else ""
        table.add_row(
            rec.name,
            f"[{style}]{rec.status}[/]",
            str(rec.attempts),
            _seconds(rec.started_at, rec.finished_at),
            output,
            rec.run_id or (f"from {rec.cached_from}" if rec.cached_from else ""),
        )
    console.print(table)


@app.command("run")
def run_cmd(
    target: str = typer.Argument(..., help="The pipeline as MODULE:PIPELINE."),
    executor: str = typer.Option(
        "local", "--executor", "-x", help="Where steps run: local, process or ray."
    ),
    param: list[str] = typer.Option(
        None, "--param", "-p", help="A pipeline param as k=v (repeat for several)."
    ),
    json_out: bool = _JSON,
) -> None:
    """Run a pipeline; exits 1 when a step failed (then resume it).

    Example: loopline pipeline run myproject.pipelines:train --param n=1000 --executor process
    """
    from loopline.training.executor_checks import check_executor_name
    from loopline.training.pipeline import resolve_pipeline

    check_executor_name(executor)
    _project_on_path()
    pipe = resolve_pipeline(target)
    params = parse_params(param, pipe)
    with _progress(pipe.name) as on_event:
        result = pipe.run(params, executor=executor, on_event=on_event)
    _print_result(result, json_out)


@app.command("resume")
def resume_cmd(
    run_id: str = typer.Argument(
        ..., help="The pipeline run to resume: its id, or the first 8 or more characters."
    ),
    executor: str = typer.Option(
        None, "--executor", "-x", help="Run on another executor than the first time."
    ),
    json_out: bool = _JSON,
) -> None:
    """Rerun only the failed and skipped steps of a run (finished ones keep their outputs).

    Example: loopline pipeline resume 3f2a9c0e5b7d4e1f8a6b2c9d0e1f2a3b --json
    """
    from loopline.tracking.api import resolve_run_id
    from loopline.training.executor_checks import check_executor_name
    from loopline.training.pipeline import resume

    if executor is not None:
        check_executor_name(executor)
    run_id = resolve_run_id(run_id)
    _project_on_path()
    with _progress(f"resume {run_id[:8]}") as on_event:
        result = resume(run_id, executor=executor, on_event=on_event)
    _print_result(result, json_out)


def _counts(result: PipelineResult) -> dict[str, int]:
    counts: dict[str, int] = {}
    for rec in result.steps.values():
        counts[rec.status] = counts.get(rec.status, 0) + 1
    return counts


@app.command("ls")
def ls_cmd(
    pipeline_name: str = typer.Option(None, "--pipeline", help="Only runs of this pipeline."),
    limit: int = typer.Option(50, "--limit", min=1, help="At most this many runs."),
    json_out: bool = _JSON,
) -> None:
    """List pipeline runs, newest first, with how many steps ended in each status.

    Example: loopline pipeline ls --pipeline train --limit 10
    """
    from loopline.training.pipeline import list_pipeline_runs

    runs = list_pipeline_runs(pipeline_name, limit)
    if json_out:
        print_json(
            {
                "runs": [
                    {
                        "run_id": r.run_id,
                        "pipeline": r.pipeline,
                        "status": r.status,
                        "executor": r.record.executor,
                        "started_at": r.record.started_at,
                        "finished_at": r.record.finished_at,
                        "resumed_from": r.record.resumed_from,
                        "steps": _counts(r),
                    }
                    for r in runs
                ]
            }
        )
        return
    # The id whole when the table fits, else its first 8 characters, which `pipeline
    # show/resume` take as well (a narrow terminal cut it to 9 characters and an ellipsis).
    table = list_table(
        "pipeline runs",
        ("run", "pipeline", "status", "executor", "started", "time", "steps"),
        words=("status", "executor", "started", "time"),
        run_ids=("run",),
    )
    for r in runs:
        style = _STYLE.get(r.status, "")
        table.add_row(
            r.run_id,
            r.pipeline,
            f"[{style}]{r.status}[/]",
            r.record.executor,
            utc_text(r.record.started_at),
            _seconds(r.record.started_at, r.record.finished_at),
            ", ".join(f"{n} {s}" for s, n in _counts(r).items()),
        )
    console.print(table)


@app.command("show")
def show_cmd(
    run_id: str = typer.Argument(
        ..., help="The pipeline run to show: its id, or the first 8 or more characters."
    ),
    json_out: bool = _JSON,
) -> None:
    """Show a pipeline run: params and, per step, status, attempts, lineage and errors.

    Example: loopline pipeline show 3f2a9c0e --json
    """
    from loopline.tracking.api import resolve_run_id
    from loopline.training.pipeline import get_pipeline_run
    from loopline.training.runner import display

    result = get_pipeline_run(resolve_run_id(run_id))
    rec = result.record
    if json_out:
        print_json(
            {
                "run_id": rec.id,
                "pipeline": rec.pipeline,
                "target": rec.target,
                "status": rec.status,
                "executor": rec.executor,
                "params": {k: display(s) for k, s in rec.params.items()},
                "started_at": rec.started_at,
                "finished_at": rec.finished_at,
                "resumed_from": rec.resumed_from,
                "steps": {
                    s.name: {
                        "status": s.status,
                        "attempts": s.attempts,
                        "function": s.function,
                        "upstream": s.upstream,
                        "params": s.params,
                        "inputs": s.inputs,
                        "output": None
                        if s.output is None
                        else {"digest": s.output.digest, "type": s.output.type},
                        "cache_key": s.cache_key,
                        "code_hash": s.code_hash,
                        "run_id": s.run_id,
                        "cached_from": s.cached_from,
                        "error": s.error,
                        "started_at": s.started_at,
                        "finished_at": s.finished_at,
                    }
                    for s in rec.steps.values()
                },
            }
        )
        return
    style = _STYLE.get(rec.status, "")
    console.print(
        f"[bold]{rec.pipeline}[/] ({rec.target}) run {rec.id}: [{style}]{rec.status}[/] "
        f"on {rec.executor}, started {utc_text(rec.started_at)}"
        + (f", resumed from {rec.resumed_from}" if rec.resumed_from else ""),
        highlight=False,
    )
    if rec.params:
        console.print(
            "params: " + ", ".join(f"{k}={display(s)!r}" for k, s in rec.params.items()),
            highlight=False,
        )
    _print_steps(result)
    for s in rec.steps.values():
        if s.status == "failed" and s.error:
            console.print(f"[red]{esc(s.name)}[/] error:\n{esc(s.error.strip())}", highlight=False)
