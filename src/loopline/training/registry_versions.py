"""SQL for model versions: numbering, create, read, search, update, delete and tags.

A version belongs to a registered model (:mod:`.registry_models`, created on the first
version) and may record the logged model it came from (:mod:`.registry_logged_models`).
Numbers are handed out by the model's counter, never twice; creation and deletion are
audited in the same transaction, and a version its deployment serves cannot be deleted.

Example:
    >>> import tempfile, loopline
    >>> ctx = loopline.init(uri="sqlite:///:memory:", artifacts=tempfile.mkdtemp())
    >>> create_model_version(ctx, "churn", source="models:/m-1", run_id=None).version
    1
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from loopline.core.context import Context
from loopline.core.db import reading
from loopline.errors import Conflict, NotFound
from loopline.training.registry_checks import (
    _check_description,
    _checked_tags,
    check_model_source,
    require_version_number,
)
from loopline.training.registry_logged_models import get_logged_model
from loopline.training.registry_models import (
    _model_row,
    _refuse_if_deployed,
    ensure_registered_model,
    lock_model,
)
from loopline.training.registry_records import (
    _HYDRATE_CHUNK,
    ModelVersion,
    _drop_tag,
    _now_ms,
    _put_tag,
)
from loopline.training.registry_tables import (
    model_aliases,
    model_version_tags,
    model_versions,
    registered_models,
)


def create_model_version(
    ctx: Context,
    name: str,
    *,
    source: str | None,
    run_id: str | None,
    model_id: str | None = None,
    description: str | None = None,
    tags: dict[str, str] | None = None,
) -> ModelVersion:
    """Add the next numbered version to ``name`` (created if missing); audited.

    A number is never given twice, even after its version is deleted: the model's
    ``last_version`` counts every number handed out. Concurrent writers get distinct
    numbers (the counter's update locks the model's row; the insert retries on a clash).
    A version of a logged model (``model_id``, or a ``models:/<model_id>`` source) without
    ``run_id`` records the run that logged the model, as MLflow's server does. ``source``
    is checked by :func:`check_model_source` (None: a version without one).

    Example:
        >>> # create_model_version(ctx, "churn", source="models:/m-abc", run_id="abc").version
    """
    _check_description(description)
    if source is not None:
        check_model_source(source)
    checked = _checked_tags(tags)
    logged = None
    if model_id is None and source and source.startswith("models:/"):
        with contextlib.suppress(NotFound):  # a registered model's URI, not a logged one
            logged = get_logged_model(ctx, source.removeprefix("models:/"))
            model_id = logged.model_id
    if model_id is not None and not run_id:
        run_id = (logged or get_logged_model(ctx, model_id)).source_run_id
    ensure_registered_model(ctx, name)
    for _ in range(20):
        now = _now_ms()
        try:
            with ctx.engine.begin() as conn:
                version = _next_version(conn, name)
                conn.execute(
                    model_versions.insert().values(
                        name=name,
                        version=version,
                        source=source,
                        run_id=run_id,
                        model_id=model_id,
                        status="READY",
                        description=description,
                        creation_time=now,
                        last_updated_time=now,
                    )
                )
                for k, v in checked.items():
                    conn.execute(
                        model_version_tags.insert().values(
                            name=name, version=version, key=k, value=v
                        )
                    )
                conn.execute(
                    registered_models.update()
                    .where(registered_models.c.name == name)
                    .values(last_updated_time=now)
                )
                ctx.audit(
                    conn,
                    action="model_version.create",
                    object_type="model_version",
                    object_id=f"{name}/{version}",
                    after={"source": source, "run_id": run_id, "model_id": model_id},
                )
            return get_model_version(ctx, name, version)
        except SAIntegrityError:
            time.sleep(0.01)
    raise Conflict(
        f"could not allocate a version number for {name!r}: too many writers", hint="retry"
    )


def _next_version(conn: Connection, name: str) -> int:
    """The next number of ``name``'s versions, counted in its ``last_version``."""
    counter = registered_models.c.last_version
    conn.execute(
        registered_models.update()
        .where(registered_models.c.name == name)
        .values(last_version=counter + 1)
    )
    counted = conn.execute(sa.select(counter).where(registered_models.c.name == name)).scalar()
    highest = conn.execute(
        sa.select(sa.func.max(model_versions.c.version)).where(model_versions.c.name == name)
    ).scalar()
    version = max(int(counted or 0), int(highest or 0) + 1)
    if version != counted:  # rows written without the counter (a restore of old rows)
        conn.execute(
            registered_models.update()
            .where(registered_models.c.name == name)
            .values(last_version=version)
        )
    return version


def _version_row(conn: Connection, name: str, version: int) -> Any:
    row = conn.execute(
        sa.select(model_versions).where(
            (model_versions.c.name == name) & (model_versions.c.version == int(version))
        )
    ).one_or_none()
    if row is None:
        _model_row(conn, name)
        raise NotFound(
            f"model {name!r} has no version {version}",
            hint=f"list versions with `loopline models show {name}`",
        )
    return row


def _hydrate_version(conn: Connection, row: Any) -> ModelVersion:
    return _hydrate_versions(conn, [row])[0]


def _hydrate_versions(conn: Connection, rows: Sequence[Any]) -> list[ModelVersion]:
    """Versions with their tags and aliases, in two queries per 500 rows (one version at a
    time cost two queries per version: 50 on a model's page)."""
    keys = [(r.name, r.version) for r in rows]
    tags: dict[tuple[str, int], dict[str, str]] = {k: {} for k in keys}
    aliases: dict[tuple[str, int], list[str]] = {k: [] for k in keys}
    for start in range(0, len(keys), _HYDRATE_CHUNK):
        chunk = keys[start : start + _HYDRATE_CHUNK]
        # Names IN and versions IN select a superset of the pairs; the dicts keep the pairs.
        names = sorted({n for n, _ in chunk})
        numbers = sorted({v for _, v in chunk})
        t = model_version_tags
        for name, version, key, value in conn.execute(
            sa.select(t.c.name, t.c.version, t.c.key, t.c.value).where(
                t.c.name.in_(names) & t.c.version.in_(numbers)
            )
        ):
            if (name, version) in tags:
                tags[(name, version)][key] = value
        a = model_aliases
        for name, version, alias in conn.execute(
            sa.select(a.c.name, a.c.version, a.c.alias)
            .where(a.c.name.in_(names) & a.c.version.in_(numbers))
            .order_by(a.c.alias)
        ):
            if (name, version) in aliases:
                aliases[(name, version)].append(alias)
    return [
        ModelVersion(
            r.name,
            r.version,
            r.source,
            r.run_id,
            r.model_id,
            r.status,
            r.description,
            r.creation_time,
            r.last_updated_time,
            tags[(r.name, r.version)],
            aliases[(r.name, r.version)],
        )
        for r in rows
    ]


def version_exists(conn: Connection, name: str, version: int) -> bool:
    """Whether model ``name`` has version ``version`` (inside the caller's transaction).

    Example:
        >>> # with ctx.engine.begin() as conn: version_exists(conn, "churn", 3)
    """
    found = conn.execute(
        sa.select(model_versions.c.version).where(
            (model_versions.c.name == name) & (model_versions.c.version == int(version))
        )
    ).first()
    return found is not None


def get_model_version(ctx: Context, name: str, version: int | str) -> ModelVersion:
    """One model version; :class:`NotFound` naming the model and version.

    Example:
        >>> # get_model_version(ctx, "churn", 3).run_id
    """
    number = require_version_number(version)
    with reading(ctx.engine) as conn:
        return _hydrate_version(conn, _version_row(conn, name, number))


def search_model_versions(
    ctx: Context,
    name: str | None = None,
    run_id: str | None = None,
    max_results: int = 1000,
    offset: int = 0,
) -> list[ModelVersion]:
    """Model versions, newest first, optionally of one model or from one run.

    Example:
        >>> # search_model_versions(ctx, name="churn")
    """
    query = sa.select(model_versions).order_by(
        model_versions.c.name, model_versions.c.version.desc()
    )
    if name is not None:
        query = query.where(model_versions.c.name == name)
    if run_id is not None:
        query = query.where(model_versions.c.run_id == run_id)
    with reading(ctx.engine) as conn:
        rows = conn.execute(query.limit(max_results).offset(offset)).all()
        return _hydrate_versions(conn, rows)


def update_model_version(
    ctx: Context, name: str, version: int, description: str | None
) -> ModelVersion:
    """Set a model version's description.

    Example:
        >>> # update_model_version(ctx, "churn", 3, "retrained on March data")
    """
    _check_description(description)
    with ctx.engine.begin() as conn:
        _version_row(conn, name, version)
        conn.execute(
            model_versions.update()
            .where((model_versions.c.name == name) & (model_versions.c.version == int(version)))
            .values(description=description, last_updated_time=_now_ms())
        )
    return get_model_version(ctx, name, version)


def delete_model_version(ctx: Context, name: str, version: int) -> None:
    """Delete a model version, its tags and any alias pointing at it (audited).

    Example:
        >>> # delete_model_version(ctx, "churn", 1)
    """
    v = int(version)
    with ctx.engine.begin() as conn:
        lock_model(conn, name)
        _version_row(conn, name, v)
        _refuse_if_deployed(conn, name, v)
        for table in (model_aliases, model_version_tags, model_versions):
            conn.execute(table.delete().where((table.c.name == name) & (table.c.version == v)))
        ctx.audit(
            conn,
            action="model_version.delete",
            object_type="model_version",
            object_id=f"{name}/{v}",
        )


def set_model_version_tag(ctx: Context, name: str, version: int, key: str, value: str) -> None:
    """Set a tag on a model version.

    Example:
        >>> # set_model_version_tag(ctx, "churn", 3, "validated", "yes")
    """
    v = int(version)
    with ctx.engine.begin() as conn:
        _version_row(conn, name, v)
        _put_tag(conn, model_version_tags, {"name": name, "version": v}, key, value)


def delete_model_version_tag(ctx: Context, name: str, version: int, key: str) -> None:
    """Remove a tag from a model version.

    Example:
        >>> # delete_model_version_tag(ctx, "churn", 3, "validated")
    """
    with ctx.engine.begin() as conn:
        _drop_tag(conn, model_version_tags, {"name": name, "version": int(version)}, key)
