"""SQL for the model registry: logged models, registered models, versions, tags, aliases.

Rows never leave this module: every function returns plain dataclasses. Alias moves are
written to the audit log in the same transaction. Both the Python SDK and the
MLflow-compatible REST API are built on these functions, so both refuse what they refuse:

* a tag key is checked as a run's (:func:`~loopline.tracking.validation.check_key`: 1-250
  characters, no control character, no absolute path or ``..`` segment) and its value too
  (at most 8,000 characters, no NUL);
* a version's source is an artifact URI of this server (:func:`check_model_source`):
  ``runs:/RUN_ID/PATH``, ``models:/...`` or ``mlflow-artifacts:/PATH``, at most 500
  characters, with no ``..`` segment in any reading; a local path or a ``file://`` URI
  names a file on some machine, not an artifact this server holds.

Example:
    >>> import tempfile, loopline
    >>> ctx = loopline.init(uri="sqlite:///:memory:", artifacts=tempfile.mkdtemp())
    >>> _ = create_registered_model(ctx, "churn")
    >>> create_model_version(ctx, "churn", source="models:/m-1", run_id=None).version
    1
"""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from loopline.core.artifact_paths import unsafe_reason
from loopline.core.columns import MAX_INTEGER, integer_value
from loopline.core.context import Context
from loopline.core.db import reading
from loopline.core.text import check_no_nul
from loopline.errors import Conflict, InvalidInput, NotFound
from loopline.tracking._dialect import like_pattern_too_long
from loopline.tracking.store import check_params
from loopline.tracking.validation import check_key, check_tag_value
from loopline.training.logged_model_data import ModelMetric, metrics_of
from loopline.training.registry_tables import (
    logged_model_params,
    logged_model_tags,
    logged_models,
    model_aliases,
    model_version_tags,
    model_versions,
    registered_model_tags,
    registered_models,
)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\- ]{0,255}$")
ALIAS_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,255}$")
#: Longest model version source (MLflow's column: 500).
MAX_SOURCE_LENGTH = 500
#: The URIs a version's source may be: what the SDK (``models:/<model id>``) and the MLflow
#: client (``runs:/``, ``models:/``, the run's ``mlflow-artifacts:/`` location) register.
SOURCE_SCHEMES = ("runs:/", "models:/", "mlflow-artifacts:/")


def _now_ms() -> int:
    return int(time.time() * 1000)


def _drop_tag(conn: Connection, table: sa.Table, owner: dict[str, Any], key: str) -> None:
    """Delete tag ``key`` of the object whose key columns are ``owner``."""
    cond = sa.and_(*(table.c[col] == val for col, val in owner.items()), table.c.key == key)
    conn.execute(table.delete().where(cond))


def check_tag(key: Any, value: Any) -> str | None:
    """A registry tag's value as stored, if ``key`` and ``value`` pass a run tag's checks
    (:func:`~loopline.tracking.validation.check_key`, ``check_tag_value``); else
    :class:`InvalidInput` naming the tag.

    Example:
        >>> check_tag("team", "growth")
        'growth'
    """
    check_key(key, "tag")
    return check_tag_value(key, value)


def _checked_tags(tags: dict[str, str] | None) -> dict[str, str | None]:
    return {key: check_tag(key, value) for key, value in (tags or {}).items()}


def _put_tag(
    conn: Connection, table: sa.Table, owner: dict[str, Any], key: str, value: str | None
) -> None:
    """Set (or overwrite) tag ``key`` of the object whose key columns are ``owner``."""
    value = check_tag(key, value)
    _drop_tag(conn, table, owner, key)
    conn.execute(table.insert().values(**owner, key=key, value=value))


def check_model_source(source: Any) -> str:
    """``source`` if it may be a model version's source: an artifact URI of this server
    (:data:`SOURCE_SCHEMES`) naming a path with no ``..`` segment, absolute part, control
    character or NUL in any reading (percent-decoded, NFKC), at most
    :data:`MAX_SOURCE_LENGTH` characters; else :class:`InvalidInput` naming ``source``.

    The download URI of a version is its source: ``file:///etc/passwd`` or
    ``mlflow-artifacts:/../../etc`` would point the MLflow client at a file outside every
    run (MLflow's server refuses both), and a source naming nothing breaks
    ``models:/NAME/latest`` only when it is loaded.

    Example:
        >>> check_model_source("runs:/0a1b2c/model")
        'runs:/0a1b2c/model'
        >>> try:
        ...     check_model_source("file:///etc/passwd")
        ... except InvalidInput as exc:
        ...     print(exc.field)
        source
    """
    reason: str | None
    if not isinstance(source, str) or not source:
        reason = "must be a non-empty string"
    elif len(source) > MAX_SOURCE_LENGTH:
        reason = f"is {len(source)} characters, over the limit of {MAX_SOURCE_LENGTH}"
    else:
        scheme = next((s for s in SOURCE_SCHEMES if source.startswith(s)), None)
        path = source[len(scheme) :] if scheme else ""
        if scheme is None:
            reason = "is not an artifact URI of this server (a local path or file:// URI is not)"
        elif not path.strip("/"):
            reason = "names no model"
        else:
            # An absolute path here is an authority ('mlflow-artifacts://host/...'): another
            # server's artifact, not this one's.
            reason = unsafe_reason(path)
    if reason is None:
        return str(source)
    shown = repr(source) if len(repr(source)) <= 80 else repr(source)[:77] + "..."
    raise InvalidInput(
        f"model version source {shown} {reason}",
        field="source",
        hint="register from runs:/RUN_ID/PATH, models:/MODEL_ID or the run's "
        "mlflow-artifacts:/EXPERIMENT/RUN_ID/artifacts/PATH",
    )


def check_name(name: str, field_name: str = "name") -> str:
    """Return a valid registry name or raise :class:`InvalidInput` naming the field.

    Example:
        >>> check_name("churn-model")
        'churn-model'
    """
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or ".." in name:
        raise InvalidInput(
            f"{field_name} {name!r} is not a valid model name",
            field=field_name,
            hint="use letters, digits, '.', '_', '-' or spaces, starting with a letter or digit",
        )
    return name


def check_alias(alias: str) -> str:
    """Return a valid alias or raise :class:`InvalidInput`.

    Aliases that look like version numbers (``v3``, ``3``) and ``latest`` (any case) are
    refused, as MLflow does: ``models:/NAME/latest`` must keep naming the newest version.

    Example:
        >>> check_alias("champion")
        'champion'
    """
    if (
        not isinstance(alias, str)
        or not ALIAS_RE.fullmatch(alias)
        or re.fullmatch(r"[vV]?\d+", alias)
    ):
        raise InvalidInput(
            f"alias {alias!r} is not valid",
            field="alias",
            hint="an alias starts with a letter or '_' and is not a version number like 'v3'",
        )
    if alias.lower() == "latest":
        raise InvalidInput(
            f"alias {alias!r} is reserved: models:/NAME/latest names the newest version",
            field="alias",
            hint="pick another name, such as 'champion'",
        )
    return alias


@dataclass
class RegisteredModel:
    """A named model with numbered versions."""

    name: str
    description: str | None
    creation_time: int
    last_updated_time: int
    tags: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, int] = field(default_factory=dict)
    latest_version: int | None = None


@dataclass
class ModelVersion:
    """One numbered version of a registered model."""

    name: str
    version: int
    source: str | None
    run_id: str | None
    model_id: str | None
    status: str
    description: str | None
    creation_time: int
    last_updated_time: int
    tags: dict[str, str] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)


@dataclass
class LoggedModel:
    """A model logged by a run (MLflow 3's LoggedModel)."""

    model_id: str
    experiment_id: str | None
    name: str
    source_run_id: str | None
    status: str
    model_type: str | None
    artifact_location: str
    flavor: str | None
    manifest_digest: str | None
    signature: str | None
    creation_time: int
    last_updated_time: int
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    #: The metric points runs linked to the model (:mod:`.logged_model_data`).
    metrics: list[ModelMetric] = field(default_factory=list)


# ---------------------------------------------------------------- registered models


def _check_description(description: str | None) -> None:
    if description is not None:
        check_no_nul(description, "description")


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


#: Names (or version rows) per query when a page of models or versions is hydrated.
_HYDRATE_CHUNK = 500


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


# ---------------------------------------------------------------- model versions


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


def version_number(ref: object) -> int | None:
    """``ref`` as a model version number (see :func:`~loopline.core.columns.integer_value`),
    else None.

    Example:
        >>> version_number("3"), version_number(3), version_number("champion")
        (3, 3, None)
    """
    return integer_value(ref)


def require_version_number(ref: object, field: str = "version") -> int:
    """:func:`version_number`, or :class:`InvalidInput` naming ``field``.

    Example:
        >>> require_version_number("12")
        12
    """
    number = version_number(ref)
    if number is None:
        raise InvalidInput(
            f"{field} {ref!r} is not a version number",
            field=field,
            hint=f"give the model version as a whole number up to {MAX_INTEGER}, such as 3",
        )
    return number


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


# ---------------------------------------------------------------- aliases


def set_alias(ctx: Context, name: str, alias: str, version: int, reason: str | None = None) -> None:
    """Point ``alias`` of model ``name`` at ``version``; the move is audited with its reason.

    Example:
        >>> # set_alias(ctx, "churn", "champion", 3, reason="passed the gate")
    """
    check_alias(alias)
    with ctx.engine.begin() as conn:
        _model_row(conn, name)
        lock_model(conn, name)  # so that the version cannot be deleted meanwhile
        _version_row(conn, name, int(version))
        move_alias(ctx, conn, name, alias, int(version), reason=reason, unchanged_too=True)


def move_alias(
    ctx: Context,
    conn: Connection,
    name: str,
    alias: str,
    version: int,
    reason: str | None = None,
    actor: str | None = None,
    unchanged_too: bool = False,
) -> bool:
    """Point ``alias`` at ``version`` inside the caller's transaction; False if it was there.

    The caller has checked the version exists. Unless ``unchanged_too`` (a person setting
    an alias explicitly, whose reason is worth keeping), a move to where the alias already
    points writes nothing, so automatic re-assertions leave no noise in the audit log.

    Example:
        >>> # with ctx.engine.begin() as conn: move_alias(ctx, conn, "churn", "champion", 3)
    """
    lock_model(conn, name)  # a no-op when the caller holds it already
    where = (model_aliases.c.name == name) & (model_aliases.c.alias == alias)
    before = conn.execute(sa.select(model_aliases.c.version).where(where)).scalar()
    if before == version and not unchanged_too:
        return False
    conn.execute(model_aliases.delete().where(where))
    conn.execute(model_aliases.insert().values(name=name, alias=alias, version=version))
    event: dict[str, Any] = {} if actor is None else {"actor": actor}
    ctx.audit(
        conn,
        action="alias.set",
        object_type="registered_model",
        object_id=name,
        before={alias: before},
        after={alias: version},
        reason=reason,
        **event,
    )
    return True


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


def delete_alias(ctx: Context, name: str, alias: str, reason: str | None = None) -> None:
    """Remove an alias (audited); :class:`NotFound` when it is not set.

    Example:
        >>> # delete_alias(ctx, "churn", "challenger")
    """
    with ctx.engine.begin() as conn:
        lock_model(conn, name)  # a concurrent delete waits and then finds nothing
        before = conn.execute(
            sa.select(model_aliases.c.version).where(
                (model_aliases.c.name == name) & (model_aliases.c.alias == alias)
            )
        ).scalar()
        if before is None:
            raise NotFound(f"model {name!r} has no alias {alias!r}")
        conn.execute(
            model_aliases.delete().where(
                (model_aliases.c.name == name) & (model_aliases.c.alias == alias)
            )
        )
        ctx.audit(
            conn,
            action="alias.delete",
            object_type="registered_model",
            object_id=name,
            before={alias: before},
            after=None,
            reason=reason,
        )


def get_version_by_alias(ctx: Context, name: str, alias: str) -> ModelVersion:
    """The version that ``alias`` points at; :class:`NotFound` naming both.

    Example:
        >>> # get_version_by_alias(ctx, "churn", "champion").version
    """
    with reading(ctx.engine) as conn:
        version = conn.execute(
            sa.select(model_aliases.c.version).where(
                (model_aliases.c.name == name) & (model_aliases.c.alias == alias)
            )
        ).scalar()
        if version is None:
            _model_row(conn, name)
            raise NotFound(
                f"model {name!r} has no alias {alias!r}",
                hint=f"see its aliases with `loopline models show {name}`",
            )
        return _hydrate_version(conn, _version_row(conn, name, int(version)))


# ---------------------------------------------------------------- logged models


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
    (:func:`loopline.tracking.store.check_params`: a key given twice with two values is
    :class:`Conflict`), like those logged later
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
