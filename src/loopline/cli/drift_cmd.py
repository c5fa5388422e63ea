"""``loopline drift``: data drift of a current table against a reference."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from loopline.cli._common import console, err_console, esc, print_json
from loopline.errors import InvalidInput

if TYPE_CHECKING:
    from loopline.monitoring.report import ColumnDrift, DriftReport


def _num(x: float | None) -> str:
    if x is None:
        return ""
    return "inf" if x == float("inf") else f"{x:.4g}"


def _missing(c: ColumnDrift) -> str:
    if c.missing_reference is None or c.missing_current is None:
        return ""
    return f"{c.missing_reference:.1%} -> {c.missing_current:.1%}"


def _print_table(report: DriftReport, names: list[str] | None) -> None:
    from rich.table import Table

    from loopline.monitoring.report import MISSING

    table = Table(title=f"{esc(report.current_label)} against {esc(report.reference_label)}")
    heads = ("column", "kind", "test", "statistic", "p-value", "threshold", "PSI", "missing")
    for head in (*heads, "verdict"):
        table.add_column(
            head,
            justify="right" if head in heads[3:] else "left",
            overflow="fold",
        )
    for name, c in report.columns.items():
        if c.broken:
            verdict = f"[bold red]{esc(c.status)}[/]"
        elif not c.tested:
            verdict = f"[dim]{esc(c.status)}[/]"
        elif c.drifted:
            verdict = "[bold red]drift[/]"
        else:
            verdict = "[green]no drift[/]" + (" (constant)" if c.status == "constant" else "")
        table.add_row(
            esc(name), c.kind, c.test if c.tested else "", _num(c.statistic), _num(c.p_value),
            _num(c.threshold), _num(c.psi),
            f"[bold red]{_missing(c)}[/]" if c.missing_drifted else _missing(c), verdict,
        )  # fmt: skip
    for name in report.missing_columns:
        style = "bold red" if names is not None else "dim"
        table.add_row(esc(name), *[""] * (len(heads) - 1), f"[{style}]{MISSING}[/]")
    console.print(table)
    word = "[bold red]DRIFT[/]" if report.drifted else "[green]no dataset drift[/]"
    console.print(
        f"{word}: {len(report.drifted_columns)} of {len(report.tested_columns)} tested columns "
        f"drifted ({report.share_drifted:.0%}; the dataset verdict needs "
        f"{report.drift_share:.0%}). Drifted: {esc(', '.join(report.drifted_columns) or 'none')}",
        highlight=False,
    )
    rose = [n for n, c in report.columns.items() if c.tested and c.missing_drifted]
    if rose:
        console.print(
            "[bold red]Missing values rose[/] (counts as a drifted column): "
            + esc(", ".join(f"{n} ({_missing(report.columns[n])})" for n in rose)),
            highlight=False,
        )
    # Without --columns, reference-only columns (labels, ids) are a warning, not drift.
    missing = report.missing_columns if names is not None else []
    broken = report.trigger_reasons([*report.broken_columns, *missing])
    if broken:
        console.print(
            "[bold red]Not tested, counts as drift[/]: "
            + esc("; ".join(f"{n} ({why})" for n, why in broken.items())),
            highlight=False,
        )


def _warn(report: DriftReport) -> None:
    from loopline.monitoring.report import NO_ROWS

    if report.n_current == 0:
        err_console.print(
            "[yellow]warning:[/] the current data has no rows: no column was tested "
            "(not enough data to judge, which is not drift)",
            highlight=False,
        )
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
    for name, status in report.broken_columns.items():
        err_console.print(f"[red]error:[/] {esc(name)}: {esc(status)}", highlight=False)
    for name, status in report.skipped_columns.items():
        if status != NO_ROWS:
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
        '"p_value", "threshold", "drifted", "missing_reference", "missing_current", '
        '"missing_drifted"}}, "not_tested": {NAME: why}}: the tested columns, and why each '
        "other one was not tested (skipped, broken or missing).",
    ),
    html: Path | None = typer.Option(
        None, "--html", help="Also write a self-contained HTML report with a plot per column."
    ),
    fail_on_drift: bool = typer.Option(
        False,
        "--fail-on-drift",
        help="Exit 1 (for CI) when at least half of the tested columns drifted (their values, "
        "or their share of missing values rose), a column is broken in the current data (all "
        "null, another type) or a column named in --columns is missing from it.",
    ),
    columns: str | None = typer.Option(
        None, "--columns", help="Check only these columns, comma-separated (e.g. age,plan)."
    ),
) -> None:
    """Data drift of CURRENT against REFERENCE, with Evidently's default tests.

    Numeric columns: Kolmogorov-Smirnov (reference of at most 1,000 rows) or the normed
    Wasserstein distance; categorical ones: chi-square / z-test or the Jensen-Shannon
    distance; PSI is shown for every column. The dataset drifts when at least half of the
    tested columns drift. Columns only on one side are reported and not tested; so are
    columns all null, or of another type, in CURRENT (broken: they count as drift). The
    share of missing values is shown on both sides. A CURRENT without rows tests nothing.

    Exit status: 0 whatever the verdict; with --fail-on-drift, 1 when at least half of the
    tested columns drifted (values or missing share), a column is broken or a column named
    in --columns is missing from CURRENT. 2 is a bad input, 4 a file or dataset that does
    not exist.

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
        _print_table(report, names)
    # Evidently's dataset verdict, with a rise of missing values counted as drift and a
    # broken column, or one named by --columns and missing, failing on its own.
    if fail_on_drift and report.trigger(share=report.drift_share, columns=names):
        raise typer.Exit(1)
