"""MLflow-compatible model registry and logged-model routes (``/api/2.0/mlflow/...``).

Shapes follow MLflow's REST API: versions are strings on the wire, tags are lists of
``{"key", "value"}``, timestamps are milliseconds.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from loopline.core.context import Context
from loopline.errors import InvalidInput
from loopline.server import registry_filter
from loopline.server.deps import get_ctx
from loopline.server.strict_json import StrictJsonRoute
from loopline.training import logged_model_data
from loopline.training import registry_store as store

router = APIRouter(route_class=StrictJsonRoute, prefix="/api/2.0/mlflow", tags=["mlflow-registry"])
Ctx = Annotated[Context, Depends(get_ctx)]


class _Req(BaseModel):
    model_config = ConfigDict(extra="ignore")


class KeyValue(_Req):
    key: str
    value: str | None = None


def _tags(items: list[KeyValue] | None) -> dict[str, str]:
    return {t.key: t.value or "" for t in items or []}


def _kv(d: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in sorted(d.items())]


def version_json(mv: store.ModelVersion) -> dict[str, Any]:
    """A model version in MLflow's JSON shape."""
    return {
        "name": mv.name,
        "version": str(mv.version),
        "creation_timestamp": mv.creation_time,
        "last_updated_timestamp": mv.last_updated_time,
        "description": mv.description or "",
        "current_stage": "None",
        "source": mv.source or "",
        "run_id": mv.run_id or "",
        "status": mv.status,
        "tags": _kv(mv.tags),
        "aliases": mv.aliases,
        "model_id": mv.model_id or "",
    }


def model_json(ctx: Context, rm: store.RegisteredModel) -> dict[str, Any]:
    """A registered model in MLflow's JSON shape, with its latest version."""
    body: dict[str, Any] = {
        "name": rm.name,
        "creation_timestamp": rm.creation_time,
        "last_updated_timestamp": rm.last_updated_time,
        "description": rm.description or "",
        "tags": _kv(rm.tags),
        "aliases": [{"alias": a, "version": str(v)} for a, v in sorted(rm.aliases.items())],
    }
    if rm.latest_version is not None:
        body["latest_versions"] = [
            version_json(store.get_model_version(ctx, rm.name, rm.latest_version))
        ]
    return body


def _page(token: str | None) -> int:
    if not token:
        return 0
    try:
        return int(base64.urlsafe_b64decode(token.encode()).decode())
    except ValueError as exc:
        raise InvalidInput("page_token is not valid", field="page_token") from exc


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(str(offset).encode()).decode()


# ------------------------------------------------------------ registered models


class CreateModel(_Req):
    name: str
    tags: list[KeyValue] | None = None
    description: str | None = None


@router.post("/registered-models/create")
def create_registered_model(body: CreateModel, ctx: Ctx) -> dict[str, Any]:
    rm = store.create_registered_model(ctx, body.name, body.description, _tags(body.tags))
    return {"registered_model": model_json(ctx, rm)}


@router.get("/registered-models/get")
def get_registered_model(name: str, ctx: Ctx) -> dict[str, Any]:
    return {"registered_model": model_json(ctx, store.get_registered_model(ctx, name))}


class UpdateModel(_Req):
    name: str
    description: str | None = None


@router.patch("/registered-models/update")
def update_registered_model(body: UpdateModel, ctx: Ctx) -> dict[str, Any]:
    rm = store.update_registered_model(ctx, body.name, body.description)
    return {"registered_model": model_json(ctx, rm)}


class NameOnly(_Req):
    name: str


@router.delete("/registered-models/delete")
def delete_registered_model(body: NameOnly, ctx: Ctx) -> dict[str, Any]:
    store.delete_registered_model(ctx, body.name)
    return {}


_MODEL_FIELDS: dict[str, registry_filter.Kind] = {
    "name": "str",
    "creation_timestamp": "int",
    "last_updated_timestamp": "int",
}


def _model_attrs(m: store.RegisteredModel) -> dict[str, Any]:
    return {
        "name": m.name,
        "creation_timestamp": m.creation_time,
        "last_updated_timestamp": m.last_updated_time,
    }


def _tags_of(entity: Any) -> dict[str, str]:
    return entity.tags  # type: ignore[no-any-return]


def _paged(key: str, page: list[Any], next_offset: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {key: page}
    if next_offset is not None:
        out["next_page_token"] = _token(next_offset)
    return out


def _search_models(
    ctx: Context,
    filter_: str | None,
    max_results: int,
    page_token: str | None,
    order_by: list[str] | None = None,
) -> dict[str, Any]:
    where = registry_filter.compile_filter(filter_, _MODEL_FIELDS)
    order = registry_filter.parse_order_by(order_by, list(_MODEL_FIELDS))
    page, after = registry_filter.search(
        store.search_registered_models(ctx, None, 1_000_000, 0),
        attrs=_model_attrs,
        tags=_tags_of,
        where=where,
        order=registry_filter.tie_break(order, ("name", True)),  # MLflow's tie-breaker
        offset=_page(page_token),
        limit=max_results,
    )
    return _paged("registered_models", [model_json(ctx, m) for m in page], after)


@router.get("/registered-models/search")
def search_registered_models_get(
    ctx: Ctx,
    filter: str | None = None,
    max_results: int = Query(100, ge=1, le=1000),
    page_token: str | None = None,
    order_by: list[str] | None = Query(None),
) -> dict[str, Any]:
    return _search_models(ctx, filter, max_results, page_token, order_by)


class SearchModels(_Req):
    filter: str | None = None
    max_results: int = Field(100, ge=1, le=1000)
    page_token: str | None = None
    order_by: list[str] | None = None


@router.post("/registered-models/search")
def search_registered_models_post(body: SearchModels, ctx: Ctx) -> dict[str, Any]:
    return _search_models(ctx, body.filter, body.max_results, body.page_token, body.order_by)


class LatestVersions(_Req):
    name: str
    stages: list[str] | None = None


@router.post("/registered-models/get-latest-versions")
def get_latest_versions(body: LatestVersions, ctx: Ctx) -> dict[str, Any]:
    rm = store.get_registered_model(ctx, body.name)
    if rm.latest_version is None:
        return {"model_versions": []}
    return {
        "model_versions": [version_json(store.get_model_version(ctx, body.name, rm.latest_version))]
    }


class SetModelTag(_Req):
    name: str
    key: str
    value: str


@router.post("/registered-models/set-tag")
def set_registered_model_tag(body: SetModelTag, ctx: Ctx) -> dict[str, Any]:
    store.set_registered_model_tag(ctx, body.name, body.key, body.value)
    return {}


class DeleteModelTag(_Req):
    name: str
    key: str


@router.delete("/registered-models/delete-tag")
def delete_registered_model_tag(body: DeleteModelTag, ctx: Ctx) -> dict[str, Any]:
    store.delete_registered_model_tag(ctx, body.name, body.key)
    return {}


class SetAlias(_Req):
    name: str
    alias: str
    version: str


@router.post("/registered-models/alias")
def set_alias(body: SetAlias, ctx: Ctx) -> dict[str, Any]:
    version = store.require_version_number(body.version)
    store.set_alias(ctx, body.name, body.alias, version, reason="set through the MLflow API")
    return {}


class DeleteAlias(_Req):
    name: str
    alias: str


@router.delete("/registered-models/alias")
def delete_alias(
    ctx: Ctx,
    body: Annotated[DeleteAlias | None, Body()] = None,
    name: str | None = None,
    alias: str | None = None,
) -> dict[str, Any]:
    model = body.name if body else name
    target = body.alias if body else alias
    if not model or not target:
        raise InvalidInput("name and alias are required", field="alias")
    store.delete_alias(ctx, model, target, reason="deleted through the MLflow API")
    return {}


@router.get("/registered-models/alias")
def get_by_alias(name: str, alias: str, ctx: Ctx) -> dict[str, Any]:
    return {"model_version": version_json(store.get_version_by_alias(ctx, name, alias))}


# ------------------------------------------------------------ model versions


class CreateVersion(_Req):
    name: str
    source: str | None = None
    run_id: str | None = None
    tags: list[KeyValue] | None = None
    run_link: str | None = None
    description: str | None = None
    model_id: str | None = None


@router.post("/model-versions/create")
def create_model_version(body: CreateVersion, ctx: Ctx) -> dict[str, Any]:
    mv = store.create_model_version(
        ctx,
        body.name,
        source=body.source,
        run_id=body.run_id or None,
        model_id=body.model_id or None,
        description=body.description,
        tags=_tags(body.tags),
    )
    return {"model_version": version_json(mv)}


@router.get("/model-versions/get")
def get_model_version(name: str, version: str, ctx: Ctx) -> dict[str, Any]:
    return {"model_version": version_json(store.get_model_version(ctx, name, version))}


class UpdateVersion(_Req):
    name: str
    version: str
    description: str | None = None


@router.patch("/model-versions/update")
def update_model_version(body: UpdateVersion, ctx: Ctx) -> dict[str, Any]:
    mv = store.update_model_version(
        ctx, body.name, store.require_version_number(body.version), body.description
    )
    return {"model_version": version_json(mv)}


class VersionRef(_Req):
    name: str
    version: str


@router.delete("/model-versions/delete")
def delete_model_version(body: VersionRef, ctx: Ctx) -> dict[str, Any]:
    store.delete_model_version(ctx, body.name, store.require_version_number(body.version))
    return {}


_VERSION_FIELDS: dict[str, registry_filter.Kind] = {
    "name": "str",
    "run_id": "str",
    "source_path": "str",
    "version_number": "int",
    "creation_timestamp": "int",
    "last_updated_timestamp": "int",
}
_VERSION_ORDER = ["name", "version_number", "creation_timestamp", "last_updated_timestamp"]


def _version_attrs(v: store.ModelVersion) -> dict[str, Any]:
    return {
        "name": v.name,
        "run_id": v.run_id,
        "source_path": v.source,
        "version_number": v.version,
        "creation_timestamp": v.creation_time,
        "last_updated_timestamp": v.last_updated_time,
    }


def _search_versions(
    ctx: Context,
    filter_: str | None,
    max_results: int,
    page_token: str | None,
    order_by: list[str] | None = None,
) -> dict[str, Any]:
    where = registry_filter.compile_filter(filter_, _VERSION_FIELDS)
    # MLflow's default order and tie-breakers.
    order = registry_filter.parse_order_by(
        order_by or ["last_updated_timestamp DESC", "name ASC", "version_number DESC"],
        _VERSION_ORDER,
    )
    page, after = registry_filter.search(
        store.search_model_versions(ctx, where.equals("name"), None, 1_000_000, 0),
        attrs=_version_attrs,
        tags=_tags_of,
        where=where,
        order=registry_filter.tie_break(order, ("name", True), ("version_number", False)),
        offset=_page(page_token),
        limit=max_results,
    )
    return _paged("model_versions", [version_json(v) for v in page], after)


@router.get("/model-versions/search")
def search_model_versions_get(
    ctx: Ctx,
    filter: str | None = None,
    max_results: int = Query(1000, ge=1, le=200000),
    page_token: str | None = None,
    order_by: list[str] | None = Query(None),
) -> dict[str, Any]:
    return _search_versions(ctx, filter, max_results, page_token, order_by)


class SearchVersions(_Req):
    filter: str | None = None
    max_results: int = Field(1000, ge=1, le=200000)
    page_token: str | None = None
    order_by: list[str] | None = None


@router.post("/model-versions/search")
def search_model_versions_post(body: SearchVersions, ctx: Ctx) -> dict[str, Any]:
    return _search_versions(ctx, body.filter, body.max_results, body.page_token, body.order_by)


@router.get("/model-versions/get-download-uri")
def get_download_uri(name: str, version: str, ctx: Ctx) -> dict[str, Any]:
    mv = store.get_model_version(ctx, name, version)
    if mv.model_id:
        return {"artifact_uri": store.get_logged_model(ctx, mv.model_id).artifact_location}
    return {"artifact_uri": mv.source or ""}


class SetVersionTag(_Req):
    name: str
    version: str
    key: str
    value: str


@router.post("/model-versions/set-tag")
def set_model_version_tag(body: SetVersionTag, ctx: Ctx) -> dict[str, Any]:
    store.set_model_version_tag(
        ctx, body.name, store.require_version_number(body.version), body.key, body.value
    )
    return {}


class DeleteVersionTag(_Req):
    name: str
    version: str
    key: str


@router.delete("/model-versions/delete-tag")
def delete_model_version_tag(body: DeleteVersionTag, ctx: Ctx) -> dict[str, Any]:
    store.delete_model_version_tag(
        ctx, body.name, store.require_version_number(body.version), body.key
    )
    return {}


# ------------------------------------------------------------ logged models (MLflow 3)

_STATUS_TO_WIRE = {
    "PENDING": "LOGGED_MODEL_PENDING",
    "READY": "LOGGED_MODEL_READY",
    "FAILED": "LOGGED_MODEL_UPLOAD_FAILED",
}
_WIRE_TO_STATUS = {v: k for k, v in _STATUS_TO_WIRE.items()}


def logged_model_json(m: store.LoggedModel) -> dict[str, Any]:
    """A logged model in MLflow 3's JSON shape."""
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
            "tags": _kv(m.tags),
        },
        "data": {"params": _kv(m.params), "metrics": []},
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
        offset=_page(body.page_token),
        limit=body.max_results,
    )
    return _paged("models", [logged_model_json(m) for m in page], after)


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
