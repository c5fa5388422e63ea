"""What the experiment pages show: experiments, a page of runs, one run, runs compared.

Each function reads through the tracking stage's public functions in a fixed, small number
of queries (one page of runs is loaded in one batch by ``search_runs``; metric histories
share one connection) and returns plain data for a template.

Example:
    >>> filter_error_position("invalid filter at position 12: expected a number")
    12
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

from loopline.core.context import Context
from loopline.core.db import reading
from loopline.errors import InvalidInput, NotFound
from loopline.server.ui.charts import metric_chart
from loopline.tracking import metrics as metric_store
from loopline.tracking.entities import Experiment, MetricPoint, RunRecord, ViewType
from loopline.tracking.lineage import list_artifacts
from loopline.tracking.query import decode_page_token, encode_page_token, search_runs
from loopline.tracking.run_records import get_runs
from loopline.tracking.run_state import get_run
from loopline.tracking.validation import stored_infinity

#: Runs per page the runs table offers.
PAGE_SIZES = (25, 50, 100, 200)
#: Metric and param columns shown in the runs table (the most common keys of the page).
TABLE_KEYS = 6
#: Metrics charted on a run's page or in a comparison.
MAX_CHARTS = 24
#: Runs one comparison may hold.
MAX_COMPARE = 12
#: Params listed open on a run's page; the others are folded under them.
PARAMS_SHOWN = 30
#: Child runs listed on a run's page (the runs table, linked from there, lists them all).
MAX_CHILDREN = 100
#: Artifacts listed on a run's page.
MAX_ARTIFACTS = 500
#: Tags whose key starts with one of these are the system's, shown apart.
SYSTEM_TAG_PREFIXES = ("mlflow.", "loopline.")
_POSITION = re.compile(r"at position (\d+)")


def filter_error_position(message: str) -> int | None:
    """The character position named by a filter or order_by error, if any.

    Example:
        >>> filter_error_position("no position here") is None
        True
    """
    m = _POSITION.search(message)
    return int(m.group(1)) if m else None


def quote_key(kind: str, key: str) -> str | None:
    """``metrics.`key``` for an order_by item, or None when the key holds a back-tick.

    Example:
        >>> quote_key("metrics", "val auc")
        'metrics.`val auc`'
    """
    return None if "`" in key else f"{kind}.`{key}`"


def sql_string(value: str) -> str:
    """``value`` as a quoted string of the filter grammar.

    Example:
        >>> sql_string("it's")
        "'it''s'"
    """
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class RunsPage:
    """One page of the runs table, or the error that stopped the search."""

    runs: list[RunRecord]
    metric_keys: list[str]
    param_keys: list[str]
    offset: int
    next_token: str | None
    prev_token: str | None
    error: InvalidInput | None = None
    error_position: int | None = None


def _common_keys(dicts: Sequence[dict[str, Any]], extra: str | None) -> list[str]:
    counts: Counter[str] = Counter(k for d in dicts for k in d)
    keys = [k for k, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))][:TABLE_KEYS]
    if extra and extra in counts and extra not in keys:
        keys.append(extra)
    return sorted(keys)


def _order_target(order_by: str | None) -> tuple[str | None, str | None]:
    """The metric or param key ``order_by`` sorts on, so that its column is shown."""
    if not order_by:
        return None, None
    m = re.match(r"\s*(metrics?|params?)\.(?:`([^`]+)`|([\w.:/-]+))", order_by)
    if not m:
        return None, None
    key = m.group(2) or m.group(3)
    return ("metric" if m.group(1).startswith("metric") else "param"), key


def runs_page(
    engine: Engine,
    *,
    experiment_ids: list[int],
    filter_text: str,
    order_by: str,
    per_page: int,
    page_token: str | None,
    view: ViewType,
) -> RunsPage:
    """One page of runs matching the filter; a bad filter comes back as ``error``."""
    try:
        offset = decode_page_token(page_token)
        result = search_runs(
            engine,
            experiment_ids=experiment_ids or None,
            filter=filter_text or None,
            order_by=[order_by] if order_by.strip() else None,
            max_results=per_page,
            page_token=page_token,
            view=view,
        )
    except InvalidInput as exc:
        return RunsPage([], [], [], 0, None, None, exc, filter_error_position(exc.message))
    kind, key = _order_target(order_by)
    runs = result.runs
    prev = encode_page_token(max(0, offset - per_page)) if offset > 0 else None
    return RunsPage(
        runs,
        _common_keys([r.metrics for r in runs], key if kind == "metric" else None),
        _common_keys([r.params for r in runs], key if kind == "param" else None),
        offset,
        result.next_page_token,
        prev,
    )


def no_runs_message(
    *, filter_text: str, offset: int, view: ViewType, experiments: Sequence[Experiment]
) -> str:
    """Why a page of the runs table is empty, and what to do about it.

    It said "No runs yet." whenever no filter was typed: on a page past the last, for an
    experiment that was deleted with its runs, for "Show: deleted" when nothing is deleted.

    Example:
        >>> no_runs_message(filter_text="", offset=0, view="deleted", experiments=[])
        'No deleted runs.'
    """
    names = ", ".join(e.name for e in experiments)
    where = f" in {names}" if names else ""
    if offset > 0:
        return "No runs on this page: the list ends before it."
    if filter_text:
        return f"No {'deleted ' if view == 'deleted' else ''}runs{where} match the filter."
    if view == "deleted":
        return f"No deleted runs{where}."
    deleted = [e.name for e in experiments if e.lifecycle_stage == "deleted"]
    if deleted and view == "active":
        return (
            f"Experiment {', '.join(deleted)} is deleted, and its runs with it: "
            "choose Show: deleted or all to see them."
        )
    first = experiments[0].name if experiments else "churn"
    return (
        f"No runs{where} yet. Log one from Python with "
        f'`with ll.start_run(experiment="{first}") as run: run.log_metric("auc", 0.9)`, '
        "or point an MLflow client at this server (MLFLOW_TRACKING_URI)."
    )


def _histories(
    engine: Engine, pairs: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], list[MetricPoint]]:
    """Every ``(run_id, key)`` history over one connection."""
    with reading(engine) as conn:
        return {(run_id, key): metric_store.history(conn, run_id, key) for run_id, key in pairs}


def run_detail(ctx: Context, run_id: str) -> dict[str, Any]:
    """Everything the run page shows: the run, its lineage, its charts."""
    from loopline.training import registry_versions

    engine = ctx.engine
    run = get_run(engine, run_id)
    keys = list(run.latest_metrics)[:MAX_CHARTS]
    histories = _histories(engine, [(run.id, k) for k in keys])
    charts = [
        metric_chart(k, [(run.name or run.id, histories[(run.id, k)])])
        for k in keys
        if len(histories[(run.id, k)]) > 1
    ]
    artifacts = list_artifacts(engine, run.id)
    children_filter = f"tags.`mlflow.parentRunId` = {sql_string(run.id)}"
    children = search_runs(
        engine, filter=children_filter, max_results=MAX_CHILDREN + 1, view="all"
    ).runs
    parent = get_runs(engine, [run.parent_run_id]) if run.parent_run_id else []
    user_tags = {k: v for k, v in run.tags.items() if not k.startswith(SYSTEM_TAG_PREFIXES)}
    system_tags = {k: v for k, v in run.tags.items() if k.startswith(SYSTEM_TAG_PREFIXES)}
    return {
        "run": run,
        "params_shown": PARAMS_SHOWN,
        "charts": charts,
        "artifacts": artifacts[:MAX_ARTIFACTS],
        "artifact_count": len(artifacts),
        "children": children[:MAX_CHILDREN],
        # More than shown (a tuning parent of 500 trials): the runs table lists them all.
        "more_children": len(children) > MAX_CHILDREN,
        "children_filter": children_filter,
        "parent": parent[0] if parent else None,
        "user_tags": user_tags,
        "system_tags": system_tags,
        "model_versions": registry_versions.search_model_versions(
            ctx, run_id=run.id, max_results=100
        ),
    }


def _countable(value: float) -> bool:
    """True for a metric value a difference can be taken from: not NaN, not inf."""
    return math.isfinite(value) and not stored_infinity(value)


def compare(engine: Engine, run_ids: Sequence[str]) -> dict[str, Any]:
    """Runs side by side: the params that differ, metric deltas against the first run,
    and one chart per metric with a line per run.
    """
    ids = list(dict.fromkeys(i for i in run_ids if i))[:MAX_COMPARE]
    runs = get_runs(engine, ids)
    if not runs:  # nothing to compare: the page would be an empty table
        raise NotFound(
            f"none of the runs {', '.join(map(repr, ids))} exist",
            hint="pick runs from the runs table",
        )
    found = {r.id for r in runs}
    missing = [i for i in ids if i not in found]
    param_keys = sorted({k for r in runs for k in r.params})
    differ: list[tuple[str, list[str | None]]] = []
    same: list[tuple[str, list[str | None]]] = []
    for k in param_keys:
        values = [r.params.get(k) for r in runs]
        (differ if len(set(values)) > 1 else same).append((k, values))
    metric_keys = sorted({k for r in runs for k in r.metrics})
    base = runs[0] if runs else None
    metrics = []
    for k in metric_keys:
        cells = []
        for r in runs:
            value = r.metrics.get(k)
            delta = None
            if base is not None and r is not base and value is not None:
                ref = base.metrics.get(k)
                # No delta from or to NaN or inf (a stored inf is +/- the largest float).
                if ref is not None and _countable(ref) and _countable(value):
                    delta = {
                        "abs": value - ref,
                        "rel": (value - ref) / abs(ref) if ref not in (0, 0.0) else None,
                    }
            cells.append({"value": value, "delta": delta})
        metrics.append((k, cells))
    chart_keys = metric_keys[:MAX_CHARTS]
    histories = _histories(engine, [(r.id, k) for k in chart_keys for r in runs if k in r.metrics])
    charts = [
        metric_chart(
            k, [(r.name or r.id, histories[(r.id, k)]) for r in runs if (r.id, k) in histories]
        )
        for k in chart_keys
    ]
    return {
        "runs": runs,
        "missing": missing,
        "params_differ": differ,
        "params_same": same,
        "metrics": metrics,
        "charts": charts,
        "more_metrics": max(0, len(metric_keys) - len(chart_keys)),
    }
