"""``loopline audit``: read and verify the tamper-evident audit log."""

from __future__ import annotations

import typer
from rich.table import Table

from loopline.cli._common import console, err_console, esc, print_json
from loopline.core import audit
from loopline.core.calendar import utc_text
from loopline.core.context import get_context

app = typer.Typer(
    help="Read and verify the audit log.\n\nExample: loopline audit verify", no_args_is_help=True
)


@app.command("verify")
def verify_cmd(
    anchor: list[str] = typer.Option(
        None,
        "--anchor",
        help="SEQ:HASH printed by `loopline audit head` earlier and kept elsewhere: row SEQ "
        "must still have HASH, which shows a rewrite of the whole chain. Repeatable.",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Walk the hash chain and name every edited, inserted or deleted row.

    Exits 6 when the chain is broken. Example: loopline audit verify --anchor 45:9f2c...
    """
    anchors = [audit.Anchor.parse(text) for text in anchor or []]
    report = audit.verify(get_context().engine, anchors)
    if json_out:
        print_json({"ok": report.ok, "checked": report.checked, "problems": report.problems})
    elif report.ok:
        console.print(f"[green]audit log intact[/]: {report.checked} events verified")
    else:
        for problem in report.problems:
            err_console.print(f"[red]{esc(problem)}[/]")
        err_console.print(
            f"audit log BROKEN: {len(report.problems)} problem(s) in {report.checked} events"
        )
    if not report.ok:
        raise typer.Exit(6)


@app.command("head")
def head_cmd(
    json_out: bool = typer.Option(False, "--json", help="Print {seq, hash, anchor} as JSON."),
) -> None:
    """Print the newest event's SEQ:HASH, to keep where the database's writers cannot reach
    and pass to `audit verify --anchor` later.

    Example: loopline audit head >> /mnt/worm/loopline-anchors.txt
    """
    found = audit.head(get_context().engine)
    if json_out:
        print_json(
            None if found is None else {"seq": found.seq, "hash": found.hash, "anchor": str(found)}
        )
    elif found is None:
        err_console.print("the audit log is empty: nothing to anchor yet")
    else:
        console.print(str(found), soft_wrap=True, highlight=False)


@app.command("ls")
def ls_cmd(
    object_type: str = typer.Option(
        None,
        "--type",
        help="Only events about this object type: experiment, run, dataset, feature_view, "
        "registered_model, model_version, model (alerts, gates, the loop), deployment, loop, "
        "token.",
    ),
    object_id: str = typer.Option(None, "--id", help="Only events about this object id."),
    limit: int = typer.Option(100, "--limit", min=1, help="At most this many events."),
    json_out: bool = typer.Option(False, "--json", help="Print the events as JSON."),
) -> None:
    """List audit events, oldest first.

    Example: loopline audit ls --type registered_model --id churn
    """
    rows = audit.events(
        get_context().engine, object_type=object_type, object_id=object_id, limit=limit
    )
    if json_out:
        print_json([e.__dict__ for e in rows])
        return
    table = Table(title="audit log")
    for col in ("seq", "time", "actor", "action", "object", "reason"):
        table.add_column(col)
    for e in rows:
        table.add_row(
            str(e.seq),
            utc_text(e.ts),
            esc(e.actor),
            e.action,
            esc(f"{e.object_type}:{e.object_id}"),
            esc(e.reason or ""),
        )
    console.print(table)
