"""MLflow 3's logged-model routes (``/api/2.0/mlflow/logged-models...``).

A logged model is what ``mlflow.<flavor>.log_model`` makes: created PENDING, its files
uploaded, then finalized READY; params past the first 100 come after
(:mod:`loopline.training.logged_model_data`), and so do the metric points runs link to it
(through ``runs/log-metric`` and ``runs/log-batch``). Shapes follow MLflow's REST API: tags
and params are lists of ``{"key", "value"}``, metrics MLflow's ``Metric``, timestamps are
milliseconds, statuses ``LOGGED_MODEL_*``. Logged models are few, so a search reads every
candidate and filters in Python (:mod:`loopline.server.registry_filter`).

Example:
    >>> logged_model_json(LoggedModel("m-1", "0", "model", None, "READY", None,
    ...     "mlflow-artifacts:/0/models/m-1/artifacts", None, None, None, 1, 1))["info"]["status"]
    'LOGGED_MODEL_READY'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import Field

from loopline.core.context import Context
from loopline.errors import InvalidInput
from loopline.server import registry_filter
from loopline.server.deps import get_ctx
from loopline.server.mlflow_wire import KeyValue, key_values, wire_float
from loopline.server.mlflow_wire import WireRequest as _Req
from loopline.server.mlflow_wire import tag_map as _tags
from loopline.server.strict_json import StrictJsonRoute
from loopline.tracking import query
from loopline.training import logged_model_data, registry_logged_models, registry_records
from loopline.training.logged_model_data import ModelMetric
from loopline.training.registry_records import LoggedModel

router = APIRouter(
    route_class=StrictJsonRoute, prefix="/api/2.0/mlflow", tags=["mlflow-logged-models"]
)
Ctx = Annotated[Context, Depends(get_ctx)]


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
        >>> # m = registry_logged_models.get_logged_model(ctx, "m-01")
        >>> # logged_model_json(m)["info"]["model_id"]
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
        "data": {"params": key_values(m.params), "metrics": [_metric_json(x) for x in m.metrics]},
    }


def _metric_json(m: ModelMetric) -> dict[str, Any]:
    """A linked metric point as MLflow's ``Metric`` (a dataset's fields only when named)."""
    out: dict[str, Any] = {
        "key": m.key,
        "value": wire_float(m.value),
        "timestamp": m.timestamp,
        "step": m.step,
        "run_id": m.run_id,
        "model_id": m.model_id,
    }
    if m.dataset_name is not None:
        out["dataset_name"] = m.dataset_name
    if m.dataset_digest is not None:
        out["dataset_digest"] = m.dataset_digest
    return out


class CreateLoggedModel(_Req):
    experiment_id: str | None = None
    name: str | None = None
    model_type: str | None = None
    source_run_id: str | None = None
    params: list[KeyValue] | None = None
    tags: list[KeyValue] | None = None


@router.post("/logged-models")
def create_logged_model(body: CreateLoggedModel, ctx: Ctx) -> dict[str, Any]:
    m = registry_logged_models.create_logged_model(
        ctx,
        name=body.name or "model",
        experiment_id=body.experiment_id,
        source_run_id=body.source_run_id or None,
        model_type=body.model_type,
        # As pairs: a key sent twice with two values is refused, not the last one kept.
        params=[(p.key, p.value or "") for p in body.params or []],
        tags=_tags(body.tags),
    )
    return {"model": logged_model_json(m)}


class LoggedModelOrder(_Req):
    field_name: str
    ascending: bool = True
    dataset_name: str | None = None
    dataset_digest: str | None = None


class DatasetFilter(_Req):
    dataset_name: str | None = None
    dataset_digest: str | None = None


class SearchLoggedModels(_Req):
    experiment_ids: list[str] | None = None
    filter: str | None = None
    datasets: list[DatasetFilter] | None = None
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
#: What a logged-model filter compares beyond attributes and tags.
_LOGGED_EXTRA: tuple[registry_filter.Entity, ...] = ("param", "metric")
_METRICS = "metrics."


def _logged_attrs(m: registry_records.LoggedModel) -> dict[str, Any]:
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


#: A dataset a search names: its name, and its digest when given.
Dataset = tuple[str, str | None]


def _on(m: ModelMetric, datasets: list[Dataset]) -> bool:
    """Whether point ``m`` was computed on one of ``datasets`` (on any, when none is named)."""
    return not datasets or any(
        m.dataset_name == name and (digest is None or m.dataset_digest == digest)
        for name, digest in datasets
    )


def _datasets(items: list[DatasetFilter] | None) -> list[Dataset]:
    out: list[Dataset] = []
    for n, item in enumerate(items or []):
        if not item.dataset_name:
            raise InvalidInput(
                f"datasets[{n}] names no dataset_name",
                field="datasets",
                hint="give each dataset as {'dataset_name': 'train'}, with its "
                "'dataset_digest' to pick one version",
            )
        out.append((item.dataset_name, item.dataset_digest or None))
    return out


@dataclass(frozen=True)
class _MetricOrder:
    """Order by the latest value of metric ``key`` (on one dataset, when named)."""

    key: str
    dataset: list[Dataset]

    def value(self, m: LoggedModel) -> float | None:
        """The model's latest point of the metric, as MLflow picks it: the newest time, then
        the greatest step, then the first run id; None (ordered last) without one, or NaN."""
        points = sorted(
            (x for x in m.metrics if x.key == self.key and _on(x, self.dataset)),
            key=lambda x: x.run_id,
        )
        if not points:
            return None
        latest = max(points, key=lambda x: (x.timestamp, x.step)).value  # first of equals
        return None if math.isnan(latest) else latest


def _logged_order(
    order_by: list[LoggedModelOrder] | None,
) -> tuple[list[tuple[str, bool]], dict[str, _MetricOrder]]:
    """``(field, ascending)`` pairs with MLflow's tie-breakers, and what each ``metrics.*``
    field among them orders by."""
    order: list[tuple[str, bool]] = []
    by_metric: dict[str, _MetricOrder] = {}
    for n, item in enumerate(order_by or []):
        is_metric = item.field_name.startswith(_METRICS)
        if item.dataset_digest and not item.dataset_name:
            raise InvalidInput(
                f"order_by[{n}] names a dataset_digest without its dataset_name",
                field="order_by",
                hint="give the dataset_name too",
            )
        if item.dataset_name and not is_metric:
            # Only a metric is computed on a dataset: refused rather than ignored.
            raise InvalidInput(
                f"order_by[{n}] names a dataset for {item.field_name!r}, which is not a metric",
                field="order_by",
                hint="name a dataset only to order by metrics.<key>",
            )
        if not is_metric:
            direction = "ASC" if item.ascending else "DESC"
            order += registry_filter.parse_order_by(
                [f"`{item.field_name}` {direction}"], list(_LOGGED_FIELDS)
            )
            continue
        key = item.field_name[len(_METRICS) :].strip("`")
        if not key:
            raise InvalidInput(
                f"order_by[{n}] names no metric", field="order_by", hint="write metrics.<key>"
            )
        dataset = [(item.dataset_name, item.dataset_digest or None)] if item.dataset_name else []
        # A name no attribute has, one per metric and dataset: the same twice is refused.
        field_name = f"{item.field_name}@{item.dataset_name or ''}@{item.dataset_digest or ''}"
        if field_name in by_metric:
            raise InvalidInput(
                f"order_by names {item.field_name!r} twice", field="order_by", hint="name it once"
            )
        by_metric[field_name] = _MetricOrder(key, dataset)
        order.append((field_name, item.ascending))
    if any(k == "creation_time" for k, _ in order):  # the same field (MLflow's alias)
        return registry_filter.tie_break(order, ("model_id", True)), by_metric
    # MLflow's tie-breakers: newest first, then by id.
    tied = registry_filter.tie_break(order, ("creation_timestamp", False), ("model_id", True))
    return tied, by_metric


def _params_of(m: registry_records.LoggedModel) -> dict[str, str]:
    return m.params


@router.post("/logged-models/search")
def search_logged_models(body: SearchLoggedModels, ctx: Ctx) -> dict[str, Any]:
    """MLflow's ``SearchLoggedModels``: a filter on attributes, ``tags.*``, ``params.*`` and
    ``metrics.*``, datasets, and an order on attributes and metrics.

    As in MLflow, a ``metrics.<key>`` clause holds when one of the model's points of that
    key does, counting only points on the named ``datasets`` (by name, and digest if
    given); with datasets and no metric clause, a model matches when it has a point on one
    of them. Ordering by a metric takes the model's latest point (on the order's dataset
    when named); models without one come last.

    Example:
        >>> # POST /api/2.0/mlflow/logged-models/search {"experiment_ids": ["1"],
        >>> #   "filter": "metrics.acc > 0.5", "datasets": [{"dataset_name": "train"}],
        >>> #   "order_by": [{"field_name": "metrics.acc", "ascending": false}]}
    """
    where = registry_filter.compile_filter(body.filter, _LOGGED_FIELDS, _LOGGED_EXTRA)
    datasets = _datasets(body.datasets)
    order, by_metric = _logged_order(body.order_by)
    models = registry_logged_models.search_logged_models(
        ctx, body.experiment_ids, None, 1_000_000, 0
    )
    if datasets and not where.uses("metric"):
        models = [m for m in models if any(_on(x, datasets) for x in m.metrics)]

    def metrics_of(m: LoggedModel) -> dict[str, list[float]]:
        values: dict[str, list[float]] = {}
        for x in m.metrics:
            if _on(x, datasets):
                values.setdefault(x.key, []).append(x.value)
        return values

    def order_value(m: LoggedModel, attrs: Mapping[str, Any], field_name: str) -> Any:
        found = by_metric.get(field_name)
        return attrs[field_name] if found is None else found.value(m)

    page, after = registry_filter.search(
        models,
        attrs=_logged_attrs,
        tags=_tags_of,
        params=_params_of,
        metrics=metrics_of,
        where=where,
        order=order,
        offset=query.decode_page_token(body.page_token),
        limit=body.max_results,
        order_value=order_value,
    )
    out: dict[str, Any] = {"models": [logged_model_json(m) for m in page]}
    if after is not None:
        out["next_page_token"] = query.encode_page_token(after)
    return out


@router.get("/logged-models/{model_id}")
def get_logged_model(model_id: str, ctx: Ctx) -> dict[str, Any]:
    return {"model": logged_model_json(registry_logged_models.get_logged_model(ctx, model_id))}


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
    m = registry_logged_models.update_logged_model(ctx, model_id, status=status)
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
    registry_logged_models.set_logged_model_tags(ctx, model_id, _tags(body.tags))
    return {}


@router.delete("/logged-models/{model_id}/tags/{key}")
def delete_logged_model_tag(model_id: str, key: str, ctx: Ctx) -> dict[str, Any]:
    registry_logged_models.delete_logged_model_tag(ctx, model_id, key)
    return {}
