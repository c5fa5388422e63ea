"""SQL for registered models: create, read, search, update, rename, delete, tag, and the
per-model lock every change of a model's aliases or versions takes first.

A registered model is the named parent of versions and aliases; its row is what
:func:`lock_model` locks and what :func:`_refuse_if_deployed` protects while a deployment
serves the model. Versions (:mod:`.registry_versions`) and aliases
(:mod:`.registry_aliases`) build on these functions; deletions and renames are written to
the audit log in the same transaction.

Example:
    >>> import tempfile, loopline
    >>> ctx = loopline.init(uri="sqlite:///:memory:", artifacts=tempfile.mkdtemp())
    >>> create_registered_model(ctx, "churn").latest_version is None
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from loopline.core.context import Context
from loopline.core.db import reading
from loopline.errors import Conflict, InvalidInput, NotFound
from loopline.tracking._dialect import like_pattern_too_long
from loopline.training.registry_checks import _check_description, _checked_tags, check_name
from loopline.training.registry_records import (
    _HYDRATE_CHUNK,
    RegisteredModel,
    _drop_tag,
    _now_ms,
    _put_tag,
)
from loopline.training.registry_tables import (
    model_aliases,
    model_version_tags,
    model_versions,
    registered_model_tags,
    registered_models,
)


def _model_row(conn: Connection, name: str) -> Any:
    # A name that could never have been registered is bad input (4xx), not a miss; this
    # also keeps NUL away from PostgreSQL, which cannot compare it.
    check_name(name)
    row = conn.execute(
        sa.select(registered_models).where(registered_models.c.name == name)
    ).one_or_none()
    if row is None:
        raise NotFound(
            f"registered model {name!r} does not exist",
            hint="list models with `loopline models ls`",
        )
    return row


def lock_model(conn: Connection, name: str) -> bool:
    """Lock model ``name``'s row until the caller's transaction ends; False if it has none.

    Every change of a model's aliases or versions takes this lock first, and before the
    audit head (which :func:`~loopline.core.audit.append` locks), so writers of one model
    queue up: two alias moves read a true ``before`` and never both insert the alias (a
    raw unique violation on PostgreSQL), and a deployment that moves ``champion`` cannot
    deadlock with a person moving it. SQLite's write lock already serializes writers.

    Example:
        >>> # with ctx.engine.begin() as conn: lock_model(conn, "churn")
    """
    found = conn.execute(
        sa.select(registered_models.c.name)
        .where(registered_models.c.name == name)
        .with_for_update()
    ).first()
    return found is not None


def create_registered_model(
    ctx: Context, name: str, description: str | None = None, tags: dict[str, str] | None = None
) -> RegisteredModel:
    """Create a registered model; :class:`Conflict` if the name is taken.

    Example:
        >>> # create_registered_model(ctx, "churn", description="predicts churn")
    """
    check_name(name)
    _check_description(description)
    checked = _checked_tags(tags)
    now = _now_ms()
    try:
        with ctx.engine.begin() as conn:
            conn.execute(
                registered_models.insert().values(
                    name=name, description=description, creation_time=now, last_updated_time=now
                )
            )
            for k, v in checked.items():
                conn.execute(registered_model_tags.insert().values(name=name, key=k, value=v))
            ctx.audit(
                conn,
                action="model.create",
                object_type="registered_model",
                object_id=name,
                after={"description": description},
            )
    except SAIntegrityError as exc:
        raise _name_taken(name, hint="pick another name or add a version to it") from exc
    return get_registered_model(ctx, name)


def ensure_registered_model(ctx: Context, name: str) -> RegisteredModel:
    """Get the registered model, creating it when it does not exist yet."""
    try:
        return get_registered_model(ctx, name)
    except NotFound:
        try:
            return create_registered_model(ctx, name)
        except Conflict:  # created meanwhile by another writer
            return get_registered_model(ctx, name)


def get_registered_model(ctx: Context, name: str) -> RegisteredModel:
    """The registered model ``name`` with its tags, aliases and latest version.

    Example:
        >>> # get_registered_model(ctx, "churn").aliases -> {"champion": 3}
    """
    with reading(ctx.engine) as conn:
        row = _model_row(conn, name)
        return _hydrate_model(conn, row)


def _hydrate_model(conn: Connection, row: Any) -> RegisteredModel:
    return _hydrate_models(conn, [row])[0]


def _hydrate_models(conn: Connection, rows: Sequence[Any]) -> list[RegisteredModel]:
    """Models with their tags, aliases and latest version, in three queries per 500 rows
    (one model at a time cost three queries per model on every list page)."""
    tags: dict[str, dict[str, str]] = {r.name: {} for r in rows}
    aliases: dict[str, dict[str, int]] = {r.name: {} for r in rows}
    latest: dict[str, int | None] = dict.fromkeys(tags)
    names = list(tags)
    for start in range(0, len(names), _HYDRATE_CHUNK):
        chunk = names[start : start + _HYDRATE_CHUNK]
        t = registered_model_tags
        for name, key, value in conn.execute(
            sa.select(t.c.name, t.c.key, t.c.value).where(t.c.name.in_(chunk))
        ):
            tags[name][key] = value
        a = model_aliases
        for name, alias, version in conn.execute(
            sa.select(a.c.name, a.c.alias, a.c.version).where(a.c.name.in_(chunk))
        ):
            aliases[name][alias] = version
        v = model_versions
        newest_of = sa.select(v.c.name, sa.func.max(v.c.version)).where(v.c.name.in_(chunk))
        for name, newest in conn.execute(newest_of.group_by(v.c.name)):
            latest[name] = newest
    return [
        RegisteredModel(
            r.name,
            r.description,
            r.creation_time,
            r.last_updated_time,
            tags[r.name],
            aliases[r.name],
            latest[r.name],
        )
        for r in rows
    ]


def search_registered_models(
    ctx: Context, name_like: str | None = None, max_results: int = 1000, offset: int = 0
) -> list[RegisteredModel]:
    """Registered models ordered by name, optionally filtered by a SQL LIKE pattern.

    Example:
        >>> # search_registered_models(ctx, name_like="churn%")
    """
    query = sa.select(registered_models).order_by(registered_models.c.name)
    too_long = like_pattern_too_long(name_like) if name_like else None
    if too_long is not None:
        raise InvalidInput(too_long, field="name_like", hint="shorten the pattern")
    if name_like:
        query = query.where(registered_models.c.name.like(name_like, escape="\\"))
    with reading(ctx.engine) as conn:
        rows = conn.execute(query.limit(max_results).offset(offset)).all()
        return _hydrate_models(conn, rows)


def update_registered_model(ctx: Context, name: str, description: str | None) -> RegisteredModel:
    """Set a registered model's description.

    Example:
        >>> # update_registered_model(ctx, "churn", "v2 of the churn model")
    """
    _check_description(description)
    with ctx.engine.begin() as conn:
        _model_row(conn, name)
        conn.execute(
            registered_models.update()
            .where(registered_models.c.name == name)
            .values(description=description, last_updated_time=_now_ms())
        )
    return get_registered_model(ctx, name)


def delete_registered_model(ctx: Context, name: str) -> None:
    """Delete a registered model with its versions, tags and aliases (audited).

    Example:
        >>> # delete_registered_model(ctx, "scratch")
    """
    with ctx.engine.begin() as conn:
        _model_row(conn, name)
        lock_model(conn, name)
        _refuse_if_deployed(conn, name, None)
        for table in (
            model_aliases,
            model_version_tags,
            model_versions,
            registered_model_tags,
            registered_models,
        ):
            conn.execute(table.delete().where(table.c.name == name))
        ctx.audit(conn, action="model.delete", object_type="registered_model", object_id=name)


def rename_registered_model(ctx: Context, name: str, new_name: str) -> RegisteredModel:
    """Rename registered model ``name`` to ``new_name`` (audited): its versions, their
    numbers, tags, aliases and gate verdicts follow it, and ``name`` no longer exists.

    :class:`Conflict` when ``new_name`` is taken, or when ``name`` is deployed: its model
    servers, rollout and loop load it by name, and would find nothing under either name.
    Renaming a model to its own name changes nothing.

    Example:
        >>> import tempfile, loopline
        >>> ctx = loopline.init(uri="sqlite:///:memory:", artifacts=tempfile.mkdtemp())
        >>> _ = create_registered_model(ctx, "churn")
        >>> rename_registered_model(ctx, "churn", "churn-v2").name
        'churn-v2'
    """
    check_name(new_name, "new_name")
    with ctx.engine.begin() as conn:
        _model_row(conn, name)
        if new_name == name:
            return _hydrate_model(conn, _model_row(conn, name))
        lock_model(conn, name)
        _refuse_if_deployed(conn, name, None, doing="renamed")
        if conn.execute(
            sa.select(registered_models.c.name).where(registered_models.c.name == new_name)
        ).first():
            raise _name_taken(new_name)
        now = _now_ms()
        try:
            _move_name(conn, name, new_name, now)
        except SAIntegrityError as exc:  # registered by another writer meanwhile
            raise _name_taken(new_name) from exc
        ctx.audit(
            conn,
            action="model.rename",
            object_type="registered_model",
            object_id=new_name,
            before={"name": name},
            after={"name": new_name},
        )
        return _hydrate_model(conn, _model_row(conn, new_name))


def _name_taken(name: str, hint: str = "pick another name, or delete that model first") -> Conflict:
    return Conflict(f"registered model {name!r} already exists", hint=hint)


def _move_name(conn: Connection, name: str, new_name: str, now: int) -> None:
    """Every registry row of ``name`` under ``new_name``, inside the caller's transaction;
    the model and its versions last changed ``now`` (as MLflow's rename sets them)."""
    # Imported here: delivery imports the registry.
    from loopline.delivery.tables import gate_verdicts

    for table in (registered_models, model_versions):
        conn.execute(
            table.update().where(table.c.name == name).values(name=new_name, last_updated_time=now)
        )
    for table in (registered_model_tags, model_version_tags, model_aliases, gate_verdicts):
        conn.execute(table.update().where(table.c.name == name).values(name=new_name))


def set_registered_model_tag(ctx: Context, name: str, key: str, value: str) -> None:
    """Set a tag on a registered model.

    Example:
        >>> # set_registered_model_tag(ctx, "churn", "team", "growth")
    """
    with ctx.engine.begin() as conn:
        _model_row(conn, name)
        _put_tag(conn, registered_model_tags, {"name": name}, key, value)


def delete_registered_model_tag(ctx: Context, name: str, key: str) -> None:
    """Remove a tag from a registered model.

    Example:
        >>> # delete_registered_model_tag(ctx, "churn", "team")
    """
    with ctx.engine.begin() as conn:
        _drop_tag(conn, registered_model_tags, {"name": name}, key)


def _refuse_if_deployed(
    conn: Connection, name: str, version: int | None, doing: str = "deleted"
) -> None:
    """Conflict when the deployment of ``name`` names ``version`` (any, when None): it
    cannot be ``doing`` ("deleted", "renamed").

    Deleting a version its deployment serves broke serving (``loopline serve`` failed on
    the missing version) and took the ``champion`` alias with it, so the next gate found
    no champion and skipped every change bound: a worse challenger was blessed on value
    bounds alone. The caller holds the model's lock, which a deployment that moves
    ``champion`` or names a version anew takes too (and then checks the version exists).
    """
    # Imported here: serving imports the registry.
    from loopline.serving.tables import deployments

    row = conn.execute(sa.select(deployments).where(deployments.c.name == name)).first()
    if row is None:
        return
    roles = {
        "stable": row.stable_version,
        "candidate": row.candidate_version,
        "standby (the blue/green rollback target)": row.standby_version,
        "fallback": row.fallback_version,
    }
    if version is None:
        raise Conflict(
            f"model {name!r} is deployed (stable version {row.stable_version}), so it cannot "
            f"be {doing}",
            hint=f"its model servers load its versions; see `loopline deployments show {name}`",
        )
    for role, number in roles.items():
        if number == version:
            raise Conflict(
                f"version {version} of {name!r} is the {role} version of its deployment "
                f"(revision {row.revision}), so it cannot be deleted",
                hint=f"deploy another version first (`loopline deploy {name} VERSION`), "
                f"then delete it; see `loopline deployments show {name}`",
            )
