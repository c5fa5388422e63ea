"""``loopline deploy`` and ``loopline deployments``: roll model versions out and back."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from loopline.cli._common import console, esc, print_json
from loopline.cli._tables import list_table
from loopline.core.calendar import utc_text
from loopline.errors import InvalidInput

app = typer.Typer(
    help="List, inspect, promote and roll back deployments.\n\n"
    "Example: loopline deployments show churn",
    no_args_is_help=True,
)


def _steps(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        # An empty item (5,,50) is a typo, not a step to skip: float('') refuses it.
        return [float(s) for s in text.split(",")]
    except ValueError as exc:
        raise InvalidInput(
            f"--steps {text!r} is not a list of percentages",
            field="steps",
            hint="e.g. --steps 5,25,50,100",
        ) from exc


def serving_text(
    stable: int | None,
    phase: str,
    candidate: int | None = None,
    traffic: float = 0.0,
    fallback: int | None = None,
    standby: int | None = None,
) -> str:
    """What a deployment serves, in words (``loopline deploy``, ``loopline loop status``).

    Example:
        >>> serving_text(2, "canary", candidate=3, traffic=25.0, standby=1)
        'serves v2; canary of v3 at 25%; standby v1'
    """
    line = f"serves v{stable}"
    if candidate is not None:
        line += f"; {phase} of v{candidate}"
        if phase != "shadow":
            line += f" at {traffic:g}%"
    if fallback is not None:
        line += f"; fallback v{fallback}"
    if standby is not None:
        line += f"; standby v{standby}"
    return line


def window_text(w: dict[str, Any]) -> str:
    """One side of a rollout's live window, in words (no latency or accuracy yet: said so).

    Example:
        >>> window_text({"requests": 0, "errors": 0, "p99_ms": None, "labels": 0,
        ...              "accuracy": None})
        '0 requests, 0 errors, p99 -, accuracy - (no labels)'
        >>> window_text({"requests": 80, "errors": 1, "p99_ms": 4.25, "labels": 40,
        ...              "accuracy": 0.75})
        '80 requests, 1 errors, p99 4.25 ms, accuracy 75.0% (40 labels)'
    """
    p99 = "-" if w.get("p99_ms") is None else f"{w['p99_ms']:g} ms"
    labels = w.get("labels") or 0
    accuracy = "-" if w.get("accuracy") is None else f"{w['accuracy']:.1%}"
    return (
        f"{w['requests']} requests, {w['errors']} errors, p99 {p99}, "
        f"accuracy {accuracy} ({labels or 'no'} labels)"
    )


def _print_deployment(d: Any) -> None:
    serves = serving_text(
        d.stable_version,
        d.phase,
        d.candidate_version,
        d.traffic,
        d.fallback_version,
        d.standby_version,
    )
    console.print(
        f"[bold]{d.name}[/] {serves} (strategy {d.strategy}, revision {d.revision})",
        highlight=False,
    )
    if d.status:
        console.print(f"  status: {esc(d.status)}", highlight=False)


def deploy(
    name: str = typer.Argument(..., help="The registered model's name."),
    version: int = typer.Argument(..., help="The version to roll out."),
    strategy: str = typer.Option(
        "direct", "--strategy", "-s", help="direct, blue_green, ab, canary or shadow."
    ),
    steps: str = typer.Option(None, "--steps", help="Canary steps in percent, e.g. 5,25,50,100."),
    split: float = typer.Option(None, "--split", help="A/B: percent of traffic to VERSION."),
    window_requests: int = typer.Option(
        None, "--window-requests", help="Canary: requests per analysis window."
    ),
    window_seconds: float = typer.Option(
        None, "--window-seconds", help="Canary: seconds per analysis window."
    ),
    timeout_ms: float = typer.Option(
        None, "--timeout-ms", help="Per-request model timeout; the fallback answers."
    ),
    fallback: int = typer.Option(None, "--fallback", help="Version that answers on failure."),
    force: bool = typer.Option(False, "--force", help="Deploy even if the gate blocked it."),
    reason: str = typer.Option(None, "--reason", help="Why (required with --force; audited)."),
    json_out: bool = typer.Option(False, "--json", help="Print the deployment as JSON."),
) -> None:
    """Roll a model version out; blocked versions need --force and --reason.

    Example: loopline deploy churn 4 --strategy canary --steps 5,25,50,100 --fallback 3
    """
    from loopline.serving.deploy import deploy as do_deploy

    policy: dict[str, Any] = {
        k: v
        for k, v in {
            "steps": _steps(steps),
            "split": split,
            "window_requests": window_requests,
            "window_seconds": window_seconds,
            "timeout_ms": timeout_ms,
        }.items()
        if v is not None
    }
    d = do_deploy(
        name, version, strategy=strategy, fallback=fallback, force=force, reason=reason, **policy
    )
    if json_out:
        print_json(d.to_dict())
    else:
        _print_deployment(d)


@app.command("ls")
def ls_cmd(json_out: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """List every deployment.

    Example: loopline deployments ls --json
    """
    from loopline.serving.deploy import list_deployments

    found = list_deployments()
    if json_out:
        print_json([d.to_dict() for d in found])
        return
    numbers = ("stable", "candidate", "traffic", "fallback", "revision")
    table = list_table(None, ("name", "strategy", *numbers, "status"), words=("strategy", *numbers))
    for d in found:
        table.add_row(
            d.name,
            d.strategy,
            str(d.stable_version),
            "" if d.candidate_version is None else str(d.candidate_version),
            f"{d.traffic:g}%" if d.candidate_version is not None else "",
            "" if d.fallback_version is None else str(d.fallback_version),
            str(d.revision),
            esc(d.status or ""),
        )
    console.print(table)


@app.command("show")
def show_cmd(
    name: str = typer.Argument(..., help="The deployed model's name."),
    json_out: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Show a deployment, its live canary window and its history.

    Example: loopline deployments show churn
    """
    from loopline.serving.deploy import get_deployment, history, live_window

    d = get_deployment(name)
    events = history(name)
    window = live_window(name)
    if json_out:
        print_json({**d.to_dict(), "window": window, "history": [e.to_dict() for e in events]})
        return
    _print_deployment(d)
    if window is not None:
        for role in ("stable", "candidate"):
            console.print(f"  {role}: {window_text(window[role])}", highlight=False)
    table = Table(title="history")
    for col in ("when", "revision", "action", "actor", "after", "reason"):
        table.add_column(col, overflow="fold")
    for e in events:
        after = e.after or {}
        state = f"stable v{after.get('stable')}"
        if after.get("candidate") is not None:
            state += f", {after.get('phase')} v{after.get('candidate')} {after.get('traffic')}%"
        table.add_row(
            utc_text(e.ts), str(e.revision), e.action, esc(e.actor), state, esc(e.reason or "")
        )
    console.print(table)


@app.command("rollback")
def rollback_cmd(
    name: str = typer.Argument(..., help="The deployed model's name."),
    reason: str = typer.Option(None, "--reason", help="Why (audited)."),
    json_out: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Drop the candidate, or switch back to the previous version.

    Example: loopline deployments rollback churn --reason "p99 doubled"
    """
    from loopline.serving.deploy import rollback

    d = rollback(name, reason=reason)
    print_json(d.to_dict()) if json_out else _print_deployment(d)


@app.command("promote")
def promote_cmd(
    name: str = typer.Argument(..., help="The deployed model's name."),
    reason: str = typer.Option(None, "--reason", help="Why (audited)."),
    json_out: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Make the candidate the stable version now.

    Example: loopline deployments promote churn --reason "B wins the A/B test"
    """
    from loopline.serving.deploy import promote

    d = promote(name, reason=reason)
    print_json(d.to_dict()) if json_out else _print_deployment(d)
