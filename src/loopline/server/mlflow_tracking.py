"""MLflow-compatible tracking routes: experiments, runs, metrics (``/api/2.0/mlflow/...``).

Everything goes through :mod:`loopline.tracking`'s store functions, so what the MLflow client
logs is what Loopline's SDK and CLI read. Wire conventions follow MLflow's REST API:
experiment ids and versions are strings, tags and params are ``{"key", "value"}`` lists,
times are milliseconds, and non-finite metric values travel as the strings ``"NaN"``,
``"Infinity"`` and ``"-Infinity"`` (protobuf's JSON mapping).
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from loopline.core.context import Context
from loopline.errors import InvalidInput
from loopline.server.deps import get_ctx
from loopline.server.responses import OrjsonResponse
from loopline.tracking import experiments as exp_store
from loopline.tracking import lineage, query, store
from loopline.tracking.entities import (
    Experiment,
    Metric,
    MetricPoint,
    RunInput,
    RunRecord,
    ViewType,
    now_ms,
)

router = APIRouter(prefix="/api/2.0/mlflow", tags=["mlflow-tracking"])
Ctx = Annotated[Context, Depends(get_ctx)]
PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
_VIEWS: dict[str, ViewType] = {
    "ACTIVE_ONLY": "active",
    "DELETED_ONLY": "deleted",
    "ALL": "all",
    "1": "active",
    "2": "deleted",
    "3": "all",
}


class _Req(BaseModel):
    model_config = ConfigDict(extra="ignore")


class KeyValue(_Req):
    key: str
    value: str | None = None


class MetricIn(_Req):
    key: str
    value: float | str
    timestamp: int | None = None
    step: int | None = 0


def _value(v: float | str, key: str) -> float:
    if isinstance(v, float | int):
        return float(v)
    try:
        return float({"Infinity": "inf", "-Infinity": "-inf"}.get(v, v))
    except ValueError as exc:
        raise InvalidInput(
            f"metric {key!r} has value {v!r}, which is not a number", field="value"
        ) from exc


def _wire_float(v: float) -> float | str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return v


def _kv(d: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": "" if v is None else v} for k, v in sorted(d.items())]


def _exp_id(raw: str | int | None) -> int:
    try:
        return int(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"experiment_id {raw!r} is not an experiment id",
            field="experiment_id",
            hint="experiment ids are numbers",
        ) from exc


def experiment_json(e: Experiment) -> dict[str, Any]:
    """An experiment in MLflow's JSON shape."""
    return {
        "experiment_id": str(e.id),
        "name": e.name,
        "artifact_location": e.artifact_location or f"mlflow-artifacts:/{e.id}",
        "lifecycle_stage": e.lifecycle_stage,
        "creation_time": e.creation_time,
        "last_update_time": e.last_update_time,
        "tags": _kv(e.tags),
    }


def run_info_json(r: RunRecord) -> dict[str, Any]:
    """The ``info`` part of a run in MLflow's JSON shape."""
    info: dict[str, Any] = {
        "run_id": r.id,
        "run_uuid": r.id,
        "run_name": r.name or "",
        "experiment_id": str(r.experiment_id),
        "user_id": r.user_id or "",
        "status": r.status,
        "start_time": r.start_time,
        "artifact_uri": f"mlflow-artifacts:/{r.experiment_id}/{r.id}/artifacts",
        "lifecycle_stage": r.lifecycle_stage,
    }
    if r.end_time is not None:
        info["end_time"] = r.end_time
    return info


def run_json(r: RunRecord) -> dict[str, Any]:
    """A run in MLflow's JSON shape."""
    tags = dict(r.tags)
    if r.name and RUN_NAME_TAG not in tags:
        tags[RUN_NAME_TAG] = r.name
    if r.parent_run_id and PARENT_TAG not in tags:
        tags[PARENT_TAG] = r.parent_run_id
    metrics = [
        {"key": k, "value": _wire_float(p.value), "timestamp": p.timestamp, "step": p.step}
        for k, p in sorted(r.latest_metrics.items())
    ]
    inputs = [
        {
            "tags": [{"key": "mlflow.data.context", "value": i.context or ""}],
            "dataset": {
                "name": i.name,
                "digest": i.digest,
                "source_type": i.kind,
                "source": f"{i.name}@{i.version}",
            },
        }
        for i in r.inputs
    ]
    return {
        "info": run_info_json(r),
        "data": {"metrics": metrics, "params": _kv(r.params), "tags": _kv(tags)},
        "inputs": {"dataset_inputs": inputs},
    }


def _ok() -> Response:
    """MLflow's empty answer, sent as is (no response model to validate on hot routes)."""
    return Response(b"{}", media_type="application/json")


def _point(key: str, p: MetricPoint) -> dict[str, Any]:
    return {"key": key, "value": _wire_float(p.value), "timestamp": p.timestamp, "step": p.step}


# ------------------------------------------------------------------ experiments


class CreateExperiment(_Req):
    name: str
    artifact_location: str | None = None
    tags: list[KeyValue] | None = None


@router.post("/experiments/create")
def create_experiment(body: CreateExperiment, ctx: Ctx) -> dict[str, Any]:
    # Artifacts always go through this server's proxy, whatever location a client asks for.
    e = exp_store.create_experiment(
        ctx.engine,
        body.name,
        tags={t.key: t.value or "" for t in body.tags or []},
        actor=ctx.settings.actor_name,
    )
    return {"experiment_id": str(e.id)}


@router.get("/experiments/get")
def get_experiment(experiment_id: str, ctx: Ctx) -> dict[str, Any]:
    return {
        "experiment": experiment_json(exp_store.get_experiment(ctx.engine, _exp_id(experiment_id)))
    }


@router.get("/experiments/get-by-name")
def get_experiment_by_name(experiment_name: str, ctx: Ctx) -> dict[str, Any]:
    return {
        "experiment": experiment_json(exp_store.get_experiment_by_name(ctx.engine, experiment_name))
    }


class SearchExperiments(_Req):
    max_results: int = Field(1000, ge=1, le=50000)
    page_token: str | None = None
    filter: str | None = None
    order_by: list[str] | None = None
    view_type: str | None = None


def _experiment_filter(text: str | None) -> tuple[list[str] | None, str | None]:
    """MLflow clients filter experiments by name: ``name = 'x'`` or ``name LIKE 'x%'``."""
    from loopline.server import registry_filter

    names: list[str] | None = None
    like: str | None = None
    for c in registry_filter.parse(text):
        if c.is_tag or c.key not in ("name", "attribute.name", "attributes.name"):
            raise InvalidInput(
                f"experiment filter on {c.key!r} is not supported",
                field="filter",
                hint="filter experiments by name",
            )
        if c.op == "=":
            names = [c.value]
        elif c.op in ("LIKE", "ILIKE"):
            like = c.value
        else:
            raise InvalidInput(
                f"operator {c.op} is not supported on experiment names",
                field="filter",
                hint="use = or LIKE",
            )
    return names, like


def _search_experiments(ctx: Context, body: SearchExperiments) -> dict[str, Any]:
    names, like = _experiment_filter(body.filter)
    view = _VIEWS.get(body.view_type or "ACTIVE_ONLY", "active")
    page = query.search_experiments(
        ctx.engine,
        names=names,
        name_like=like,
        view=view,
        max_results=body.max_results,
        page_token=body.page_token,
    )
    out: dict[str, Any] = {"experiments": [experiment_json(e) for e in page.experiments]}
    if page.next_page_token:
        out["next_page_token"] = page.next_page_token
    return out


@router.post("/experiments/search")
def search_experiments(body: SearchExperiments, ctx: Ctx) -> dict[str, Any]:
    return _search_experiments(ctx, body)


@router.get("/experiments/search")
def search_experiments_get(
    ctx: Ctx,
    max_results: int = Query(1000, ge=1, le=50000),
    page_token: str | None = None,
    filter: str | None = None,
    view_type: str | None = None,
) -> dict[str, Any]:
    return _search_experiments(
        ctx,
        SearchExperiments(
            max_results=max_results, page_token=page_token, filter=filter, view_type=view_type
        ),
    )


class ExperimentRef(_Req):
    experiment_id: str


@router.post("/experiments/delete")
def delete_experiment(body: ExperimentRef, ctx: Ctx) -> dict[str, Any]:
    exp_store.set_experiment_lifecycle(
        ctx.engine, _exp_id(body.experiment_id), "deleted", actor=ctx.settings.actor_name
    )
    return {}


@router.post("/experiments/restore")
def restore_experiment(body: ExperimentRef, ctx: Ctx) -> dict[str, Any]:
    exp_store.set_experiment_lifecycle(
        ctx.engine, _exp_id(body.experiment_id), "active", actor=ctx.settings.actor_name
    )
    return {}


class ExperimentTag(_Req):
    experiment_id: str
    key: str
    value: str


@router.post("/experiments/set-experiment-tag")
def set_experiment_tag(body: ExperimentTag, ctx: Ctx) -> dict[str, Any]:
    exp_store.set_experiment_tag(ctx.engine, _exp_id(body.experiment_id), body.key, body.value)
    return {}


# ------------------------------------------------------------------ runs


class CreateRun(_Req):
    experiment_id: str | None = None
    user_id: str | None = None
    start_time: int | None = None
    tags: list[KeyValue] | None = None
    run_name: str | None = None


@router.post("/runs/create")
def create_run(body: CreateRun, ctx: Ctx) -> Response:
    tags = {t.key: t.value or "" for t in body.tags or []}
    parent = tags.get(PARENT_TAG) or None
    name = body.run_name or tags.get(RUN_NAME_TAG) or None
    record = store.create_run(
        ctx.engine,
        _exp_id(body.experiment_id or "0"),
        name=name,
        start_time=body.start_time,
        tags=tags,
        parent_run_id=parent,
        user_id=body.user_id,
        actor=ctx.settings.actor_name,
    )
    return OrjsonResponse({"run": run_json(record)})


class UpdateRun(_Req):
    run_id: str | None = None
    run_uuid: str | None = None
    status: str | None = None
    end_time: int | None = None
    run_name: str | None = None


@router.post("/runs/update")
def update_run(body: UpdateRun, ctx: Ctx) -> Response:
    run_id = body.run_id or body.run_uuid
    if not run_id:
        raise InvalidInput("run_id is required", field="run_id")
    record = store.update_run(
        ctx.engine,
        run_id,
        status=body.status,
        end_time=body.end_time,
        name=body.run_name or None,
        actor=ctx.settings.actor_name,
    )
    return OrjsonResponse({"run_info": run_info_json(record)})


@router.get("/runs/get")
def get_run(ctx: Ctx, run_id: str | None = None, run_uuid: str | None = None) -> Response:
    rid = run_id or run_uuid
    if not rid:
        raise InvalidInput("run_id is required", field="run_id")
    return OrjsonResponse({"run": run_json(store.get_run(ctx.engine, rid))})


class RunRef(_Req):
    run_id: str


@router.post("/runs/delete")
def delete_run(body: RunRef, ctx: Ctx) -> dict[str, Any]:
    store.delete_run(ctx.engine, body.run_id, actor=ctx.settings.actor_name)
    return {}


@router.post("/runs/restore")
def restore_run(body: RunRef, ctx: Ctx) -> dict[str, Any]:
    store.restore_run(ctx.engine, body.run_id, actor=ctx.settings.actor_name)
    return {}


class SearchRuns(_Req):
    experiment_ids: list[str] | None = None
    filter: str | None = None
    run_view_type: str | None = None
    max_results: int = Field(1000, ge=1, le=50000)
    order_by: list[str] | None = None
    page_token: str | None = None


@router.post("/runs/search")
def search_runs(body: SearchRuns, ctx: Ctx) -> Response:
    ids = [_exp_id(e) for e in body.experiment_ids or []] or None
    view = _VIEWS.get(body.run_view_type or "ACTIVE_ONLY", "active")
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
    metric = Metric(
        body.key, _value(body.value, body.key), body.timestamp or now_ms(), body.step or 0
    )
    store.log_batch(ctx.engine, run_id, metrics=[metric])
    return _ok()


class LogParam(_Req):
    run_id: str | None = None
    run_uuid: str | None = None
    key: str
    value: str


@router.post("/runs/log-parameter")
def log_param(body: LogParam, ctx: Ctx) -> Response:
    store.log_batch(ctx.engine, body.run_id or body.run_uuid or "", params={body.key: body.value})
    return _ok()


class SetTag(_Req):
    run_id: str | None = None
    run_uuid: str | None = None
    key: str
    value: str


@router.post("/runs/set-tag")
def set_tag(body: SetTag, ctx: Ctx) -> Response:
    run_id = body.run_id or body.run_uuid or ""
    if body.key == RUN_NAME_TAG:
        store.update_run(ctx.engine, run_id, name=body.value)
    store.set_tag(ctx.engine, run_id, body.key, body.value)
    return _ok()


class DeleteTag(_Req):
    run_id: str
    key: str


@router.post("/runs/delete-tag")
def delete_tag(body: DeleteTag, ctx: Ctx) -> dict[str, Any]:
    store.delete_tag(ctx.engine, body.run_id, body.key)
    return {}


class LogBatch(_Req):
    run_id: str
    metrics: list[MetricIn] | None = None
    params: list[KeyValue] | None = None
    tags: list[KeyValue] | None = None


@router.post("/runs/log-batch")
def log_batch(body: LogBatch, ctx: Ctx) -> Response:
    now = now_ms()
    metrics = [
        Metric(m.key, _value(m.value, m.key), m.timestamp or now, m.step or 0)
        for m in body.metrics or []
    ]
    store.log_batch(
        ctx.engine,
        body.run_id,
        metrics=metrics,
        params=[(p.key, p.value or "") for p in body.params or []],
        tags=[(t.key, t.value or "") for t in body.tags or []],
    )
    return _ok()


class DatasetIn(_Req):
    name: str
    digest: str
    source_type: str | None = None
    source: str | None = None


class DatasetInputIn(_Req):
    tags: list[KeyValue] | None = None
    dataset: DatasetIn


class LogInputs(_Req):
    run_id: str
    datasets: list[DatasetInputIn] | None = None


@router.post("/runs/log-inputs")
def log_inputs(body: LogInputs, ctx: Ctx) -> dict[str, Any]:
    inputs = []
    for item in body.datasets or []:
        context = next((t.value for t in item.tags or [] if t.key == "mlflow.data.context"), None)
        inputs.append(
            RunInput(
                item.dataset.source_type or "dataset",
                item.dataset.name,
                "mlflow",
                item.dataset.digest,
                context,
            )
        )
    lineage.log_inputs(ctx.engine, body.run_id, inputs)
    return {}


class ModelOutput(_Req):
    model_id: str
    step: int | None = 0


class LogOutputs(_Req):
    run_id: str
    models: list[ModelOutput] | None = None


@router.post("/runs/outputs")
def log_outputs(body: LogOutputs, ctx: Ctx) -> dict[str, Any]:
    store.get_run(ctx.engine, body.run_id)  # 404 for an unknown run
    from loopline.training import registry_store

    for m in body.models or []:
        registry_store.get_logged_model(ctx, m.model_id)
    return {}


@router.get("/metrics/get-history")
def get_metric_history(
    ctx: Ctx,
    metric_key: str,
    run_id: str | None = None,
    run_uuid: str | None = None,
    max_results: int | None = Query(None, ge=1),
    page_token: str | None = None,
) -> dict[str, Any]:
    rid = run_id or run_uuid or ""
    points = store.get_metric_history(ctx.engine, rid, metric_key)
    offset = query.decode_page_token(page_token)
    limit = max_results or len(points)
    page = points[offset : offset + limit]
    out: dict[str, Any] = {"metrics": [_point(metric_key, p) for p in page]}
    if offset + limit < len(points):
        out["next_page_token"] = query.encode_page_token(offset + limit)
    return out
