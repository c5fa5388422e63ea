"""MLflow-compatible run routes (``/api/2.0/mlflow/runs/...``): create, update, get,
delete, restore, search, and logging metrics, params and tags to a run.

The MLflow client's frequent calls among these are also answered by the fast path
(:mod:`.fast_path`, :mod:`.fast_routes`) before they reach FastAPI; both call the same
operations (:mod:`.mlflow_ops`), so the routes here answer what the fast path leaves to
them. Everything goes through :mod:`loopline.tracking`'s store functions, so what the
MLflow client logs is what Loopline's SDK and CLI read. Non-finite metric values travel as
the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` (protobuf's JSON mapping).
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from pydantic import Field

from loopline.core.context import Context
from loopline.server import mlflow_ops as ops
from loopline.server.deps import get_ctx
from loopline.server.mlflow_wire import KeyValue, WireDouble, WireInt64, WireViewType, run_json
from loopline.server.mlflow_wire import WireRequest as _Req
from loopline.server.mlflow_wire import experiment_id as _exp_id
from loopline.server.responses import OrjsonResponse
from loopline.server.strict_json import StrictJsonRoute
from loopline.tracking import query, run_data, run_state
from loopline.tracking.entities import Metric, MetricPoint, now_ms
from loopline.tracking.validation import stored_metric_value
from loopline.training import logged_model_data

router = APIRouter(route_class=StrictJsonRoute, prefix="/api/2.0/mlflow", tags=["mlflow-tracking"])
Ctx = Annotated[Context, Depends(get_ctx)]


class MetricIn(_Req):
    key: str
    value: WireDouble
    timestamp: WireInt64 | None = None
    step: WireInt64 | None = 0
    model_id: str | None = None
    dataset_name: str | None = None
    dataset_digest: str | None = None


def _ok() -> Response:
    """MLflow's empty answer, sent as is (no response model to validate on hot routes)."""
    return Response(b"{}", media_type="application/json")


class CreateRun(_Req):
    experiment_id: str | None = None
    user_id: str | None = None
    start_time: WireInt64 | None = None
    tags: list[KeyValue] | None = None
    run_name: str | None = None


@router.post("/runs/create")
def create_run(body: CreateRun, ctx: Ctx) -> Response:
    answer = ops.create_run(
        ctx,
        experiment=body.experiment_id,
        user_id=body.user_id,
        start_time=body.start_time,
        tags={t.key: t.value or "" for t in body.tags or []},
        run_name=body.run_name,
    )
    return OrjsonResponse(answer)


class UpdateRun(_Req):
    run_id: str | None = None
    run_uuid: str | None = None
    status: str | None = None
    end_time: WireInt64 | None = None
    run_name: str | None = None


@router.post("/runs/update")
def update_run(body: UpdateRun, ctx: Ctx) -> Response:
    answer = ops.update_run(
        ctx,
        run_id=body.run_id or body.run_uuid,
        status=body.status,
        end_time=body.end_time,
        run_name=body.run_name,
    )
    return OrjsonResponse(answer)


@router.get("/runs/get")
def get_run(ctx: Ctx, run_id: str | None = None, run_uuid: str | None = None) -> Response:
    return OrjsonResponse(ops.get_run(ctx, run_id or run_uuid))


class RunRef(_Req):
    run_id: str


@router.post("/runs/delete")
def delete_run(body: RunRef, ctx: Ctx) -> dict[str, Any]:
    run_state.delete_run(ctx.engine, body.run_id, actor=ctx.settings.actor_name)
    return {}


@router.post("/runs/restore")
def restore_run(body: RunRef, ctx: Ctx) -> dict[str, Any]:
    run_state.restore_run(ctx.engine, body.run_id, actor=ctx.settings.actor_name)
    return {}


class SearchRuns(_Req):
    experiment_ids: list[str] | None = None
    filter: str | None = None
    run_view_type: WireViewType = None
    max_results: WireInt64 = Field(1000, ge=1, le=50000)
    order_by: list[str] | None = None
    page_token: str | None = None


@router.post("/runs/search")
def search_runs(body: SearchRuns, ctx: Ctx) -> Response:
    if not body.experiment_ids:
        # MLflow searches the experiments it is given: none given, no runs (Loopline's own
        # search takes "no experiment" to mean all of them).
        return OrjsonResponse({"runs": []})
    ids = [_exp_id(e) for e in body.experiment_ids]
    view = body.run_view_type or "active"
    page = query.search_runs(
        ctx.engine,
        experiment_ids=ids,
        filter=body.filter,
        order_by=body.order_by,
        max_results=body.max_results,
        page_token=body.page_token,
        view=view,
    )
    out: dict[str, Any] = {"runs": [run_json(r) for r in page.runs]}
    if page.next_page_token:
        out["next_page_token"] = page.next_page_token
    return OrjsonResponse(out)


class LogMetric(MetricIn):
    run_id: str | None = None
    run_uuid: str | None = None


@router.post("/runs/log-metric")
def log_metric(body: LogMetric, ctx: Ctx) -> Response:
    run_id = body.run_id or body.run_uuid or ""
    if body.model_id:  # left here by the fast path: a link to a logged model
        _log_batch(ctx, run_id, [body], now_ms())
        return _ok()
    stamp = now_ms() if body.timestamp is None else body.timestamp  # 0 is a time, 1970
    metric = Metric(body.key, body.value, stamp, body.step or 0)
    ops.log_batch(ctx, run_id, metrics=[metric])
    return _ok()


class LogParam(_Req):
    run_id: str | None = None
    run_uuid: str | None = None
    key: str
    value: str


@router.post("/runs/log-parameter")
def log_param(body: LogParam, ctx: Ctx) -> Response:
    ops.log_batch(ctx, body.run_id or body.run_uuid or "", params=[(body.key, body.value)])
    return _ok()


class SetTag(_Req):
    run_id: str | None = None
    run_uuid: str | None = None
    key: str
    value: str


@router.post("/runs/set-tag")
def set_tag(body: SetTag, ctx: Ctx) -> Response:
    ops.set_tag(ctx, body.run_id or body.run_uuid or "", body.key, body.value)
    return _ok()


class DeleteTag(_Req):
    run_id: str
    key: str


@router.post("/runs/delete-tag")
def delete_tag(body: DeleteTag, ctx: Ctx) -> dict[str, Any]:
    run_data.delete_tag(ctx.engine, body.run_id, body.key)
    return {}


class LogBatch(_Req):
    run_id: str
    metrics: list[MetricIn] | None = None
    params: list[KeyValue] | None = None
    tags: list[KeyValue] | None = None


def _same_point(a: MetricPoint, b: MetricPoint) -> bool:
    both_nan = math.isnan(a.value) and math.isnan(b.value)
    return a.step == b.step and a.timestamp == b.timestamp and (a.value == b.value or both_nan)


def _not_yet_stored(ctx: Context, run_id: str, linked: list[Metric]) -> list[Metric]:
    """The points of ``linked`` the run does not hold yet.

    MLflow 3's ``log_model`` sends the run's points at the model's step again, each with
    the new model's id, to link them to it; MLflow's server keeps one copy of a point
    (its key includes the time, step and value). A point sent with a model id for the
    first time (``mlflow.log_metric(..., model_id=...)``) is new, and stored.
    """
    fresh = []
    seen: dict[str, list[MetricPoint]] = {}
    for m in linked:
        if m.key not in seen:
            seen[m.key] = run_data.get_metric_history(ctx.engine, run_id, m.key)
        # As history reads it back: NaN as NaN, +/-inf as the largest float (MLflow's).
        value = stored_metric_value(m.value)[0] if math.isinf(m.value) else m.value
        point = MetricPoint(m.step, m.timestamp, value)
        if not any(_same_point(point, p) for p in seen[m.key]):
            fresh.append(m)
            seen[m.key].append(point)
    return fresh


def _log_batch(
    ctx: Context,
    run_id: str,
    items: list[MetricIn],
    now: int,
    params: list[tuple[str, str]] | None = None,
    tags: list[tuple[str, str]] | None = None,
) -> None:
    """Log a batch whose points may link to logged models: each linked point is kept once
    by the run and linked to its model. Every link is checked (the model exists) before
    the run's points are written, and written after them, so a refused batch leaves no
    link behind and a retried one none twice."""
    metrics: list[Metric] = []
    linked: list[Metric] = []
    links: list[logged_model_data.ModelMetric] = []
    for m in items:
        stamp = now if m.timestamp is None else m.timestamp
        metric = Metric(m.key, m.value, stamp, m.step or 0)
        if not m.model_id:
            metrics.append(metric)
            continue
        linked.append(metric)
        links.append(
            logged_model_data.ModelMetric(
                m.model_id, metric.key, metric.value, metric.timestamp, metric.step, run_id,
                m.dataset_name, m.dataset_digest,
            )
        )  # fmt: skip
    prepared = logged_model_data.prepare_metrics(ctx, links) if links else None
    if linked:
        metrics += _not_yet_stored(ctx, run_id, linked)
    ops.log_batch(ctx, run_id, metrics=metrics, params=params or [], tags=tags or [])
    if prepared is not None:
        logged_model_data.write_metrics(ctx, prepared)


@router.post("/runs/log-batch")
def log_batch(body: LogBatch, ctx: Ctx) -> Response:
    _log_batch(
        ctx,
        body.run_id,
        body.metrics or [],
        now_ms(),
        params=[(p.key, p.value or "") for p in body.params or []],
        tags=[(t.key, t.value or "") for t in body.tags or []],
    )
    return _ok()
