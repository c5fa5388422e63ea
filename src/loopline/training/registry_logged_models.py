"""SQL for logged models (MLflow 3's LoggedModel): create, read, update, tag and search.

A logged model is what a run logs (its artifacts, flavor, manifest and signature) before
any registered model names it; a version may then point at it (:mod:`.registry_versions`).
Its params and the metrics runs link to it are read and written by
:mod:`.logged_model_data`.

Example:
    >>> import tempfile, loopline
    >>> ctx = loopline.init(uri="sqlite:///:memory:", artifacts=tempfile.mkdtemp())
    >>> m = create_logged_model(ctx, name="model", experiment_id=None, source_run_id=None)
    >>> get_logged_model(ctx, m.model_id).status
    'PENDING'
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from loopline.core.context import Context
from loopline.core.db import reading
from loopline.errors import NotFound
from loopline.tracking.param_tag_checks import check_params
from loopline.training.logged_model_data import ModelMetric, metrics_of
from loopline.training.registry_records import LoggedModel, _drop_tag, _now_ms, _put_tag
from loopline.training.registry_tables import (
    logged_model_params,
    logged_model_tags,
    logged_models,
)


def create_logged_model(
    ctx: Context,
    *,
    name: str,
    experiment_id: str | None,
    source_run_id: str | None,
    artifact_location: str | None = None,
    model_type: str | None = None,
    flavor: str | None = None,
    params: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    tags: dict[str, str] | None = None,
    status: str = "PENDING",
    model_id: str | None = None,
) -> LoggedModel:
    """Create a logged model (status PENDING until finalized).

    ``params`` (a mapping or ``(key, value)`` pairs) are checked as a run's are
    (:func:`loopline.tracking.param_tag_checks.check_params`: a key given twice with two
    values is :class:`Conflict`), like those logged later
    (:func:`loopline.training.logged_model_data.log_params`).

    Example:
        >>> # create_logged_model(ctx, name="model", experiment_id="1", source_run_id="abc")
    """
    checked = check_params(params or {})
    model_id = model_id or f"m-{uuid.uuid4().hex}"
    location = (
        artifact_location or f"mlflow-artifacts:/{experiment_id or 0}/models/{model_id}/artifacts"
    )
    now = _now_ms()
    with ctx.engine.begin() as conn:
        conn.execute(
            logged_models.insert().values(
                model_id=model_id,
                experiment_id=experiment_id,
                name=name,
                source_run_id=source_run_id,
                status=status,
                model_type=model_type,
                artifact_location=location,
                flavor=flavor,
                creation_time=now,
                last_updated_time=now,
            )
        )
        for k, v in checked.items():
            conn.execute(logged_model_params.insert().values(model_id=model_id, key=k, value=v))
        for k, v in (tags or {}).items():
            conn.execute(logged_model_tags.insert().values(model_id=model_id, key=k, value=v))
    return get_logged_model(ctx, model_id)


def get_logged_model(ctx: Context, model_id: str) -> LoggedModel:
    """A logged model by id; :class:`NotFound` naming it.

    Example:
        >>> # get_logged_model(ctx, "m-0123").status
    """
    with reading(ctx.engine) as conn:
        row = conn.execute(
            sa.select(logged_models).where(logged_models.c.model_id == model_id)
        ).one_or_none()
        if row is None:
            raise NotFound(f"logged model {model_id!r} does not exist")
        return _hydrate_logged(conn, row)


def _hydrate_logged(
    conn: Connection, row: Any, metrics: dict[str, list[ModelMetric]] | None = None
) -> LoggedModel:
    """The model of ``row``; ``metrics`` are those of a page of models read at once."""
    tags = dict(
        conn.execute(
            sa.select(logged_model_tags.c.key, logged_model_tags.c.value).where(
                logged_model_tags.c.model_id == row.model_id
            )
        ).all()
    )
    params = dict(
        conn.execute(
            sa.select(logged_model_params.c.key, logged_model_params.c.value).where(
                logged_model_params.c.model_id == row.model_id
            )
        ).all()
    )
    return LoggedModel(
        row.model_id,
        row.experiment_id,
        row.name,
        row.source_run_id,
        row.status,
        row.model_type,
        row.artifact_location,
        row.flavor,
        row.manifest_digest,
        row.signature,
        row.creation_time,
        row.last_updated_time,
        tags,
        params,
        (metrics_of(conn, [row.model_id]) if metrics is None else metrics).get(row.model_id, []),
    )


def update_logged_model(
    ctx: Context,
    model_id: str,
    *,
    status: str | None = None,
    manifest_digest: str | None = None,
    signature: str | None = None,
    flavor: str | None = None,
) -> LoggedModel:
    """Update a logged model's status, manifest, signature or flavor.

    Example:
        >>> # update_logged_model(ctx, "m-0123", status="READY")
    """
    values: dict[str, Any] = {"last_updated_time": _now_ms()}
    for key, value in (
        ("status", status),
        ("manifest_digest", manifest_digest),
        ("signature", signature),
        ("flavor", flavor),
    ):
        if value is not None:
            values[key] = value
    with ctx.engine.begin() as conn:
        result = conn.execute(
            logged_models.update().where(logged_models.c.model_id == model_id).values(**values)
        )
        if not result.rowcount:
            raise NotFound(f"logged model {model_id!r} does not exist")
    return get_logged_model(ctx, model_id)


def set_logged_model_tags(ctx: Context, model_id: str, tags: dict[str, str]) -> None:
    """Set tags on a logged model.

    Example:
        >>> # set_logged_model_tags(ctx, "m-0123", {"stage": "dev"})
    """
    get_logged_model(ctx, model_id)
    with ctx.engine.begin() as conn:
        for k, v in tags.items():
            _put_tag(conn, logged_model_tags, {"model_id": model_id}, k, v)


def delete_logged_model_tag(ctx: Context, model_id: str, key: str) -> None:
    """Remove a tag from a logged model.

    Example:
        >>> # delete_logged_model_tag(ctx, "m-0123", "stage")
    """
    with ctx.engine.begin() as conn:
        _drop_tag(conn, logged_model_tags, {"model_id": model_id}, key)


def search_logged_models(
    ctx: Context,
    experiment_ids: list[str] | None = None,
    source_run_id: str | None = None,
    max_results: int = 1000,
    offset: int = 0,
) -> list[LoggedModel]:
    """Logged models, newest first, optionally of some experiments or one run.

    Example:
        >>> # search_logged_models(ctx, experiment_ids=["1"])
    """
    query = sa.select(logged_models).order_by(
        logged_models.c.creation_time.desc(), logged_models.c.model_id
    )
    if experiment_ids:
        query = query.where(logged_models.c.experiment_id.in_(experiment_ids))
    if source_run_id:
        query = query.where(logged_models.c.source_run_id == source_run_id)
    with reading(ctx.engine) as conn:
        rows = conn.execute(query.limit(max_results).offset(offset)).all()
        metrics = metrics_of(conn, [r.model_id for r in rows])
        return [_hydrate_logged(conn, r, metrics) for r in rows]
