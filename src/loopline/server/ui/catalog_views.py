"""What the data and model pages show: datasets and their versions, registered models,
their versions, aliases, gate verdicts and lineage from data to deployments.

The delivery and serving stages are read through their public functions when they are
installed; without them the pages say so instead of showing anything made up.

Example:
    >>> quote_part("churn model")
    'churn%20model'
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from loopline.core.context import Context
from loopline.data import datasets
from loopline.server.ui.graph import Layout, LineageGraph
from loopline.server.ui.tracking_views import sql_string
from loopline.tracking.entities import RunRecord
from loopline.tracking.query import search_runs
from loopline.tracking.run_records import get_runs
from loopline.training import registry_models, registry_versions
from loopline.training.registry_records import ModelVersion

if TYPE_CHECKING:
    from loopline.delivery.gates import GateVerdict
    from loopline.serving.store import Deployment, DeploymentEvent

#: Model versions per page of a model, and dataset versions per page of a dataset.
VERSIONS_PER_PAGE = 25
#: Registered models per page.
MODELS_PER_PAGE = 50
#: Files listed for a version of a folder dataset.
MAX_FILES = 200
#: Runs listed as readers of a dataset version (the runs page lists them all).
MAX_READERS = 50


def quote_part(text: str) -> str:
    """``text`` quoted for one path segment of a URL.

    Example:
        >>> quote_part("a/b")
        'a%2Fb'
    """
    return quote(str(text), safe="")


def stage_missing(exc: ModuleNotFoundError, *modules: str) -> bool:
    """True when ``exc`` says one of ``modules`` (a stage not installed yet) is missing;
    any other missing module is a real error and the caller re-raises it.

    Example:
        >>> stage_missing(ModuleNotFoundError(name="loopline.serving"), "loopline.serving")
        True
    """
    return exc.name is not None and any(
        exc.name == m or m.startswith(exc.name + ".") for m in modules
    )


# -- datasets -----------------------------------------------------------------------------


def dataset_list() -> dict[str, Any]:
    """Every dataset with its newest version, and every feature view."""
    # Imported here: the feature store loads pandas and DuckDB's glue (~0.6 s), which every
    # `loopline server` start paid for a page few open.
    from loopline.data import features

    return {"datasets": datasets.list_datasets(), "views": features.list_views()}


def _column_rows(v: datasets.DatasetVersion) -> list[dict[str, Any]]:
    rows = []
    for column, dtype in v.schema.items():
        stats = v.stats.get(column, {})
        count, nulls = stats.get("count"), stats.get("nulls")
        total = (count or 0) + (nulls or 0)
        rows.append(
            {
                "name": column,
                "type": dtype,
                "stats": stats,
                "null_share": (nulls / total) if total and nulls is not None else None,
            }
        )
    return rows


def dataset_detail(ctx: Context, name: str, version: int | None, page: int) -> dict[str, Any]:
    """A page of the versions of ``name``, newest first, and the schema, statistics, files
    and readers of one version."""
    # The listing needs no manifests: only the version shown reads its files.
    chosen = datasets.get(name, "latest" if version is None else version)  # or NotFound
    rows = datasets.version_rows(
        name,
        limit=VERSIONS_PER_PAGE + 1,
        offset=(page - 1) * VERSIONS_PER_PAGE,
        newest_first=True,
    )
    reader_filter = (
        f"datasets.name = {sql_string(chosen.name)} "
        f"and datasets.version = {sql_string(str(chosen.version))}"
    )
    found = search_runs(ctx.engine, filter=reader_filter, max_results=MAX_READERS).runs
    # The two conditions may match two different inputs of one run: keep true readers.
    readers = [
        r
        for r in found
        if any(i.name == chosen.name and i.version == str(chosen.version) for i in r.inputs)
    ]
    return {
        "reader_filter": reader_filter,
        "more_readers": len(found) == MAX_READERS,
        "name": name,
        "versions": rows[:VERSIONS_PER_PAGE],
        "more_versions": len(rows) > VERSIONS_PER_PAGE,
        "page": page,
        "latest": _latest_number(name),
        "v": chosen,
        "columns": _column_rows(chosen),
        "files": chosen.files[:MAX_FILES],
        "readers": readers,
    }


def _latest_number(name: str) -> int:
    newest = datasets.version_rows(name, limit=1, newest_first=True)
    return newest[0].version if newest else 0


def dataset_diff(name: str, a: int, b: int) -> dict[str, Any]:
    """What changed from version ``a`` to version ``b`` of ``name``."""
    return {
        "name": name,
        "diff": datasets.diff(f"{name}@{a}", f"{name}@{b}"),
        "latest": _latest_number(name),
        "a": a,
        "b": b,
    }


# -- models -------------------------------------------------------------------------------


def _deployments() -> tuple[dict[str, Deployment], bool]:
    """Every deployment by name, and whether the serving stage is installed."""
    try:
        from loopline.serving import deploy
    except ModuleNotFoundError as exc:
        if stage_missing(exc, "loopline.serving.deploy"):
            return {}, False
        raise
    return {d.name: d for d in deploy.list_deployments()}, True


def _history(name: str) -> list[DeploymentEvent]:
    from loopline.serving import deploy

    return deploy.history(name)


def _verdicts(ctx: Context, name: str) -> tuple[dict[int, GateVerdict], bool]:
    """The newest gate verdict per version of ``name``, and whether delivery is installed."""
    try:
        from loopline.delivery import gates
    except ModuleNotFoundError as exc:
        if stage_missing(exc, "loopline.delivery.gates"):
            return {}, False
        raise
    newest: dict[int, GateVerdict] = {}
    for verdict in gates.verdicts(name, ctx=ctx):  # newest first
        newest.setdefault(verdict.version, verdict)
    return newest, True


def model_list(ctx: Context, page: int, name_like: str | None) -> dict[str, Any]:
    """One page of registered models with their aliases and what each serves."""
    offset = (page - 1) * MODELS_PER_PAGE
    found = registry_models.search_registered_models(
        ctx, name_like=name_like, max_results=MODELS_PER_PAGE + 1, offset=offset
    )
    deployments, serving = _deployments()
    return {
        "models": found[:MODELS_PER_PAGE],
        "more": len(found) > MODELS_PER_PAGE,
        "page": page,
        "deployments": deployments,
        "serving_installed": serving,
    }


def roles(d: Deployment) -> dict[int, str]:
    """Version -> its role in a deployment (``stable``, ``canary 25 %``, ...).

    Example:
        >>> # roles(deployment) -> {3: 'stable', 4: 'canary 25 %'}
    """
    out: dict[int, str] = {}
    if d.fallback_version is not None:
        out[d.fallback_version] = "fallback"
    if d.standby_version is not None:
        out[d.standby_version] = "standby"
    if d.candidate_version is not None:
        share = "mirrored" if d.phase == "shadow" else f"{d.traffic:g} %"
        out[d.candidate_version] = f"{d.phase} {share}"
    out[d.stable_version] = "stable"
    return out


def _past_versions(events: Iterable[DeploymentEvent]) -> set[int]:
    past: set[int] = set()
    for e in events:
        for state in (e.before or {}, e.after or {}):
            for key in ("stable", "candidate"):
                value = state.get(key)
                if isinstance(value, int):
                    past.add(value)
    return past


def lineage(
    versions: Sequence[ModelVersion],
    runs: dict[str, RunRecord],
    deployment: Deployment | None,
    events: Sequence[DeploymentEvent],
) -> Layout:
    """The graph dataset versions -> runs -> model versions -> deployment."""
    g = LineageGraph()
    current = roles(deployment) if deployment is not None else {}
    past = _past_versions(events)
    for mv in versions:
        vid = f"v:{mv.name}/{mv.version}"
        aliases = " ".join(f"@{a}" for a in mv.aliases)
        g.node(
            vid,
            "version",
            f"{mv.name} v{mv.version}",
            f"/models/{quote_part(mv.name)}/versions/{mv.version}",
            aliases,
        )
        if mv.run_id:
            run = runs.get(mv.run_id)
            rid = f"r:{mv.run_id}"
            if run is None:
                g.node(rid, "run", mv.run_id[:12], None, "run not found")
            else:
                g.node(rid, "run", run.name or run.id[:12], f"/runs/{run.id}", run.experiment)
                for item in run.inputs:
                    did = f"d:{item.kind}:{item.name}@{item.version}"
                    href = (
                        f"/datasets/{quote_part(item.name)}?version={quote_part(item.version)}"
                        if item.kind == "dataset"
                        else None
                    )
                    sub = item.context or ("" if item.kind == "dataset" else item.kind)
                    g.node(did, "dataset", f"{item.name}@{item.version}", href, sub)
                    g.edge(did, rid)
            g.edge(rid, vid)
        if deployment is not None:
            dep = f"dep:{deployment.name}"
            if mv.version in current or mv.version in past:
                g.node(
                    dep,
                    "deployment",
                    deployment.name,
                    f"/deployments/{quote_part(deployment.name)}",
                    f"{deployment.phase}, revision {deployment.revision}",
                )
            if mv.version in current:
                g.edge(vid, dep, current[mv.version])
            elif mv.version in past:
                g.edge(vid, dep, "served before", dashed=True)
    return g.layout()


def _deployment_of(name: str) -> tuple[Deployment | None, list[DeploymentEvent], bool]:
    deployments, installed = _deployments()
    found = deployments.get(name)
    return found, (_history(name) if found is not None else []), installed


def model_detail(ctx: Context, name: str, page: int) -> dict[str, Any]:
    """A registered model: a page of versions with runs, verdicts, roles, and lineage."""
    model = registry_models.get_registered_model(ctx, name)
    offset = (page - 1) * VERSIONS_PER_PAGE
    found = registry_versions.search_model_versions(
        ctx, name=name, max_results=VERSIONS_PER_PAGE + 1, offset=offset
    )
    versions = found[:VERSIONS_PER_PAGE]
    runs = {r.id: r for r in get_runs(ctx.engine, [v.run_id for v in versions if v.run_id])}
    verdicts, delivery = _verdicts(ctx, name)
    deployment, events, serving = _deployment_of(name)
    return {
        "model": model,
        "versions": versions,
        "more": len(found) > VERSIONS_PER_PAGE,
        "page": page,
        "runs": runs,
        "verdicts": verdicts,
        "delivery_installed": delivery,
        "deployment": deployment,
        "roles": roles(deployment) if deployment is not None else {},
        "serving_installed": serving,
        "graph": lineage(versions, runs, deployment, events),
    }


def version_detail(ctx: Context, name: str, version: int) -> dict[str, Any]:
    """One model version: its run, every gate verdict, and its own lineage graph."""
    mv = registry_versions.get_model_version(ctx, name, version)
    runs = {r.id: r for r in get_runs(ctx.engine, [mv.run_id] if mv.run_id else [])}
    verdict_list: list[GateVerdict] = []
    try:
        from loopline.delivery import gates
    except ModuleNotFoundError as exc:
        if not stage_missing(exc, "loopline.delivery.gates"):
            raise
        delivery = False
    else:
        delivery = True
        verdict_list = gates.verdicts(name, version, ctx=ctx)
    deployment, events, serving = _deployment_of(name)
    return {
        "mv": mv,
        "run": runs.get(mv.run_id) if mv.run_id else None,
        "verdicts": verdict_list,
        "delivery_installed": delivery,
        "deployment": deployment,
        "role": roles(deployment).get(mv.version) if deployment is not None else None,
        "serving_installed": serving,
        "graph": lineage([mv], runs, deployment, events),
    }


@dataclass(frozen=True)
class TableChoice:
    """A table dataset version offered to the drift form."""

    ref: str
    rows: int | None


def table_versions(limit_per_dataset: int = 20) -> list[TableChoice]:
    """``NAME@VERSION`` of the newest table versions of every dataset (for the drift form)."""
    out: list[TableChoice] = []
    for summary in datasets.list_datasets():
        if summary.latest_kind != "table" or summary.latest_version is None:
            continue
        first = max(1, summary.latest_version - limit_per_dataset + 1)
        for number in range(summary.latest_version, first - 1, -1):
            rows = summary.latest_row_count if number == summary.latest_version else None
            out.append(TableChoice(f"{summary.name}@{number}", rows))
    return out
