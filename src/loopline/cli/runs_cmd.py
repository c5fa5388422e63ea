"""``loopline runs``: list, inspect and compare tracked runs."""

from __future__ import annotations

import math
from typing import Any, TypeGuard

import typer
from rich.table import Table

from loopline.cli._common import console, esc, print_json
from loopline.cli._tables import list_table
from loopline.core.calendar import utc_text_ms
from loopline.errors import InvalidInput
from loopline.tracking.validation import stored_infinity

app = typer.Typer(
    help="List, inspect and compare tracked runs.\n\n"
    'Example: loopline runs ls --experiment churn --filter "metrics.auc > 0.8"',
    no_args_is_help=True,
)

_SYSTEM_TAG_PREFIXES = ("mlflow.", "loopline.")
_INPUT_COLUMNS = ("kind", "name", "version", "digest", "context")


def _duration(start: int, end: int | None) -> str:
    if end is None:
        return "running"
    seconds = (end - start) / 1000
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isnan(value):
        return "NaN"  # as the UI and MLflow's UI write it
    if stored_infinity(value):  # +/-inf as stored: the UI says inf too, not 1.79769e+308
        return "inf" if value > 0 else "-inf"
    return f"{value:.6g}"


def _comparable(value: float | None) -> TypeGuard[float]:
    """True for a value a delta can be taken from: present, not NaN, not a stored inf."""
    return value is not None and not math.isnan(value) and not stored_infinity(value)


def _json_float(value: float | None) -> float | str | None:
    if value is not None and math.isnan(value):
        return "NaN"
    return value


def _run_json(run: Any) -> dict[str, Any]:
    data: dict[str, Any] = run.to_dict()
    data["metrics"] = {k: _json_float(v) for k, v in data["metrics"].items()}
    return data


@app.command("ls")
def ls_cmd(
    experiment: list[str] = typer.Option(
        None, "--experiment", "-e", help="Only runs of this experiment (repeat for several)."
    ),
    filter_: str = typer.Option(
        None,
        "--filter",
        "-f",
        help="MLflow filter, e.g. \"metrics.auc > 0.8 and status = 'FINISHED'\".",
    ),
    order_by: list[str] = typer.Option(
        None, "--order-by", "-o", help='Order, e.g. "metrics.auc DESC" (repeat for several).'
    ),
    max_results: int = typer.Option(50, "--max", min=1, help="At most this many runs."),
    page_token: str = typer.Option(None, "--page-token", help="Continue from a previous page."),
    json_out: bool = typer.Option(False, "--json", help="Print the runs as JSON."),
) -> None:
    """List runs, newest first, optionally filtered and ordered.

    Example: loopline runs ls -e churn -f "params.model = 'lgbm'" --order-by "metrics.auc DESC"
    """
    from loopline.tracking.api import search_runs

    page = search_runs(
        experiment=experiment or None,
        filter=filter_,
        order_by=order_by or None,
        max_results=max_results,
        page_token=page_token,
    )
    if json_out:
        print_json({"runs": [_run_json(r) for r in page], "next_page_token": page.next_page_token})
        return
    table = list_table(
        f"runs ({len(page)})",
        ("id", "name", "experiment", "status", "started (UTC)", "duration", "metrics"),
        words=("status", "started (UTC)", "duration"),
        run_ids=("id",),
    )
    for run in page:
        data = run.to_dict()
        shown = list(data["metrics"].items())[:4]
        metrics = ", ".join(f"{esc(k)}={_num(v)}" for k, v in shown)
        if len(data["metrics"]) > len(shown):
            metrics += ", ..."
        table.add_row(
            data["id"],
            esc(data["name"] or ""),
            esc(data["experiment"]),
            data["status"],
            utc_text_ms(data["start_time"]),
            _duration(data["start_time"], data["end_time"]),
            metrics,
        )
    console.print(table)
    if page.next_page_token:
        console.print(f"more runs: --page-token {page.next_page_token}", style="dim")


@app.command("show")
def show_cmd(
    run_id: str = typer.Argument(..., help="The run id, or its first 8 or more characters."),
    json_out: bool = typer.Option(False, "--json", help="Print the run as JSON."),
) -> None:
    """Show one run: its status, params, metrics, tags, inputs and artifacts.

    Example: loopline runs show 3f2a9c0d
    """
    from loopline.tracking.api import get_run, resolve_run_id

    run = get_run(resolve_run_id(run_id))
    data = _run_json(run)
    artifacts = [a.__dict__ for a in run.artifacts]
    if json_out:
        print_json({**data, "artifacts": artifacts})
        return
    info = Table(title=f"run {data['id']}", show_header=False)
    info.add_column("field", style="bold")
    info.add_column("value", overflow="fold")
    for field in ("name", "experiment", "status", "user", "parent_run_id", "artifact_uri"):
        info.add_row(field, esc(data[field] or ""))
    info.add_row("started (UTC)", utc_text_ms(data["start_time"]))
    info.add_row("ended (UTC)", utc_text_ms(data["end_time"]))
    console.print(info)
    _kv_table("params", data["params"])
    _kv_table("metrics (latest)", {k: _num(v) for k, v in run.metrics.items()})
    user_tags = {k: v for k, v in data["tags"].items() if not k.startswith(_SYSTEM_TAG_PREFIXES)}
    system_tags = {k: v for k, v in data["tags"].items() if k.startswith(_SYSTEM_TAG_PREFIXES)}
    _kv_table("tags", user_tags)
    _kv_table("recorded automatically", system_tags)
    if data["inputs"]:
        table = Table(title="inputs")
        for col in _INPUT_COLUMNS:
            table.add_column(col, overflow="fold")
        for item in data["inputs"]:
            table.add_row(*(esc(item[c] or "") for c in _INPUT_COLUMNS))
        console.print(table)
    if artifacts:
        table = Table(title="artifacts")
        for col in ("path", "size", "digest"):
            table.add_column(col, overflow="fold")
        for a in artifacts:
            table.add_row(esc(a["path"]), str(a["size"]), a["digest"][:16])
        console.print(table)


def _kv_table(title: str, values: dict[str, Any]) -> None:
    if not values:
        return
    table = Table(title=title)
    table.add_column("key", style="bold", overflow="fold")
    table.add_column("value", overflow="fold")
    for key, value in values.items():
        text = "" if value is None else str(value)
        table.add_row(esc(key), esc(text if len(text) <= 300 else text[:300] + " ..."))
    console.print(table)


def comparison(runs: list[Any]) -> dict[str, Any]:
    """Params that differ between runs, and every metric with its delta against the first.

    Example:
        >>> # comparison([ll.get_run(a), ll.get_run(b)])["metrics"]["auc"]["deltas"]
    """
    params = [r.params for r in runs]
    metrics = [r.metrics for r in runs]
    differing = {
        key: [p.get(key) for p in params]
        for key in sorted({k for p in params for k in p})
        if len({p.get(key) for p in params}) > 1
    }
    compared: dict[str, Any] = {}
    for key in sorted({k for m in metrics for k in m}):
        values = [m.get(key) for m in metrics]
        base = values[0]
        # No delta from or to NaN or inf (as the UI's compare page): the stored +/-inf is
        # the largest float, and a difference with it or with NaN means nothing.
        deltas = [
            None if i == 0 or not _comparable(v) or not _comparable(base) else v - base
            for i, v in enumerate(values)
        ]
        compared[key] = {
            "values": [_json_float(v) for v in values],
            "deltas": [_json_float(d) for d in deltas],
        }
    return {
        "runs": [{"id": r.id, "name": r.name, "status": r.status} for r in runs],
        "params": differing,
        "metrics": compared,
    }


@app.command("compare")
def compare_cmd(
    run_ids: list[str] = typer.Argument(
        ..., help="Two or more run ids (or their first 8+ characters); the first is the base."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
) -> None:
    """Compare runs: the params that differ, and metric deltas against the first run.

    Example: loopline runs compare 3f2a9c0d a1b2c3d4e5f60718293a4b5c6d7e8f90
    """
    from loopline.tracking.api import get_run, resolve_run_id

    if len(run_ids) < 2:
        raise InvalidInput(
            "compare needs at least two run ids", field="run_ids", hint="pass two or more ids"
        )
    runs = [get_run(resolve_run_id(i, field="run_ids")) for i in run_ids]
    result = comparison(runs)
    if json_out:
        print_json(result)
        return
    headers = [f"{esc(r['name'] or '')}\n{r['id'][:12]}" for r in result["runs"]]
    params = Table(title="params that differ")
    params.add_column("param", style="bold")
    for h in headers:
        params.add_column(h, overflow="fold")
    for key, values in result["params"].items():
        params.add_row(esc(key), *("-" if v is None else esc(v) for v in values))
    if result["params"]:
        console.print(params)
    else:
        console.print("params: all the same", style="dim")
    table = Table(title="metrics (delta against the first run)")
    table.add_column("metric", style="bold")
    for h in headers:
        table.add_column(h, justify="right")
    for key, entry in result["metrics"].items():
        cells = []
        for i, (value, delta) in enumerate(zip(entry["values"], entry["deltas"], strict=True)):
            shown = _num(float(value) if value is not None else None)
            if i and delta is not None and delta != "NaN":
                color = "green" if delta > 0 else "red" if delta < 0 else "dim"
                shown += f" [{color}]({delta:+.4g})[/]"
            cells.append(shown)
        table.add_row(esc(key), *cells)
    console.print(table)
