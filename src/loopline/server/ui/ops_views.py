"""What the operations pages show: deployments and rollouts, drift, and the audit log.

Deployments come from the serving stage (``loopline.serving.deploy``), drift from the
monitoring stage (``loopline.monitoring.api``); when a stage is not installed the page
says which module is missing. The audit log is paged newest first by sequence number
(keyset paging, so a page costs the same on a log of millions of events).

Example:
    >>> bin_labels([0.0, 0.5, 1.0])
    ['0 to 0.5', '0.5 to 1']
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy.engine import Engine

from loopline.core import audit
from loopline.errors import LooplineError, NotFound
from loopline.server.ui.catalog_views import stage_missing, table_versions
from loopline.server.ui.charts import bars_chart, steps_chart, time_chart
from loopline.server.ui.render import fmt_num

if TYPE_CHECKING:
    from loopline.monitoring.performance import Window

#: Audit events per page.
AUDIT_PAGE = 100
#: Columns whose distributions are drawn on the drift page.
MAX_DRIFT_PLOTS = 60


# -- deployments --------------------------------------------------------------------------


@dataclass(frozen=True)
class StepState:
    """One canary step and whether it is done, current or to come."""

    percent: float
    state: str


def canary_steps(steps: list[float], current: int, in_canary: bool) -> list[StepState]:
    """The steps of a canary policy, each marked ``done``, ``current`` or ``next``.

    Example:
        >>> [s.state for s in canary_steps([5.0, 50.0, 100.0], 1, True)]
        ['done', 'current', 'next']
    """
    if not in_canary:
        return [StepState(p, "next") for p in steps]
    return [
        StepState(p, "done" if i < current else "current" if i == current else "next")
        for i, p in enumerate(steps)
    ]


def deployment_list() -> dict[str, Any]:
    """Every deployment with its traffic split and canary progress."""
    try:
        from loopline.serving import deploy
    except ModuleNotFoundError as exc:
        if stage_missing(exc, "loopline.serving.deploy"):
            return {"installed": False, "rows": []}
        raise
    rows = []
    for d in deploy.list_deployments():
        rows.append(
            {
                "d": d,
                "steps": canary_steps(d.policy.steps, d.step, d.phase == "canary"),
            }
        )
    return {"installed": True, "rows": rows}


def deployment_detail(name: str) -> dict[str, Any]:
    """One deployment: its state, the live rollout window, its history and traffic chart."""
    try:
        from loopline.serving import deploy
    except ModuleNotFoundError as exc:
        if stage_missing(exc, "loopline.serving.deploy"):
            raise NotFound(
                f"deployment {name!r} cannot be shown: the serving stage "
                "(loopline.serving.deploy) is not installed"
            ) from exc
        raise
    d = deploy.get_deployment(name)
    events = deploy.history(name)
    window = deploy.live_window(name)
    points: list[tuple[float, float]] = []
    for e in events:
        after = e.after or {}
        traffic = float(after.get("traffic") or 0.0) if after.get("candidate") else 0.0
        points.append((e.ts, traffic))
    if not any(share > 0 for _, share in points):
        points = []  # never split (direct, blue/green, shadow): the history says it all
    if points:
        points.append((max(time.time(), points[-1][0]), points[-1][1]))
    return {
        "d": d,
        "steps": canary_steps(d.policy.steps, d.step, d.phase == "canary"),
        "events": list(reversed(events)),
        "window": window,
        "policy": d.policy.model_dump(),
        "traffic_chart": steps_chart("candidate's share of traffic", "traffic %", points)
        if len(points) > 1
        else None,
    }


# -- monitoring ---------------------------------------------------------------------------


def bin_labels(edges: list[float]) -> list[str]:
    """``a to b`` for each bin between consecutive ``edges``.

    Example:
        >>> bin_labels([1.0, 2.0])
        ['1 to 2']
    """
    return [f"{fmt_num(a, 3)} to {fmt_num(b, 3)}" for a, b in itertools.pairwise(edges)]


def _parse_ref(ref: str, field: str) -> Any:
    from loopline.data import datasets

    name, number = datasets.parse_ref(ref.strip())
    try:
        return datasets.get(name, "latest" if number is None else number)
    except NotFound as exc:
        raise NotFound(f"{field}: {exc.message}", hint=exc.hint) from exc


def drift_view(reference: str, current: str) -> dict[str, Any]:
    """The form's choices and, when both versions are given, the drift between them."""
    out: dict[str, Any] = {
        "reference": reference,
        "current": current,
        "choices": table_versions(),
        "report": None,
        "charts": [],
        "plots": {},
        "missing_rose": [],
        "error": None,
        "installed": True,
    }
    try:
        from loopline.monitoring import api as monitor
    except ModuleNotFoundError as exc:
        if stage_missing(exc, "loopline.monitoring.api"):
            out["installed"] = False
            return out
        raise
    if not (reference.strip() and current.strip()):
        return out
    try:
        # Dataset versions only: a free-form path would let a page read the server's files.
        report = monitor.drift(_parse_ref(reference, "reference"), _parse_ref(current, "current"))
    except LooplineError as exc:  # a bad or missing version, a folder dataset: say so inline
        out["error"] = exc
        return out
    charts = []
    for position, (name, col) in enumerate(list(report.columns.items())[:MAX_DRIFT_PLOTS], 1):
        hist = col.histogram
        if hist is None:
            continue
        labels = hist.labels if hist.labels is not None else bin_labels(hist.edges or [])
        charts.append(
            {
                "column": name,
                # Named after the column's row, not the chart's rank: a column without a
                # plot (broken, skipped) shifted every later link onto another column's plot.
                "anchor": f"plot-{position}",
                "chart": bars_chart(
                    name,
                    [str(x) for x in labels],
                    [
                        ("reference %", [100 * s for s in hist.reference]),
                        ("current %", [100 * s for s in hist.current]),
                    ],
                ),
            }
        )
    out["report"] = report
    out["charts"] = charts
    out["plots"] = {item["column"]: item["anchor"] for item in charts}
    out["missing_rose"] = [n for n, c in report.columns.items() if c.tested and c.missing_drifted]
    return out


#: Window choices of the live metrics: the value in the URL -> what ``performance`` takes.
LIVE_WINDOWS: dict[str, Window] = {
    "hour": "hour",
    "day": "day",
    "100": 100,
    "1000": 1000,
}
#: The newest logged prediction rows the live metrics read (bounds the page's cost: reading
#: and joining them with their labels is most of it, ~0.1 s for 20,000 rows, and grows
#: with the rows).
LIVE_ROWS = 20_000
#: Count windows (100 or 1000 requests) the live metrics compute: each is scored per
#: version (well under a millisecond each since the scoring is NumPy's, 25 ms each with
#: scikit-learn), and a table of 1,000 windows is no page to read.
LIVE_COUNT_WINDOWS = 20


def live_rows(window: Window) -> int:
    """How many of the newest prediction rows the page reads for ``window``.

    Example:
        >>> live_rows("hour"), live_rows(100), live_rows(1000)
        (20000, 2000, 20000)
    """
    if isinstance(window, int):
        return min(LIVE_ROWS, LIVE_COUNT_WINDOWS * window)
    return LIVE_ROWS


def _line(windows: list[Any], value: Any) -> list[tuple[str, list[tuple[float, float | None]]]]:
    by_version: dict[str, list[tuple[float, float | None]]] = {}
    for w in windows:
        by_version.setdefault(f"v{w.version}", []).append((w.start, value(w)))
    return sorted(by_version.items())


def live_metrics(model: str, window: str) -> dict[str, Any]:
    """Live metrics of ``model`` per window and version, from the monitoring stage's
    prediction log and the labels that arrived; with the served models to choose from.
    """
    out: dict[str, Any] = {
        "model": model,
        "window": window,
        "windows": list(LIVE_WINDOWS),
        "served": [],
        "charts": [],
        "table": [],
        "error": None,
        "installed": True,
        "limit": live_rows(LIVE_WINDOWS.get(window, "hour")),
    }
    try:
        from loopline.monitoring import performance as perf
    except ModuleNotFoundError as exc:
        if stage_missing(exc, "loopline.monitoring.performance"):
            out["installed"] = False
            return out
        raise
    try:
        from loopline.serving import deploy
    except ModuleNotFoundError as exc:
        if not stage_missing(exc, "loopline.serving.deploy"):
            raise
    else:
        out["served"] = [d.name for d in deploy.list_deployments()]
    if not model:
        if not out["served"]:
            return out
        model = out["model"] = out["served"][0]
    try:
        size = LIVE_WINDOWS.get(window, "hour")
        windows = perf.performance(model, window=size, last=live_rows(size))
    except LooplineError as exc:
        out["error"] = exc
        return out
    labelled = sorted({k for w in windows for k in w.metrics})
    charts = [
        time_chart("requests per window", "requests", _line(windows, lambda w: w.requests)),
        time_chart("latency p99", "ms", _line(windows, lambda w: w.latency_p99_ms)),
    ]
    charts += [
        time_chart(f"live {key}", key, _line(windows, lambda w, k=key: w.metrics.get(k)))
        for key in labelled
    ]
    if any(w.drift_scores for w in windows):
        charts.append(
            time_chart("drift share", "share", _line(windows, lambda w: w.value("drift_share")))
        )
    out["charts"] = charts if windows else []
    out["table"] = list(reversed(windows))[:50]
    return out


def alert_list() -> dict[str, Any]:
    """The newest alerts of every model, if the monitoring stage stores alerts."""
    try:
        from loopline.monitoring import alerts
    except ModuleNotFoundError as exc:
        if stage_missing(exc, "loopline.monitoring.alerts"):
            return {"installed": False, "alerts": []}
        raise
    return {"installed": True, "alerts": alerts.list_alerts(limit=100)}


def live_windows() -> list[dict[str, Any]]:
    """The live counters of every rollout in progress (from the model servers)."""
    try:
        from loopline.serving import deploy
    except ModuleNotFoundError as exc:
        if stage_missing(exc, "loopline.serving.deploy"):
            return []
        raise
    out = []
    for d in deploy.list_deployments():
        if d.candidate_version is not None:
            out.append({"d": d, "window": deploy.live_window(d.name)})
    return out


# -- audit --------------------------------------------------------------------------------


def audit_page(
    engine: Engine,
    *,
    before: int | None,
    object_type: str | None,
    object_id: str | None,
    actor: str | None,
) -> dict[str, Any]:
    """A page of audit events, newest first, older than sequence number ``before``."""
    events, older, newest = audit.events_page(
        engine,
        before=before,
        limit=AUDIT_PAGE,
        object_type=object_type,
        object_id=object_id,
        actor=actor,
    )
    return {"events": events, "older": older, "newest_seq": newest}


def as_json(value: Any) -> str:
    """A stored before/after value as compact JSON text for a table cell.

    Example:
        >>> as_json({"stable": 3})
        '{"stable":3}'
    """
    if value is None:
        return ""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
