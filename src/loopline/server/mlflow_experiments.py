"""MLflow-compatible experiment routes (``/api/2.0/mlflow/experiments/...``): create, get,
search, delete, restore, rename, tag.

Separate from the run routes (:mod:`.mlflow_runs`): experiments are few and read whole, so
their search filters and orders in Python (:mod:`.registry_filter`) where runs are searched
in SQL. Wire conventions follow MLflow's REST API: experiment ids are strings, tags are
``{"key", "value"}`` lists, times are milliseconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import Field

from loopline.core.context import Context
from loopline.server import mlflow_ops as ops
from loopline.server import registry_filter
from loopline.server.deps import get_ctx
from loopline.server.mlflow_wire import KeyValue, WireInt64, WireViewType, experiment_json
from loopline.server.mlflow_wire import WireRequest as _Req
from loopline.server.mlflow_wire import experiment_id as _exp_id
from loopline.server.strict_json import StrictJsonRoute
from loopline.tracking import experiments as exp_store
from loopline.tracking import query
from loopline.tracking.entities import Experiment

router = APIRouter(route_class=StrictJsonRoute, prefix="/api/2.0/mlflow", tags=["mlflow-tracking"])
Ctx = Annotated[Context, Depends(get_ctx)]


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
