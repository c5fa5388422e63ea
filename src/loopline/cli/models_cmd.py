"""``loopline models``: list registered models, show versions and lineage, move aliases,
rename."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from loopline.cli._common import console, esc, print_json
from loopline.cli._tables import list_table
from loopline.core.calendar import utc_text, utc_text_ms
from loopline.errors import InvalidInput

if TYPE_CHECKING:
    from loopline.training.registry_model_version import ModelVersion

app = typer.Typer(
    help="List registered models, show their versions and lineage, and move aliases.\n\n"
    "Example: loopline models show churn@champion",
    no_args_is_help=True,
)


def _split(ref: str, *, need_version: bool) -> tuple[str, str | None]:
    name, sep, version = ref.partition("@")
    if not name or (sep and not version) or (need_version and not version):
        raise InvalidInput(
            f"{ref!r} is not NAME@VERSION or NAME@ALIAS",
            field="model",
            hint="e.g. churn@3 or churn@champion",
        )
    return name, version or None


@app.command("ls")
def ls_cmd(
    name_like: str = typer.Option(
        None, "--name", "-n", help="Only names matching this SQL LIKE pattern, e.g. 'churn%'."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the models as JSON."),
) -> None:
    """List registered models with their latest version and aliases.

    Example: loopline models ls --name 'churn%'
    """
    from loopline.training import registry_reads

    models = registry_reads.list_models(name_like)
    if json_out:
        print_json({"models": [vars(m) for m in models]})
        return
    table = list_table(
        f"registered models ({len(models)})",
        ("name", "latest", "aliases", "updated (UTC)", "description"),
        words=("latest", "updated (UTC)"),
    )
    for m in models:
        aliases = ", ".join(f"{a}=v{v}" for a, v in sorted(m.aliases.items()))
        table.add_row(
            m.name,
            "" if m.latest_version is None else str(m.latest_version),
            aliases,
            utc_text_ms(m.last_updated_time),
            esc(m.description or ""),
        )
    console.print(table)


@app.command("show")
def show_cmd(
    model: str = typer.Argument(..., help="NAME, NAME@VERSION or NAME@ALIAS."),
    json_out: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Show a model's versions, or one version with its signature and lineage.

    Example: loopline models show churn@champion
    """
    from loopline.training import registry_reads

    name, ref = _split(model, need_version=False)
    if ref is None:
        info = registry_reads.get_model(name)
        found = registry_reads.versions(name)
        if json_out:
            print_json({**vars(info), "versions": [v.to_dict(with_lineage=False) for v in found]})
            return
        table = list_table(
            f"{name}: {len(found)} version{'' if len(found) == 1 else 's'}",
            ("version", "aliases", "flavor", "run", "registered (UTC)"),
            words=("version", "flavor", "registered (UTC)"),
            run_ids=("run",),
        )
        for v in found:
            table.add_row(
                str(v.version),
                ", ".join(v.aliases),
                v.flavor or "mlflow",
                v.run_id or "",
                utc_text_ms(v.creation_time),
            )
        console.print(table)
        return
    mv = registry_reads.get(name, ref)
    if json_out:
        print_json(mv.to_dict())
        return
    _print_version(mv)


def _print_version(mv: ModelVersion) -> None:
    data = mv.to_dict()
    info = Table(title=f"{mv.name} version {mv.version}", show_header=False)
    info.add_column("field", style="bold")
    info.add_column("value", overflow="fold")
    for key in (
        "uri",
        "aliases",
        "flavor",
        "model_type",
        "model_id",
        "run_id",
        "source",
        "description",
    ):
        value = data[key]
        info.add_row(key, esc(", ".join(value) if isinstance(value, list) else value or ""))
    info.add_row("registered (UTC)", utc_text_ms(mv.creation_time))
    for key, value in data["code_version"].items():
        if value:
            info.add_row(key, esc(value))
    console.print(info)
    sig = mv.signature
    if sig is not None:
        table = Table(title="signature")
        for col in ("column", "type", "nullable"):
            table.add_column(col)
        for c in sig.inputs:
            kind: str = c.type
            if c.categories is not None:  # the first few: a column may have hundreds
                shown = ", ".join(map(str, c.categories[:8]))
                more = f", ... ({len(c.categories)})" if len(c.categories) > 8 else ""
                kind = f"category: {shown}{more}"
            table.add_row(esc(c.name), esc(kind), "yes" if c.nullable else "no")
        if sig.output is not None:
            table.add_row("(output)", f"{sig.output.type} x{sig.output.width}", "")
        console.print(table)
    if data["datasets"]:
        table = Table(title="datasets read by the run")
        for col in ("name", "version", "digest", "context"):
            table.add_column(col, overflow="fold")
        for d in data["datasets"]:
            table.add_row(
                esc(d["name"]), esc(d["version"]), d["digest"][:16], esc(d["context"] or "")
            )
        console.print(table)
    for title, values in (("params", data["params"]), ("metrics", data["metrics"])):
        if values:
            table = Table(title=title)
            table.add_column("key", style="bold")
            table.add_column("value", overflow="fold")
            for k, v in values.items():
                table.add_row(esc(k), esc(v))
            console.print(table)


@app.command("lineage")
def lineage_cmd(
    model: str = typer.Argument(..., help="NAME@VERSION or NAME@ALIAS."),
    json_out: bool = typer.Option(False, "--json", help="Print the lineage as JSON."),
) -> None:
    """Show where a model version came from: datasets -> run -> version -> deployments.

    Example: loopline models lineage churn@3
    """
    from loopline.training import registry_lineage

    name, ref = _split(model, need_version=True)
    data = registry_lineage.lineage(name, ref or "latest")
    if json_out:
        print_json(data)
        return
    mv = data["model_version"]
    # Every user text below goes through esc: a run name, experiment, param or metric key
    # with '[/x]' crashed the tree with MarkupError, and '[red]' vanished.
    aliases = ", ".join(mv["aliases"]) or "no alias"
    root = Tree(f"[bold]{esc(mv['name'])}[/] version {mv['version']} ({esc(aliases)})")
    datasets = root.add("datasets")
    for d in data["datasets"]:
        extra = f", {d['row_count']} rows" if d.get("row_count") is not None else ""
        # How the run read it: a held-out set it scored on is no training data.
        if d.get("context"):
            extra += f" ({esc(d['context'])})"
        note = "" if d["found"] else " [red](not found)[/]"
        if d.get("digest_matches") is False:
            note = " [red](content differs from what the run read)[/]"
        digest = esc((d["digest"] or "")[:12])
        datasets.add(f"{esc(d['name'])}@{esc(d['version'])} {digest}{extra}{note}")
    if not data["datasets"]:
        datasets.add("[dim]none recorded (read data with ll.datasets.get inside the run)[/]")
    run = data["run"]
    if run is None:
        root.add(f"run {esc(data['run_id'] or '(none)')} [dim](not found)[/]")
    else:
        node = root.add(
            f"run {esc(run['id'])} {esc(run['name'] or '')} "
            f"({esc(run['experiment'])}, {esc(run['status'])})"
        )
        code = run["code_version"]
        if code.get("git_commit"):
            dirty = " (dirty)" if code.get("git_dirty") == "true" else ""
            node.add(f"code {esc(code['git_commit'][:12])}{dirty}")
        if run["params"]:
            node.add(Text("params " + ", ".join(f"{k}={v}" for k, v in run["params"].items())))
        if run["metrics"]:
            shown = ", ".join(f"{k}={v:.6g}" for k, v in run["metrics"].items())
            node.add(Text("metrics " + shown))
    logged = data["logged_model"]
    if logged is not None:
        root.add(Text(f"logged model {logged['model_id']} ({logged['flavor'] or 'mlflow'})"))
    deployments = root.add("deployments")
    for dep in data["deployments"]:
        deployments.add(Text(_deployment_line(dep)))  # Text: a reason is not markup
    if not data["deployments"]:
        deployments.add("[dim]none[/]")
    console.print(root)


def _deployment_line(event: dict[str, Any]) -> str:
    """One deployment event: when, what, the versions after it, who and why."""
    after = event.get("after") or {}
    roles = [
        f"{role} v{after[key]}"
        for role, key in (("stable", "stable"), ("candidate", "candidate"))
        if after.get(key) is not None
    ]
    when = utc_text(event["ts"])
    reason = f": {event['reason']}" if event.get("reason") else ""
    return (
        f"{when} {event['name']} rev {event['revision']} {event['action']} "
        f"({', '.join(roles)}) by {event['actor']}{reason}"
    )


@app.command("rename")
def rename_cmd(
    name: str = typer.Argument(..., help="The registered model."),
    new_name: str = typer.Argument(..., help="Its new name (not taken by another model)."),
    json_out: bool = typer.Option(False, "--json", help="Print the renamed model as JSON."),
) -> None:
    """Rename a registered model; its versions, tags and aliases follow it (audited).

    Example: loopline models rename churn churn-classifier
    """
    from loopline.training import registry

    model = registry.rename(name, new_name)
    if json_out:
        print_json({"name": model.name, "previous": name, "latest_version": model.latest_version})
        return
    console.print(f"{esc(name)} -> {esc(model.name)}")


@app.command("alias")
def alias_cmd(
    name: str = typer.Argument(..., help="The registered model."),
    alias: str = typer.Argument(..., help="The alias, e.g. champion."),
    version: int = typer.Argument(..., help="The version the alias should point at."),
    reason: str = typer.Option(None, "--reason", "-r", help="Why (kept in the audit log)."),
    json_out: bool = typer.Option(False, "--json", help="Print the version as JSON."),
) -> None:
    """Point an alias at a version (the move is audited with its reason).

    Example: loopline models alias churn champion 3 --reason "AUC 0.91 beats 0.89"
    """
    from loopline.training import registry, registry_reads

    previous = registry_reads.get_model(name).aliases.get(alias)
    mv = registry.set_alias(name, alias, version, reason=reason)
    if json_out:
        print_json(
            {
                "name": name,
                "alias": alias,
                "version": mv.version,
                "previous": previous,
                "reason": reason,
            }
        )
        return
    moved = f" (was {previous})" if previous is not None and previous != version else ""
    console.print(f"{name}@{alias} -> version {mv.version}{moved}")
