"""``loopline loop``: the closed loop - watch, retrain, gate, roll out - and its kill switch."""

from __future__ import annotations

from pathlib import Path

import typer

from loopline.cli._common import console, esc, print_json

app = typer.Typer(
    help="The closed loop: drift or decay -> retrain -> gate -> canary, per policy.\n\n"
    "Example: loopline loop once --json",
    no_args_is_help=True,
)

_ROOT = typer.Option(Path(), "--root", help="Folder holding policies/*.yaml and loopline.toml.")

#: The exit code of a `loop once` whose pass failed for a model, as `pipeline run` exits 1
#: when a step failed (codes 2-7 name the error classes of the whole command).
FAILED_EXIT = 1
#: The outcomes that make `loop once` exit FAILED_EXIT: the retraining failed, or the pass
#: of a model raised (recorded as an `error` event). A `blocked` challenger is the gate at
#: work, and a `rolled_back` canary the rollout's analysis at work: both exit 0.
FAILING = ("failed", "error")


def _policies(root: Path, model: str | None) -> list:  # type: ignore[type-arg]
    from loopline.errors import NotFound
    from loopline.loop.policy import load_policies

    found = load_policies(root)
    if model is not None:
        found = [p for p in found if p.model == model]
    if not found:
        raise NotFound(
            f"no loop policy{' for ' + repr(model) if model else ''} in {root / 'policies'} "
            f"or {root / 'loopline.toml'}",
            hint="write policies/MODEL.yaml (see docs/monitoring.md, Loop policies)"
            if root.is_dir()
            else f"there is no folder {root}: pass --root the folder holding policies/",
        )
    return found


@app.command("once")
def once(
    model: str | None = typer.Option(None, "--model", help="Only this model's policy."),
    root: Path = _ROOT,
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Run one pass of the loop over every policy and print what it did.

    Exits 1 when the pass failed for a model (outcome `failed` or `error`), 4 without a
    policy, 5 while another process runs the loop on this store (the pass takes the loop
    lock like `loopline loop run`, and refuses instead of acting next to it); a `blocked`
    challenger is the gate at work and exits 0.
    Example: loopline loop once --model flights
    """
    from loopline.loop.controller import run_once
    from loopline.loop.runner import as_leader

    policies = _policies(root, model)
    with as_leader():
        results = run_once(policies, model)
    if as_json:
        print_json([r.to_dict() for r in results])
    else:
        for r in results:
            line = f"[bold]{esc(r.model)}[/]: {r.outcome} - {esc(r.message)}"
            console.print(line, soft_wrap=True)
    if any(r.outcome in FAILING for r in results):
        raise typer.Exit(FAILED_EXIT)


@app.command("run")
def run(
    interval: float = typer.Option(60.0, "--interval", min=1.0, help="Seconds between passes."),
    root: Path = _ROOT,
) -> None:
    """Watch forever: a pass every --interval seconds (Ctrl-C stops).

    Of several processes on one store (servers included), one runs the loop at a time;
    this one waits for the loop lock if another holds it (see `loopline loop status`).
    Example: loopline loop run --interval 300
    """
    import logging

    from loopline.loop.runner import LoopRunner

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        LoopRunner(_policies(root, None), interval).run()
    except KeyboardInterrupt:
        console.print("stopped")


def _known_model(model: str, root: Path) -> str:
    """``model`` if it is ``*``, has a loop policy under ``root`` or is a registered model;
    else NotFound (InvalidInput when empty): a switch on a typo would be audited and
    would stop nothing."""
    from loopline.errors import InvalidInput, NotFound
    from loopline.loop.policy import load_policies
    from loopline.training import registry_reads

    if model == "*":
        return model
    if not model.strip():
        raise InvalidInput(
            "the model name is empty", field="model", hint="name a model, or '*' for all"
        )
    policies = sorted(p.model for p in load_policies(root))
    if model in policies:
        return model
    try:
        registry_reads.get_model(model)
    except NotFound:
        known = ", ".join(policies) or "none"
        raise NotFound(
            f"no loop policy and no registered model is named {model!r} "
            f"(policies under {root}: {known})",
            hint="check the spelling (`loopline models ls`), or pass '*' for every model",
        ) from None
    return model


@app.command("pause")
def pause(
    model: str = typer.Argument("*", help="The model to pause; '*' (default) pauses all."),
    reason: str | None = typer.Option(None, "--reason", help="Why (kept in the audit log)."),
    root: Path = _ROOT,
) -> None:
    """Turn the kill switch on: the loop takes no action until resumed. The model must
    have a loop policy (under --root) or be registered.

    Example: loopline loop pause flights --reason "data migration tonight"
    """
    from loopline.loop.records import pause as do_pause

    do_pause(_known_model(model, root), reason)
    console.print(f"loop paused for {model}")


@app.command("resume")
def resume(
    model: str = typer.Argument(
        "*", help="The model to resume; '*' (default) is the global switch."
    ),
    reason: str | None = typer.Option(None, "--reason", help="Why (kept in the audit log)."),
    root: Path = _ROOT,
) -> None:
    """Turn the kill switch off again (for a model with a policy or a registered one).

    Example: loopline loop resume flights
    """
    from loopline.loop.records import resume as do_resume

    do_resume(_known_model(model, root), reason)
    console.print(f"loop resumed for {model}")


@app.command("status")
def status(
    root: Path = _ROOT,
    as_json: bool = typer.Option(False, "--json", help="Print the status as JSON."),
) -> None:
    """Who runs the loop now, and per model: kill switch, cooldown, deployment and the
    last loop events. --json prints {"leader": {"holder", "since", "lock"} or null,
    "models": [...]}. Exits 4 without a policy under --root, as `loopline loop once` does.

    Example: loopline loop status --json
    """
    import datetime

    from rich.table import Table

    from loopline.cli.deploy_cmd import serving_text
    from loopline.core.context import get_context
    from loopline.loop.controller import status as get_status
    from loopline.loop.leader import holder

    policies = _policies(root, None)
    lead = holder(get_context())
    rows = get_status(policies)
    if as_json:
        print_json({"leader": lead, "models": rows})
        return
    if lead is None:
        console.print("loop leader: none (no server or `loopline loop run` holds the lock)")
    else:
        since = (
            "?"
            if lead["since"] is None
            else datetime.datetime.fromtimestamp(lead["since"], datetime.UTC).isoformat(
                timespec="seconds"
            )
        )
        console.print(f"loop leader: {lead['holder']} since {since} ({lead['lock']})")
    table = Table(title="loopline loop status")
    for head in ("model", "paused", "cooldown left", "deployment", "last events"):
        table.add_column(head, overflow="fold")
    for r in rows:
        d = r["deployment"]
        table.add_row(
            r["model"],
            "yes" if r["paused"] else "no",
            f"{r['cooldown_left_s']:.0f} s",
            "-"
            if d is None
            else serving_text(
                d["stable"], d["phase"], d["candidate"], d["traffic"], d["fallback"], d["standby"]
            )
            + f" ({d['strategy']})",
            " -> ".join(e["kind"] for e in r["events"]) or "-",
        )
    console.print(table)
