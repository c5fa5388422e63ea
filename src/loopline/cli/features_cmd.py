"""``loopline features``: list, show and materialize feature views; read the online store."""

from __future__ import annotations

import base64
import math
from typing import Any

import orjson
import typer
from rich.table import Table

from loopline.cli._common import console, esc, print_json
from loopline.cli._tables import list_table
from loopline.errors import InvalidInput

app = typer.Typer(
    help="Feature views: list, show, materialize to the online store, read online rows.\n\n"
    "Example: loopline features materialize user_stats --end 2024-06-01T00:00:00Z",
    no_args_is_help=True,
)


def _ttl(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds / 86400:g}d" if seconds % 86400 == 0 else f"{seconds:g}s"


@app.command("ls")
def ls_cmd(
    json_out: bool = typer.Option(False, "--json", help="Print the views as JSON."),
) -> None:
    """List the registered feature views.

    Example: loopline features ls --json
    """
    from loopline.data import features

    views = features.list_views()
    if json_out:
        print_json([v.to_dict() for v in views])
        return
    table = list_table(  # free text folds: a narrow terminal cut names to '…'
        "feature views",
        ("name", "entity", "features", "ttl", "source", "last materialized"),
        words=("features", "ttl", "last materialized"),
    )
    for v in views:
        d = v.to_dict()
        last = v.last_materialization
        table.add_row(
            esc(v.name),
            esc(", ".join(v.keys)),
            str(len(v.features)),
            _ttl(d["ttl_seconds"]),
            esc(v.source[:24] + ("…" if len(v.source) > 24 else "")),
            f"{last.end.isoformat()} ({last.rows} rows)" if last else "-",
        )
    console.print(table)


@app.command("show")
def show_cmd(
    name: str = typer.Argument(..., help="The feature view's name."),
    json_out: bool = typer.Option(False, "--json", help="Print the view as JSON."),
) -> None:
    """Show a feature view's definition and its last materialization.

    Example: loopline features show user_stats
    """
    from loopline.data import features

    d = features.get_view(name).to_dict()
    if json_out:
        print_json(d)
        return
    console.print(f"[bold]{esc(d['name'])}[/]")
    console.print(f"  entity:     {esc(', '.join(d['entity']))}")
    console.print(
        f"  timestamp:  {esc(d['timestamp'])}"
        + (f" (ties: {esc(d['created'])})" if d["created"] else "")
    )
    console.print(f"  ttl:        {_ttl(d['ttl_seconds'])}")
    rows = f" ({d['rows']} rows)" if d["rows"] else ""
    console.print(f"  source:     {esc(d['source'])}{rows}", soft_wrap=True)
    console.print(f"  features:   {esc(', '.join(d['features']))}")
    last = d["last_materialization"]
    if last:
        console.print(
            f"  materialized: {last['rows']} rows as of {last['end']} "
            f"to {esc(last['online_store'])}",
            soft_wrap=True,
        )


@app.command("materialize")
def materialize_cmd(
    name: str = typer.Argument(..., help="The feature view's name."),
    end: str = typer.Option(None, "--end", help="As of this time (ISO 8601; default: now)."),
    start: str = typer.Option(
        None, "--start", help="Only rows at or after this time, written over (ISO 8601)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Write the latest row per entity of a view to the online store.

    Without --start the view's online rows are replaced as a whole.

    Example: loopline features materialize user_stats --end 2024-06-01T00:00:00Z
    """
    from loopline.data import features

    with console.status(f"materializing {esc(name)}…", spinner="dots"):
        result = features.materialize(name, end=end, start=start)
    if json_out:
        print_json(result.to_dict())
    else:
        console.print(
            f"materialized [bold]{esc(name)}[/]: {result.rows} entities as of "
            f"{result.end.isoformat()} to {esc(result.online_store)} in {result.seconds:.2f}s",
            soft_wrap=True,
        )


def _json_safe(value: Any) -> Any:
    """``value`` with inf, -inf and NaN as the strings "Infinity", "-Infinity" and "NaN"
    and bytes as base64 text (protobuf's JSON mapping, as the tracking server writes
    metrics): JSON has no form of them and would print null (or the bytes' repr)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


def _key_hint(keys: tuple[str, ...]) -> str:
    """How to write a key of ``keys``' columns, with examples of both forms."""
    numbers = [42 + i for i in range(len(keys) - 1)]
    plain = ",".join(["eu", *map(str, numbers)])
    quoted = orjson.dumps(["eu,west", *numbers]).decode()
    return (
        f"give one value per key column ({', '.join(keys)}) joined with ',', e.g. {plain}; "
        f"or, when a value holds ',' or starts with '[', a JSON array, e.g. '{quoted}'"
    )


def _parse_key(text: str, view_name: str, keys: tuple[str, ...]) -> Any:
    """One CLI key argument: the text itself for a view with one key column; else its
    parts, joined by ',' or given as a JSON array (for parts holding ',')."""
    if len(keys) == 1:
        return text
    if text.startswith("["):
        try:
            parts = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(
                f"key {text!r} starts with '[' but is not a JSON array: {exc}",
                field="keys",
                hint=_key_hint(keys),
            ) from exc
        if not isinstance(parts, list) or not all(isinstance(p, str | int | float) for p in parts):
            raise InvalidInput(
                f"key {text!r} must be a JSON array of strings and numbers",
                field="keys",
                hint=_key_hint(keys),
            )
    else:
        parts = text.split(",")
    if len(parts) != len(keys):
        raise InvalidInput(
            f"key {text!r} has {len(parts)} part(s), but feature view {view_name!r} has "
            f"{len(keys)} key columns: {', '.join(keys)}",
            field="keys",
            hint=_key_hint(keys),
        )
    return tuple(parts)


@app.command("get-online")
def get_online_cmd(
    name: str = typer.Argument(..., help="The feature view's name."),
    keys: list[str] = typer.Argument(
        ...,
        help="Entity keys. For several key columns join a key's values with ',' (eu,42), "
        "or give them as a JSON array when a value holds ',' ('[\"eu,west\", 42]').",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the rows as JSON."),
) -> None:
    """Read the online features of one or more entities.

    Example: loopline features get-online user_stats 42 7 --json
    """
    from loopline.data import features

    view = features.get_view(name)
    parsed = [_parse_key(k, name, view.keys) for k in keys]
    rows = features.get_online(name, parsed)
    if json_out:
        print_json([{"key": k, "features": _json_safe(r)} for k, r in zip(keys, rows, strict=True)])
        return
    table = Table(title=f"{esc(name)} (online)")
    table.add_column(esc(", ".join(view.keys)))
    for f in view.features:
        table.add_column(esc(f))
    for k, r in zip(keys, rows, strict=True):
        table.add_row(esc(k), *["-" if r.get(f) is None else esc(r.get(f)) for f in view.features])
    console.print(table)
