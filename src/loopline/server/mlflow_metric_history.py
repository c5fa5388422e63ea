"""MLflow-compatible metric history routes (``/api/2.0/mlflow/metrics/...``): one metric's
points of a run, paged, and of up to 100 runs sampled evenly (the MLflow UI's charts).

Separate from the run routes (:mod:`.mlflow_runs`), which write points: these only read a
history and shape it for MLflow's wire.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from loopline.core.context import Context
from loopline.errors import InvalidInput
from loopline.server.deps import get_ctx
from loopline.server.mlflow_wire import WireInt64, wire_float
from loopline.server.strict_json import StrictJsonRoute
from loopline.tracking import query, run_data
from loopline.tracking.entities import MetricPoint

router = APIRouter(route_class=StrictJsonRoute, prefix="/api/2.0/mlflow", tags=["mlflow-tracking"])
Ctx = Annotated[Context, Depends(get_ctx)]


def _point(key: str, p: MetricPoint) -> dict[str, Any]:
    return {"key": key, "value": wire_float(p.value), "timestamp": p.timestamp, "step": p.step}


@router.get("/metrics/get-history")
def get_metric_history(
    ctx: Ctx,
    metric_key: str,
    run_id: str | None = None,
    run_uuid: str | None = None,
    max_results: Annotated[WireInt64 | None, Query(ge=1)] = None,
    page_token: str | None = None,
) -> dict[str, Any]:
    rid = run_id or run_uuid or ""
    points = run_data.get_metric_history(ctx.engine, rid, metric_key)
    offset = query.decode_page_token(page_token)
    limit = max_results or len(points)
    page = points[offset : offset + limit]
    out: dict[str, Any] = {"metrics": [_point(metric_key, p) for p in page]}
    if offset + limit < len(points):
        out["next_page_token"] = query.encode_page_token(offset + limit)
    return out


#: MLflow's bounds for ``metrics/get-history-bulk-interval``: runs per request, and points
#: per run (also the default).
MAX_BULK_RUNS = 100
MAX_BULK_POINTS = 2500


def evenly_spaced(total: int, count: int) -> list[int]:
    """At most ``count`` evenly spaced indices into ``total`` items, the first and the last
    always among them (only the last when ``count`` is 1): MLflow's sampling of a history.

    Example:
        >>> evenly_spaced(10, 4)
        [0, 3, 6, 9]
        >>> evenly_spaced(3, 5), evenly_spaced(5, 1)
        ([0, 1, 2], [4])
    """
    if total <= count:
        return list(range(total))
    if count == 1:
        return [total - 1]
    step = (total - 1) / (count - 1)
    return sorted({round(i * step) for i in range(count)})


def _step_range(start_step: int | None, end_step: int | None) -> tuple[int, int] | None:
    if start_step is None and end_step is None:
        return None
    if start_step is None or end_step is None:
        raise InvalidInput(
            "If either start step or end step are specified, both must be specified.",
            field="start_step" if start_step is None else "end_step",
        )
    if start_step > end_step:
        raise InvalidInput(
            "end_step must be greater than start_step. "
            f"Found start_step={start_step} and end_step={end_step}.",
            field="end_step",
        )
    return start_step, end_step


@router.get("/metrics/get-history-bulk-interval")
def get_metric_history_bulk_interval(
    ctx: Ctx,
    metric_key: str,
    run_ids: Annotated[list[str], Query(min_length=1, max_length=MAX_BULK_RUNS)],
    start_step: WireInt64 | None = None,
    end_step: WireInt64 | None = None,
    max_results: Annotated[WireInt64, Query(ge=1, le=MAX_BULK_POINTS)] = MAX_BULK_POINTS,
) -> dict[str, Any]:
    """One metric of up to 100 runs, each run's history sampled evenly to ``max_results``
    points (first and last kept), within ``[start_step, end_step]`` when given: the MLflow
    UI's charts ask for this.

    Example:
        >>> # GET /api/2.0/mlflow/metrics/get-history-bulk-interval
        >>> #     ?run_ids=3f2a...&run_ids=9c1d...&metric_key=loss&max_results=100
    """
    steps = _step_range(start_step, end_step)
    histories = {rid: run_data.get_metric_history(ctx.engine, rid, metric_key) for rid in run_ids}
    out = []
    for rid, points in histories.items():
        if steps is not None:
            points = [p for p in points if steps[0] <= p.step <= steps[1]]
        for i in evenly_spaced(len(points), max_results):
            out.append({**_point(metric_key, points[i]), "run_id": rid})
    return {"metrics": out}
