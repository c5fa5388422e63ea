"""``loopline db``: the metadata database's schema."""

from __future__ import annotations

import typer

from loopline.cli._common import console, print_json
from loopline.config import load_settings
from loopline.core.db import create_engine_for
from loopline.core.db_migrations import current_revision, head_revision, upgrade_reporting

app = typer.Typer(
    help="Manage the metadata database schema.\n\nExample: loopline db upgrade",
    no_args_is_help=True,
)


@app.command("upgrade")
def upgrade_cmd(
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Migrate the metadata database (LOOPLINE_URI) to the newest schema.

    Example: LOOPLINE_URI=postgresql://loopline@127.0.0.1:5432/loopline loopline db upgrade
    """
    settings = load_settings()
    engine = create_engine_for(settings.metadata_uri)
    before, after = upgrade_reporting(engine)  # read under the migration lock
    engine.dispose()
    if json_out:
        print_json({"from": before, "to": after})
    else:
        console.print(f"schema {before or '(empty)'} -> {after}")


@app.command("current")
def current_cmd(
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Show the schema revision of the metadata database and the newest one.

    Example: loopline db current
    """
    engine = create_engine_for(load_settings().metadata_uri)
    rev = current_revision(engine)
    engine.dispose()
    if json_out:
        print_json({"current": rev, "head": head_revision()})
    else:
        console.print(f"current: {rev or '(empty)'}   newest: {head_revision()}")
