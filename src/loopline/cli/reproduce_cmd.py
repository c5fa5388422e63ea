"""``loopline reproduce``: rerun what made a model on its recorded code, data and packages."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from loopline.cli._common import console, err_console, esc, print_json

if TYPE_CHECKING:
    from loopline.training.reproduce import Reproduction

_STAGE_TEXT = {
    "resolve": "reading what was recorded",
    "checkout": "checking out the recorded code",
    "environment": "preparing the environment",
    "rerun": "rerunning the pipeline",
    "compare": "comparing metrics",
}


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def _print(result: Reproduction) -> None:
    console.print(
        f"original run {result.original_run_id} -> reproduction {result.reproduced_run_id} "
        f"({result.reproduced_status}, {result.environment} environment)",
        highlight=False,
    )
    if result.datasets:
        console.print(
            "data pinned to: "
            + ", ".join(f"{esc(n)}@{v}" for n, v in sorted(result.datasets.items())),
            highlight=False,
        )
    for p in result.package_mismatches:
        console.print(
            f"[yellow]package {p.package}: recorded {p.recorded or 'absent'}, "
            f"installed {p.installed or 'absent'}[/]",
            highlight=False,
        )
    table = Table(title=esc(result.model or result.original_run_id))
    for col in ("metric", "recorded", "reproduced", "abs diff", "rel diff", "match"):
        table.add_column(col)
    for name, m in result.metrics.items():
        table.add_row(
            esc(name),
            _number(m.recorded),
            _number(m.reproduced),
            _number(m.abs_diff),
            _number(m.rel_diff),
            "[green]yes[/]" if m.match else "[red]no[/]",
        )
    console.print(table)
    verdict = "[green]reproduced[/]" if result.match else "[red]NOT reproduced[/]"
    console.print(
        f"{verdict} within tolerance {result.tolerance:g} (relative) / "
        f"{result.abs_tolerance:g} (absolute)"
    )
    if result.workdir:
        console.print(f"code and environment kept in {esc(result.workdir)}", highlight=False)


def reproduce(
    uri: str = typer.Argument(
        ...,
        help="models:/NAME/VERSION, models:/NAME@ALIAS, or a pipeline (step) run id (or its "
        "first 8 or more characters).",
    ),
    env: str = typer.Option(
        "fresh",
        "--env",
        help="fresh: build a venv with the recorded package versions from PyPI (slow; uv when "
        "installed, else pip). "
        "current: reuse this interpreter, reporting each version that differs.",
    ),
    tolerance: float = typer.Option(
        1e-6,
        "--tolerance",
        min=0.0,
        help="Relative tolerance: a metric matches when |reproduced - recorded| <= "
        "max(tolerance * |recorded|, abs-tolerance).",
    ),
    abs_tolerance: float = typer.Option(
        0.0, "--abs-tolerance", min=0.0, help="Absolute tolerance (see --tolerance)."
    ),
    repo: Path = typer.Option(
        None,
        "--repo",
        help="The git repository holding the recorded commit (default: the recorded "
        "repository root, else the current folder). Only read.",
    ),
    executor: str = typer.Option(
        None, "--executor", "-x", help="Run the steps on another executor than recorded."
    ),
    keep: bool = typer.Option(
        False, "--keep", help="Keep the temporary folder with the code and the venv."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Rerun the pipeline that made a model on its recorded code, data and packages.

    Checks out the recorded git commit (plus the stored diff of a dirty tree) into a
    temporary folder, prepares the environment, reruns the pipeline with its recorded
    params and every dataset pinned to the version it read, as a new pipeline run tagged
    loopline.reproduction.of, and compares each metric. Exits 1 when a metric differs
    beyond the tolerance.

    --json prints {"model", "original_run_id", "reproduced_run_id", "environment",
    "package_mismatches", "metrics": {NAME: {"recorded", "reproduced", "abs_diff",
    "rel_diff", "match"}}, "match"}.

    Example: loopline reproduce models:/churn/3 --env current --tolerance 1e-6 --json
    """
    from loopline.tracking.api import resolve_run_id
    from loopline.training.reproduce import STAGES
    from loopline.training.reproduce import reproduce as run_reproduction

    if not uri.startswith("models:/"):
        uri = resolve_run_id(uri, field="uri")  # reproduce itself takes whole ids only
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task("reproduce", total=len(STAGES))

        def on_stage(stage: str, index: int, total: int) -> None:
            bar.update(task, completed=index, total=total, description=_STAGE_TEXT[stage])

        def on_line(line: str) -> None:
            bar.update(task, description=f"{_STAGE_TEXT['environment']}: {line[:60]}")

        result = run_reproduction(
            uri,
            env=env,  # type: ignore[arg-type]  # checked by reproduce, with a clear error
            tolerance=tolerance,
            abs_tolerance=abs_tolerance,
            repo=repo,
            executor=executor,
            keep=keep,
            on_stage=on_stage,
            on_line=on_line,
        )
        bar.update(task, completed=len(STAGES))
    if json_out:
        print_json(result.to_dict())
    else:
        _print(result)
    if not result.match:
        raise typer.Exit(1)
