"""``loopline gate``: judge a challenger model version before it may be deployed."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from loopline.cli._common import console, esc, print_json

#: Exit code when the challenger is blocked (distinct from errors, for CI scripts).
BLOCKED_EXIT = 1


def gate(
    name: str = typer.Argument(..., help="The registered model's name."),
    version: int = typer.Argument(..., help="The challenger's version number."),
    dataset: str = typer.Option(
        ..., "--dataset", "-d", help="The held-out dataset version, NAME@VERSION."
    ),
    thresholds: Path = typer.Option(..., "--thresholds", "-t", help="The thresholds YAML file."),
    json_out: bool = typer.Option(False, "--json", help="Print the verdict as JSON."),
) -> None:
    """Run the data and performance gates; exit 1 when the challenger is blocked.

    The challenger and the current champion are scored on the same held-out dataset
    version; the verdict is stored with the model version and audited.

    Example: loopline gate churn 4 --dataset churn-holdout@2 --thresholds gate.yaml
    """
    from loopline.delivery.gates import evaluate

    verdict = evaluate(name, version, dataset, thresholds)
    if json_out:
        print_json(verdict.to_dict())
    else:
        champ = verdict.champion_version
        title = (
            f"{name} v{version} vs champion v{champ}"
            if champ is not None
            else f"{name} v{version} (no champion yet)"
        )
        table = Table(title=f"{title} on {verdict.dataset}")
        table.add_column("gate")
        table.add_column("check")
        table.add_column("result")
        table.add_column("detail", overflow="fold")
        for c in verdict.checks:
            table.add_row(
                esc(c.gate),
                esc(c.check),
                "[green]pass[/]" if c.passed else "[red]FAIL[/]",
                esc(c.message),
            )
        console.print(table)
        if verdict.blessed:
            console.print(
                f"[bold green]blessed[/]: {name} v{version} may be deployed (verdict #{verdict.id})"
            )
        else:
            console.print(
                f"[bold red]blocked[/]: {name} v{version} may not be deployed "
                f"(verdict #{verdict.id})"
            )
    if not verdict.blessed:
        raise typer.Exit(BLOCKED_EXIT)
