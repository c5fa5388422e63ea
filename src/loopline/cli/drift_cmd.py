"""``loopline drift``: data drift of a current table against a reference."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from loopline.cli._common import console, err_console, esc, print_json
from loopline.errors import InvalidInput

if TYPE_CHECKING:
    from loopline.monitoring.report import DriftReport


def _num(x: float | None) -> str:
    if x is None:
        return ""
    return "inf" if x == float("inf") else f"{x:.4g}"


def _print_table(report: DriftReport) -> None:
    from rich.table import Table

    table = Table(title=f"{report.current_label} against {report.reference_label}")
    for head in ("column", "kind", "test", "statistic", "p-value", "threshold", "PSI", "verdict"):
        table.add_column(
            head,
            justify="right" if head in ("statistic", "p-value", "threshold", "PSI") else "left",
            overflow="fold",
        )
    for name, c in report.columns.items():
        if not c.tested:
            verdict = f"[dim]{c.status}[/]"
        elif c.drifted:
            verdict = "[bold red]drift[/]"
        else:
            verdict = "[green]no drift[/]" + (" (constant)" if c.status == "constant" else "")
        table.add_row(
            name, c.kind, c.test if c.tested else "", _num(c.statistic), _num(c.p_value),
            _num(c.threshold), _num(c.psi), verdict,
        )  # fmt: skip
    console.print(table)
    word = "[bold red]DRIFT[/]" if report.drifted else "[green]no dataset drift[/]"
    console.print(
        f"{word}: {len(report.drifted_columns)} of {len(report.tested_columns)} tested columns "
        f"drifted ({report.share_drifted:.0%}; the dataset verdict needs "
        f"{report.drift_share:.0%}). Drifted: {', '.join(report.drifted_columns) or 'none'}",
        highlight=False,
    )


def _warn(report: DriftReport) -> None:
    if report.missing_columns:
        err_console.print(
            "[yellow]warning:[/] missing from the current data: "
            + esc(", ".join(report.missing_columns)),
            highlight=False,
        )
    if report.extra_columns:
        err_console.print(
            f"[yellow]warning:[/] only in the current data (not tested): "
            f"{esc(', '.join(report.extra_columns))}",
            highlight=False,
        )
    for name, status in report.skipped_columns.items():
        err_console.print(f"[yellow]warning:[/] {esc(name)}: {esc(status)}", highlight=False)


def _check_html(path: Path, exc: OSError | None) -> None:
    """Refuse an --html path the report cannot be written to, naming the option (exit 2)."""
    from loopline.monitoring.report import why_unwritable

    why = why_unwritable(path, exc)
    if why is not None:
        raise InvalidInput(
            f"cannot write --html {path}: {why}",
            field="--html",
            hint="name a file in a folder that exists and that you can write, "
            "e.g. --html drift.html",
        )


def drift(
    reference: str = typer.Argument(
        ..., help="Reference data: a Parquet or CSV file, or a dataset NAME@VERSION."
    ),
    current: str = typer.Argument(
        ..., help="Current data: a Parquet or CSV file, or a dataset NAME@VERSION."
    ),
    json_out: bool = typer.Option(
        False,
        "--json",
        help='Print {"drifted", "share_drifted", "columns": {NAME: {"test", "statistic", '
        '"p_value", "threshold", "drifted"}}} for the tested columns.',
    ),
    html: Path | None = typer.Option(
        None, "--html", help="Also write a self-contained HTML report with a plot per column."
    ),
    fail_on_drift: bool = typer.Option(
        False, "--fail-on-drift", help="Exit 1 when the dataset verdict is drift (for CI)."
    ),
    columns: str | None = typer.Option(
        None, "--columns", help="Check only these columns, comma-separated (e.g. age,plan)."
    ),
) -> None:
    """Data drift of CURRENT against REFERENCE, with Evidently's default tests.

    Numeric columns: Kolmogorov-Smirnov (reference of at most 1,000 rows) or the normed
    Wasserstein distance; categorical ones: chi-square / z-test or the Jensen-Shannon
    distance; PSI is shown for every column. The dataset drifts when at least half of the
    tested columns drift. Columns only on one side are reported and not tested.

    Exit status: 0 whatever the verdict; with --fail-on-drift, 1 when the dataset drifts.
    2 is a bad input, 4 a file or dataset that does not exist.

    Example: loopline drift churn@1 predictions.parquet --html drift.html
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from loopline.monitoring.drift import drift as compute

    if html is not None:
        _check_html(html, None)  # before the drift is computed, not after
    names = [c.strip() for c in columns.split(",") if c.strip()] if columns is not None else None
    with Progress(
        TextColumn("drift"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err_console,
        transient=True,
        disable=json_out or not err_console.is_terminal,
    ) as bar:
        task = bar.add_task("columns", total=None)

        def tick(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        report = compute(reference, current, names, progress=tick)
    _warn(report)
    if html is not None:
        try:
            path = report.to_html(html)
        except InvalidInput as exc:
            cause = exc.__cause__
            _check_html(html, cause if isinstance(cause, OSError) else None)
            raise
        if not json_out:
            console.print(f"wrote {path}", highlight=False)
    if json_out:
        print_json(report.to_dict())
    else:
        _print_table(report)
    if fail_on_drift and report.drifted:
        raise typer.Exit(1)
