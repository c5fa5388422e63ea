"""``loopline tokens``: make, list and revoke the API tokens of ``--auth`` servers."""

from __future__ import annotations

import typer

from loopline.cli._common import console, err_console, print_json
from loopline.cli._tables import list_table
from loopline.core import auth
from loopline.core.calendar import utc_text
from loopline.core.context import get_context

app = typer.Typer(
    help="Make, list and revoke API tokens for `loopline server --auth` and "
    "`loopline serve --auth`.\n\nExample: loopline tokens create --role viewer --name grafana",
    no_args_is_help=True,
)


@app.command("create")
def create_cmd(
    role: str = typer.Option(
        ..., "--role", help="viewer (read, predict), editor (log, register, deploy) or admin."
    ),
    name: str = typer.Option(None, "--name", help="A unique name (default: ROLE-xxxxxx)."),
    json_out: bool = typer.Option(False, "--json", help="Print {token, role, name} as JSON."),
) -> None:
    """Make a token and print it - the only time it is shown; only its hash is stored.

    Example: loopline tokens create --role editor --name ci --json
    """
    ctx = get_context()
    made = auth.create_token(ctx.engine, role, name=name, actor=ctx.settings.actor_name)
    if json_out:
        print_json({"token": made.token, "role": made.role, "name": made.name})
        return
    console.print(made.token, highlight=False, soft_wrap=True)
    err_console.print(
        f"token {made.name!r} ({made.role}) made; it is shown only this once. Send it as "
        "'Authorization: Bearer TOKEN', or set MLFLOW_TRACKING_TOKEN / LOOPLINE_TOKEN.",
        highlight=False,
    )


@app.command("ls")
def ls_cmd(
    all_tokens: bool = typer.Option(True, "--all/--active", help="Include revoked tokens."),
    json_out: bool = typer.Option(False, "--json", help="Print the tokens as JSON."),
) -> None:
    """List tokens: name, role, when made and by whom, last use, revocation (never the token).

    Example: loopline tokens ls --active
    """
    rows = auth.list_tokens(get_context().engine, include_revoked=all_tokens)
    if json_out:
        print_json(
            [
                {
                    "name": t.name,
                    "role": t.role,
                    "active": t.active,
                    "created_at": t.created_at,
                    "created_by": t.created_by,
                    "last_used": t.last_used,
                    "revoked_at": t.revoked_at,
                }
                for t in rows
            ]
        )
        return
    table = list_table(  # free text folds: a narrow terminal cut names to '…'
        "API tokens",
        ("name", "role", "created", "by", "last used", "revoked"),
        words=("role", "created", "last used", "revoked"),
    )
    for t in rows:
        table.add_row(
            t.name,
            t.role,
            utc_text(t.created_at),
            t.created_by,
            utc_text(t.last_used),
            utc_text(t.revoked_at),
        )
    console.print(table)


@app.command("revoke")
def revoke_cmd(
    name: str = typer.Argument(..., help="The token's name (see `loopline tokens ls`)."),
    json_out: bool = typer.Option(False, "--json", help="Print the revoked token as JSON."),
) -> None:
    """Revoke a token: running servers refuse it within LOOPLINE_AUTH_REFRESH_S (5 s).

    Example: loopline tokens revoke grafana
    """
    ctx = get_context()
    info = auth.revoke_token(ctx.engine, name, actor=ctx.settings.actor_name)
    if json_out:
        print_json({"name": info.name, "role": info.role, "revoked_at": info.revoked_at})
        return
    console.print(
        f"token {info.name!r} ({info.role}) revoked; running servers refuse it within "
        f"{ctx.settings.auth_refresh_s:g} s",
        highlight=False,
    )
