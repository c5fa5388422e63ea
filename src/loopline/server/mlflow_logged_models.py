"""MLflow 3's logged-model routes (``/api/2.0/mlflow/logged-models...``).

A logged model is what ``mlflow.<flavor>.log_model`` makes: created PENDING, its files
uploaded, then finalized READY. Shapes follow MLflow's REST API: tags and params are lists
of ``{"key", "value"}``, timestamps are milliseconds, statuses ``LOGGED_MODEL_*``. Logged
models are few, so a search reads every candidate and filters in Python
(:mod:`loopline.server.registry_filter`).

Example:
    >>> logged_model_json(LoggedModel("m-1", "0", "model", None, "READY", None,
    ...     "mlflow-artifacts:/0/models/m-1/artifacts", None, None, None, 1, 1))["info"]["status"]
    'LOGGED_MODEL_READY'
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from loopline.core.context import Context
from loopline.errors import InvalidInput
from loopline.server import registry_filter
from loopline.server.deps import get_ctx
from loopline.server.mlflow_wire import key_values
from loopline.server.strict_json import StrictJsonRoute
from loopline.tracking import query
from loopline.training import logged_model_data
from loopline.training import registry_store as store
from loopline.training.registry_store import LoggedModel

router = APIRouter(
    route_class=StrictJsonRoute, prefix="/api/2.0/mlflow", tags=["mlflow-logged-models"]
)
Ctx = Annotated[Context, Depends(get_ctx)]


class _Req(BaseModel):
    model_config = ConfigDict(extra="ignore")


class KeyValue(_Req):
    key: str
    value: str | None = None


def _tags(items: list[KeyValue] | None) -> dict[str, str]:
    return {t.key: t.value or "" for t in items or []}


def _tags_of(m: LoggedModel) -> dict[str, str]:
    return m.tags


_STATUS_TO_WIRE = {
    "PENDING": "LOGGED_MODEL_PENDING",
    "READY": "LOGGED_MODEL_READY",
    "FAILED": "LOGGED_MODEL_UPLOAD_FAILED",
}
_WIRE_TO_STATUS = {v: k for k, v in _STATUS_TO_WIRE.items()}


def logged_model_json(m: LoggedModel) -> dict[str, Any]:
    """A logged model in MLflow 3's JSON shape.

    Example:
        >>> # logged_model_json(store.get_logged_model(ctx, "m-01"))["info"]["model_id"]
    """
    return {
        "info": {
            "model_id": m.model_id,
            "experiment_id": m.experiment_id or "0",
            "name": m.name,
            "creation_timestamp_ms": m.creation_time,
            "last_updated_timestamp_ms": m.last_updated_time,
            "artifact_uri": m.artifact_location,
            "status": _STATUS_TO_WIRE.get(m.status, "LOGGED_MODEL_PENDING"),
            "model_type": m.model_type or "",
            "source_run_id": m.source_run_id or "",
            "tags": key_values(m.tags),
        },
        "data": {"params": key_values(m.params), "metrics": []},
    }


class CreateLoggedModel(_Req):
    experiment_id: str | None = None
    name: str | None = None
    model_type: str | None = None
    source_run_id: str | None = None
    params: list[KeyValue] | None = None
    tags: list[KeyValue] | None = None


@router.post("/logged-models")
def create_logged_model(body: CreateLoggedModel, ctx: Ctx) -> dict[str, Any]:
    m = store.create_logged_model(
        ctx,
        name=body.name or "model",
        experiment_id=body.experiment_id,
        source_run_id=body.source_run_id or None,
        model_type=body.model_type,
        params=_tags(body.params),
        tags=_tags(body.tags),
    )
    return {"model": logged_model_json(m)}


class LoggedModelOrder(_Req):
    field_name: str
    ascending: bool = True
    dataset_name: str | None = None
    dataset_digest: str | None = None


class SearchLoggedModels(_Req):
    experiment_ids: list[str] | None = None
    filter: str | None = None
    max_results: int = Field(100, ge=1, le=10000)
    page_token: str | None = None
    order_by: list[LoggedModelOrder] | None = None


_LOGGED_FIELDS: dict[str, registry_filter.Kind] = {
    "name": "str",
    "model_id": "str",
    "source_run_id": "str",
    "experiment_id": "str",
    "status": "str",
    "creation_time": "int",
    "creation_timestamp": "int",
    "last_updated_timestamp": "int",
}


def _logged_attrs(m: store.LoggedModel) -> dict[str, Any]:
    return {
        "name": m.name,
        "model_id": m.model_id,
        "source_run_id": m.source_run_id,
        "experiment_id": m.experiment_id,
        "status": _STATUS_TO_WIRE.get(m.status),
        "creation_time": m.creation_time,
        "creation_timestamp": m.creation_time,
        "last_updated_timestamp": m.last_updated_time,
    }


def _logged_order(order_by: list[LoggedModelOrder] | None) -> list[tuple[str, bool]]:
    order: list[tuple[str, bool]] = []
    for item in order_by or []:
        if item.field_name.startswith("metrics."):
            raise InvalidInput(
                f"ordering logged models by {item.field_name!r} is not supported",
                field="order_by",
                hint="order by name, model_id, creation_timestamp or last_updated_timestamp",
            )
        direction = "ASC" if item.ascending else "DESC"
        order += registry_filter.parse_order_by(
            [f"`{item.field_name}` {direction}"], list(_LOGGED_FIELDS)
        )
    if any(k == "creation_time" for k, _ in order):  # the same field (MLflow's alias)
        return registry_filter.tie_break(order, ("model_id", True))
    # MLflow's tie-breakers: newest first, then by id.
    return registry_filter.tie_break(order, ("creation_timestamp", False), ("model_id", True))


#: What a logged-model filter compares beyond attributes and tags.
_LOGGED_EXTRA: tuple[registry_filter.Entity, ...] = ("param",)


def _params_of(m: store.LoggedModel) -> dict[str, str]:
    return m.params


@router.post("/logged-models/search")
def search_logged_models(body: SearchLoggedModels, ctx: Ctx) -> dict[str, Any]:
    page, after = registry_filter.search(
        store.search_logged_models(ctx, body.experiment_ids, None, 1_000_000, 0),
        attrs=_logged_attrs,
        tags=_tags_of,
        params=_params_of,
        where=registry_filter.compile_filter(body.filter, _LOGGED_FIELDS, _LOGGED_EXTRA),
        order=_logged_order(body.order_by),
        offset=query.decode_page_token(body.page_token),
        limit=body.max_results,
    )
    out: dict[str, Any] = {"models": [logged_model_json(m) for m in page]}
    if after is not None:
        out["next_page_token"] = query.encode_page_token(after)
    return out


@router.get("/logged-models/{model_id}")
def get_logged_model(model_id: str, ctx: Ctx) -> dict[str, Any]:
    return {"model": logged_model_json(store.get_logged_model(ctx, model_id))}


class FinalizeLoggedModel(_Req):
    status: str | None = None


@router.patch("/logged-models/{model_id}")
def finalize_logged_model(model_id: str, body: FinalizeLoggedModel, ctx: Ctx) -> dict[str, Any]:
    status = _WIRE_TO_STATUS.get(body.status or "")
    if body.status and status is None:
        raise InvalidInput(
            f"status {body.status!r} is not a logged-model status",
            field="status",
            hint=f"use one of {sorted(_WIRE_TO_STATUS)}",
        )
    m = store.update_logged_model(ctx, model_id, status=status)
    return {"model": logged_model_json(m)}


class LoggedModelParams(_Req):
    model_id: str | None = None
    params: list[KeyValue] | None = None


@router.post("/logged-models/{model_id}/params")
def log_logged_model_params(model_id: str, body: LoggedModelParams, ctx: Ctx) -> dict[str, Any]:
    """MLflow's ``LogLoggedModelParams``: the params past the 100 sent with the creation, and
    ``mlflow.log_model_params``; checked as a run's params are.

    Example:
        >>> # POST /api/2.0/mlflow/logged-models/m-0123/params
        >>> #      {"model_id": "m-0123", "params": [{"key": "depth", "value": "3"}]}
    """
    if body.model_id and body.model_id != model_id:
        # Which model was meant is unclear: refused, not guessed.
        raise InvalidInput(
            f"model_id {body.model_id!r} of the body is not {model_id!r} of the path",
            field="model_id",
            hint="send the model's id in both, or only in the path",
        )
    pairs = [(p.key, p.value or "") for p in body.params or []]
    logged_model_data.log_params(ctx, model_id, pairs)
    return {}


class LoggedModelTags(_Req):
    tags: list[KeyValue] | None = None


@router.patch("/logged-models/{model_id}/tags")
def set_logged_model_tags(model_id: str, body: LoggedModelTags, ctx: Ctx) -> dict[str, Any]:
    store.set_logged_model_tags(ctx, model_id, _tags(body.tags))
    return {}


@router.delete("/logged-models/{model_id}/tags/{key}")
def delete_logged_model_tag(model_id: str, key: str, ctx: Ctx) -> dict[str, Any]:
    store.delete_logged_model_tag(ctx, model_id, key)
    return {}
