"""MLflow-compatible model registry routes (``/api/2.0/mlflow/...``).

Shapes follow MLflow's REST API: versions are strings on the wire, tags are lists of
``{"key", "value"}``, timestamps are milliseconds.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query
from pydantic import Field

from loopline.core.context import Context
from loopline.errors import InvalidInput
from loopline.server import registry_filter
from loopline.server.deps import get_ctx
from loopline.server.mlflow_wire import KeyValue, WireInt64
from loopline.server.mlflow_wire import WireRequest as _Req
from loopline.server.mlflow_wire import tag_map as _tags
from loopline.server.strict_json import StrictJsonRoute
from loopline.training import (
    registry_aliases,
    registry_checks,
    registry_logged_models,
    registry_models,
    registry_records,
    registry_versions,
)

router = APIRouter(route_class=StrictJsonRoute, prefix="/api/2.0/mlflow", tags=["mlflow-registry"])
Ctx = Annotated[Context, Depends(get_ctx)]


def _kv(d: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in sorted(d.items())]


def version_json(mv: registry_records.ModelVersion) -> dict[str, Any]:
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


def model_json(ctx: Context, rm: registry_records.RegisteredModel) -> dict[str, Any]:
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
            version_json(registry_versions.get_model_version(ctx, rm.name, rm.latest_version))
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
    rm = registry_models.create_registered_model(ctx, body.name, body.description, _tags(body.tags))
    return {"registered_model": model_json(ctx, rm)}


@router.get("/registered-models/get")
def get_registered_model(name: str, ctx: Ctx) -> dict[str, Any]:
    return {"registered_model": model_json(ctx, registry_models.get_registered_model(ctx, name))}


class UpdateModel(_Req):
    name: str
    description: str | None = None


@router.patch("/registered-models/update")
def update_registered_model(body: UpdateModel, ctx: Ctx) -> dict[str, Any]:
    rm = registry_models.update_registered_model(ctx, body.name, body.description)
    return {"registered_model": model_json(ctx, rm)}


class RenameModel(_Req):
    name: str
    new_name: str


@router.post("/registered-models/rename")
def rename_registered_model(body: RenameModel, ctx: Ctx) -> dict[str, Any]:
    """MLflow's ``rename_registered_model``: versions, tags and aliases follow the model;
    a taken name is ``RESOURCE_ALREADY_EXISTS`` (409), as on MLflow's server.

    Example:
        >>> # POST /api/2.0/mlflow/registered-models/rename {"name": "a", "new_name": "b"}
    """
    rm = registry_models.rename_registered_model(ctx, body.name, body.new_name)
    return {"registered_model": model_json(ctx, rm)}


class NameOnly(_Req):
    name: str


@router.delete("/registered-models/delete")
def delete_registered_model(body: NameOnly, ctx: Ctx) -> dict[str, Any]:
    registry_models.delete_registered_model(ctx, body.name)
    return {}


_MODEL_FIELDS: dict[str, registry_filter.Kind] = {
    "name": "str",
    "creation_timestamp": "int",
    "last_updated_timestamp": "int",
}


def _model_attrs(m: registry_records.RegisteredModel) -> dict[str, Any]:
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
        registry_models.search_registered_models(ctx, None, 1_000_000, 0),
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
    max_results: Annotated[WireInt64, Query(ge=1, le=1000)] = 100,
    page_token: str | None = None,
    order_by: list[str] | None = Query(None),
) -> dict[str, Any]:
    return _search_models(ctx, filter, max_results, page_token, order_by)


class SearchModels(_Req):
    filter: str | None = None
    max_results: WireInt64 = Field(100, ge=1, le=1000)
    page_token: str | None = None
    order_by: list[str] | None = None


@router.post("/registered-models/search")
def search_registered_models_post(body: SearchModels, ctx: Ctx) -> dict[str, Any]:
    return _search_models(ctx, body.filter, body.max_results, body.page_token, body.order_by)


class LatestVersions(_Req):
    name: str
    stages: list[str] | None = None


# MLflow's (deprecated) stages, matched without regard to case as MLflow matches them.
_STAGES = {stage.lower(): stage for stage in ("None", "Staging", "Production", "Archived")}


def _asked_stages(stages: list[str] | None) -> set[str]:
    """The canonical stages ``stages`` names (all four when it names none), or
    :class:`InvalidInput` naming the one that is not a stage.

    Example:
        >>> sorted(_asked_stages(["production", "None"]))
        ['None', 'Production']
    """
    if not stages:
        return set(_STAGES.values())
    unknown = [stage for stage in stages if stage.lower() not in _STAGES]
    if unknown:
        raise InvalidInput(
            f"stages: {unknown[0]!r} is not a model version stage",
            field="stages",
            hint=f"use one of {', '.join(_STAGES.values())}",
        )
    return {_STAGES[stage.lower()] for stage in stages}


def _latest_versions(ctx: Context, name: str, stages: list[str] | None) -> dict[str, Any]:
    """The newest version in each stage asked for. Loopline has no stages (aliases replace
    them, as in MLflow 3): every version is in stage "None", so asking for "Staging" or
    "Production" finds none, and ``models:/NAME/Production`` fails in the client as it does
    against MLflow when no version was moved there, rather than loading the newest version."""
    rm = registry_models.get_registered_model(ctx, name)
    asked = _asked_stages(stages)
    if rm.latest_version is None or "None" not in asked:
        return {"model_versions": []}
    return {
        "model_versions": [
            version_json(registry_versions.get_model_version(ctx, name, rm.latest_version))
        ]
    }


@router.post("/registered-models/get-latest-versions")
def get_latest_versions(body: LatestVersions, ctx: Ctx) -> dict[str, Any]:
    return _latest_versions(ctx, body.name, body.stages)


@router.get("/registered-models/get-latest-versions")
def get_latest_versions_get(
    ctx: Ctx, name: str, stages: list[str] | None = Query(None)
) -> dict[str, Any]:
    """The same as the POST (MLflow serves both): ``?name=churn&stages=None``."""
    return _latest_versions(ctx, name, stages)


class SetModelTag(_Req):
    name: str
    key: str
    value: str


@router.post("/registered-models/set-tag")
def set_registered_model_tag(body: SetModelTag, ctx: Ctx) -> dict[str, Any]:
    registry_models.set_registered_model_tag(ctx, body.name, body.key, body.value)
    return {}


class DeleteModelTag(_Req):
    name: str
    key: str


@router.delete("/registered-models/delete-tag")
def delete_registered_model_tag(body: DeleteModelTag, ctx: Ctx) -> dict[str, Any]:
    registry_models.delete_registered_model_tag(ctx, body.name, body.key)
    return {}


class SetAlias(_Req):
    name: str
    alias: str
    version: str


@router.post("/registered-models/alias")
def set_alias(body: SetAlias, ctx: Ctx) -> dict[str, Any]:
    from loopline.training.registry_reads import check_intact

    version = registry_checks.require_version_number(body.version)
    check_intact(ctx, body.name, version, doing=f"point alias {body.alias!r} at")
    registry_aliases.set_alias(
        ctx, body.name, body.alias, version, reason="set through the MLflow API"
    )
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
    registry_aliases.delete_alias(ctx, model, target, reason="deleted through the MLflow API")
    return {}


@router.get("/registered-models/alias")
def get_by_alias(name: str, alias: str, ctx: Ctx) -> dict[str, Any]:
    return {"model_version": version_json(registry_aliases.get_version_by_alias(ctx, name, alias))}


# ------------------------------------------------------------ model versions


class CreateVersion(_Req):
    name: str
    source: str  # required, as on MLflow's server: a version without one loads nothing
    run_id: str | None = None
    tags: list[KeyValue] | None = None
    run_link: str | None = None
    description: str | None = None
    model_id: str | None = None


@router.post("/model-versions/create")
def create_model_version(body: CreateVersion, ctx: Ctx) -> dict[str, Any]:
    mv = registry_versions.create_model_version(
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
    return {"model_version": version_json(registry_versions.get_model_version(ctx, name, version))}


class UpdateVersion(_Req):
    name: str
    version: str
    description: str | None = None


@router.patch("/model-versions/update")
def update_model_version(body: UpdateVersion, ctx: Ctx) -> dict[str, Any]:
    mv = registry_versions.update_model_version(
        ctx, body.name, registry_checks.require_version_number(body.version), body.description
    )
    return {"model_version": version_json(mv)}


class VersionRef(_Req):
    name: str
    version: str


@router.delete("/model-versions/delete")
def delete_model_version(body: VersionRef, ctx: Ctx) -> dict[str, Any]:
    registry_versions.delete_model_version(
        ctx, body.name, registry_checks.require_version_number(body.version)
    )
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


def _version_attrs(v: registry_records.ModelVersion) -> dict[str, Any]:
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
        registry_versions.search_model_versions(ctx, where.equals("name"), None, 1_000_000, 0),
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
    max_results: Annotated[WireInt64, Query(ge=1, le=200000)] = 1000,
    page_token: str | None = None,
    order_by: list[str] | None = Query(None),
) -> dict[str, Any]:
    return _search_versions(ctx, filter, max_results, page_token, order_by)


class SearchVersions(_Req):
    filter: str | None = None
    max_results: WireInt64 = Field(1000, ge=1, le=200000)
    page_token: str | None = None
    order_by: list[str] | None = None


@router.post("/model-versions/search")
def search_model_versions_post(body: SearchVersions, ctx: Ctx) -> dict[str, Any]:
    return _search_versions(ctx, body.filter, body.max_results, body.page_token, body.order_by)


@router.get("/model-versions/get-download-uri")
def get_download_uri(name: str, version: str, ctx: Ctx) -> dict[str, Any]:
    mv = registry_versions.get_model_version(ctx, name, version)
    if mv.model_id:
        return {
            "artifact_uri": registry_logged_models.get_logged_model(
                ctx, mv.model_id
            ).artifact_location
        }
    return {"artifact_uri": mv.source or ""}


class SetVersionTag(_Req):
    name: str
    version: str
    key: str
    value: str


@router.post("/model-versions/set-tag")
def set_model_version_tag(body: SetVersionTag, ctx: Ctx) -> dict[str, Any]:
    registry_versions.set_model_version_tag(
        ctx, body.name, registry_checks.require_version_number(body.version), body.key, body.value
    )
    return {}


class DeleteVersionTag(_Req):
    name: str
    version: str
    key: str


@router.delete("/model-versions/delete-tag")
def delete_model_version_tag(body: DeleteVersionTag, ctx: Ctx) -> dict[str, Any]:
    registry_versions.delete_model_version_tag(
        ctx, body.name, registry_checks.require_version_number(body.version), body.key
    )
    return {}
