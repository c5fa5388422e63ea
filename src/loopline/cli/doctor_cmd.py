"""``loopline doctor``: which backends are configured and whether each answers."""

from __future__ import annotations

import typer
from rich.table import Table

from loopline.cli._common import console, esc, print_json
from loopline.config import load_settings
from loopline.core.doctor import run_checks


def doctor(
    json_out: bool = typer.Option(False, "--json", help="Print the checks as JSON."),
) -> None:
    """Check every configured backend (metadata, artifacts, online store) and report.

    Exits 2 when a check fails. Example: loopline doctor --json
    """
    checks = run_checks(load_settings())
    if json_out:
        print_json([c.__dict__ for c in checks])
    else:
        table = Table(title="loopline doctor")
        for col in ("check", "target", "status", "detail"):
            table.add_column(col)
        for c in checks:
            status = "[green]ok[/]" if c.ok else "[red]FAIL[/]"
            table.add_row(c.name, esc(c.target), status, esc(c.detail))
        console.print(table)
    if not all(c.ok for c in checks):
        raise typer.Exit(2)
