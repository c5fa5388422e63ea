"""MLflow-compatible tracking routes: experiments, runs, metrics (``/api/2.0/mlflow/...``).

Everything goes through :mod:`loopline.tracking`'s store functions, so what the MLflow client
logs is what Loopline's SDK and CLI read. Wire conventions follow MLflow's REST API:
experiment ids and versions are strings, tags and params are ``{"key", "value"}`` lists,
times are milliseconds, and non-finite metric values travel as the strings ``"NaN"``,
``"Infinity"`` and ``"-Infinity"`` (protobuf's JSON mapping).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import Field

from loopline.core.context import Context
from loopline.errors import InvalidInput
from loopline.server import mlflow_ops as ops
from loopline.server import registry_filter
from loopline.server.deps import get_ctx
from loopline.server.mlflow_wire import (
    KeyValue,
    WireDouble,
    WireInt64,
    WireViewType,
    experiment_json,
    run_info_json,
    run_json,
    wire_float,
)
from loopline.server.mlflow_wire import WireRequest as _Req
from loopline.server.mlflow_wire import experiment_id as _exp_id
from loopline.server.responses import OrjsonResponse
from loopline.server.strict_json import StrictJsonRoute
from loopline.tracking import experiments as exp_store
from loopline.tracking import lineage, query, run_data, run_state
from loopline.tracking.entities import (
    Experiment,
    Metric,
    MetricPoint,
    RunInput,
    RunOutput,
    now_ms,
)
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


def _point(key: str, p: MetricPoint) -> dict[str, Any]:
    return {"key": key, "value": wire_float(p.value), "timestamp": p.timestamp, "step": p.step}


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
    return ops.get_experiment(ctx, experiment_id)


@router.get("/experiments/get-by-name")
def get_experiment_by_name(experiment_name: str, ctx: Ctx) -> dict[str, Any]:
    return ops.get_experiment_by_name(ctx, experiment_name)


class SearchExperiments(_Req):
    max_results: WireInt64 = Field(1000, ge=1, le=50000)
    page_token: str | None = None
    filter: str | None = None
    order_by: list[str] | None = None
    view_type: WireViewType = None


#: What an MLflow experiment search filters on (``experiment_id`` compares as a string,
#: as in MLflow) and orders by.
_EXPERIMENT_FIELDS: dict[str, registry_filter.Kind] = {
    "name": "str",
    "experiment_id": "str",
    "creation_time": "int",
    "last_update_time": "int",
}


def _experiment_attrs(e: Experiment) -> dict[str, Any]:
    return {
        "name": e.name,
        "experiment_id": str(e.id),
        "creation_time": e.creation_time,
        "last_update_time": e.last_update_time,
    }


def _experiment_order_value(e: Experiment, attrs: Mapping[str, Any], key: str) -> Any:
    return e.id if key == "experiment_id" else attrs[key]  # ids are ordered as numbers


def _set_tags(e: Experiment) -> dict[str, str]:
    return {k: v for k, v in e.tags.items() if v is not None}


def _search_experiments(ctx: Context, body: SearchExperiments) -> dict[str, Any]:
    where = registry_filter.compile_filter(body.filter, _EXPERIMENT_FIELDS)
    order = registry_filter.parse_order_by(
        body.order_by or ["creation_time DESC", "experiment_id ASC"], list(_EXPERIMENT_FIELDS)
    )
    view = body.view_type or "active"
    name = where.equals("name")
    every: list[Experiment] = []
    token: str | None = None
    while True:  # experiments are few: read them all, then filter, order and page
        found = query.search_experiments(
            ctx.engine,
            names=None if name is None else [name],
            view=view,
            max_results=query.MAX_RESULTS_LIMIT,
            page_token=token,
        )
        every += found.experiments
        token = found.next_page_token
        if token is None:
            break
    page, after = registry_filter.search(
        every,
        attrs=_experiment_attrs,
        tags=_set_tags,
        where=where,
        order=registry_filter.tie_break(order, ("experiment_id", False)),  # MLflow's
        offset=query.decode_page_token(body.page_token),
        limit=body.max_results,
        order_value=_experiment_order_value,
    )
    out: dict[str, Any] = {"experiments": [experiment_json(e) for e in page]}
    if after is not None:
        out["next_page_token"] = query.encode_page_token(after)
    return out


@router.post("/experiments/search")
def search_experiments(body: SearchExperiments, ctx: Ctx) -> dict[str, Any]:
    return _search_experiments(ctx, body)


@router.get("/experiments/search")
def search_experiments_get(
    ctx: Ctx,
    max_results: Annotated[WireInt64, Query(ge=1, le=50000)] = 1000,
    page_token: str | None = None,
    filter: str | None = None,
    view_type: Annotated[WireViewType, Query()] = None,
    order_by: list[str] | None = Query(None),
) -> dict[str, Any]:
    return _search_experiments(
        ctx,
        SearchExperiments.model_construct(
            max_results=max_results,
            page_token=page_token,
            filter=filter,
            view_type=view_type,
            order_by=order_by,
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


class RenameExperiment(_Req):
    experiment_id: str
    new_name: str


@router.post("/experiments/update")
def rename_experiment(body: RenameExperiment, ctx: Ctx) -> dict[str, Any]:
    exp_store.rename_experiment(
        ctx.engine, _exp_id(body.experiment_id), body.new_name, actor=ctx.settings.actor_name
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


class ExperimentTagKey(_Req):
    experiment_id: str
    key: str


@router.post("/experiments/delete-experiment-tag")
def delete_experiment_tag(body: ExperimentTagKey, ctx: Ctx) -> dict[str, Any]:
    exp_store.delete_experiment_tag(ctx.engine, _exp_id(body.experiment_id), body.key)
    return {}


# ------------------------------------------------------------------ runs


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


# MLflow's limits (mlflow.utils.validation: MAX_DATASET_*, MAX_INPUT_TAG_*; its datasets
# table's columns), so that what is refused here is what MLflow's server refuses too.
# The run's input row checks the rest (lineage.check_input: no NUL, no control character).
class DatasetIn(_Req):
    name: str = Field(max_length=500)
    digest: str = Field(max_length=36)
    source_type: str | None = Field(None, max_length=36)
    source: str | None = Field(None, max_length=65_535)
    schema_: str | None = Field(None, alias="schema", max_length=1_048_575)
    profile: str | None = Field(None, max_length=16_777_215)


class InputTag(_Req):
    key: str = Field(max_length=255)
    value: str | None = Field(None, max_length=500)


class DatasetInputIn(_Req):
    tags: list[InputTag] | None = None
    dataset: DatasetIn


class LogInputs(_Req):
    run_id: str
    datasets: list[DatasetInputIn] | None = None


#: Where each field of a run's input comes from in MLflow's request (to name it there).
_INPUT_FIELDS = {
    "kind": "dataset.source_type",
    "name": "dataset.name",
    "digest": "dataset.digest",
    "context": "tags.mlflow.data.context",
}


def _mlflow_input(index: int, item: RunInput) -> RunInput:
    """``item`` checked as the store checks it, a refusal naming the request's field."""
    try:
        return lineage.check_input(item)
    except InvalidInput as exc:
        where = f"datasets.{index}.{_INPUT_FIELDS.get(exc.field or '', exc.field)}"
        raise InvalidInput(f"{where}: {exc.message}", field=where, hint=exc.hint) from None


@router.post("/runs/log-inputs")
def log_inputs(body: LogInputs, ctx: Ctx) -> dict[str, Any]:
    inputs = []
    for index, item in enumerate(body.datasets or []):
        tags = [(t.key, t.value) for t in item.tags or []]
        context = next((v for k, v in tags if k == "mlflow.data.context"), None)
        dataset = item.dataset
        # Kept as sent, so that the client reads back what it logged (mlflow.data.get_source
        # parses the source, schema and profile).
        details = {
            "source": dataset.source,
            "schema": dataset.schema_,
            "profile": dataset.profile,
            "tags": tags,
        }
        found = RunInput(
            dataset.source_type or "dataset",
            dataset.name,
            "mlflow",
            dataset.digest,
            context,
            orjson.dumps(details).decode(),
        )
        inputs.append(_mlflow_input(index, found))
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
    """MLflow 3's ``LogOutputs``: the models a run logged (``log_model`` sends it), read back
    in ``runs/get``'s ``outputs.model_outputs``.

    Example:
        >>> # POST /api/2.0/mlflow/runs/outputs
        >>> #      {"run_id": "3f2a...", "models": [{"model_id": "m-0123", "step": 0}]}
    """
    run_state.get_run(ctx.engine, body.run_id)  # 404 for an unknown run
    from loopline.training import registry_logged_models

    for m in body.models or []:
        registry_logged_models.get_logged_model(ctx, m.model_id)
    outputs = [RunOutput(m.model_id, 0 if m.step is None else m.step) for m in body.models or []]
    lineage.log_outputs(ctx.engine, body.run_id, outputs)
    return {}


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


@router.get("/artifacts/list")
def list_run_artifacts(
    ctx: Ctx,
    run_id: str | None = None,
    run_uuid: str | None = None,
    path: str | None = None,
    page_token: str | None = None,  # accepted: the one page is every entry
) -> dict[str, Any]:
    """MLflow's ``ListArtifacts`` of a run (its UI's artifact browser): what lies directly
    under ``path``, each ``path`` relative to the run's artifact root, with that root.
    One page holds everything (no ``next_page_token``), as MLflow's proxied listing does.

    Example:
        >>> # GET /api/2.0/mlflow/artifacts/list?run_id=3f2a...&path=plots
        >>> #   -> {"root_uri": "mlflow-artifacts:/1/3f2a.../artifacts",
        >>> #       "files": [{"path": "plots/roc.png", "is_dir": false, "file_size": 812}]}
    """
    from loopline.core.artifact_paths import clean_path
    from loopline.server.mlflow_artifacts import list_run

    record = run_state.get_run(ctx.engine, ops.require_run_id(run_id or run_uuid))
    sub = clean_path(path or "", allow_empty=True)
    listed = list_run(ctx, record.id, sub)
    prefix = f"{sub}/" if sub else ""
    files = [{**f, "path": prefix + f["path"]} for f in listed.get("files", [])]
    out: dict[str, Any] = {"root_uri": run_info_json(record)["artifact_uri"]}
    if files:
        out["files"] = files
    return out
