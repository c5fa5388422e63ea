"""The model registry SDK, used as ``ll.registry``: register, alias, get, load, lineage.

A registered model has numbered versions; each version points at a logged model (saved by
``run.log_model``) and through it at the run that made it - and so at the run's code
version, the dataset versions it read, its params and metrics. Aliases (``champion``,
``challenger``) name versions; every move is written to the audit log with its reason.

This module changes the registry (register, rename, aliases) and hands on, as
``ll.registry``, what :mod:`~loopline.training.registry_reads` (get, load, verify...),
:mod:`~loopline.training.registry_lineage` and
:mod:`~loopline.training.registry_model_version` hold.

Example:
    >>> import loopline as ll  # doctest: +SKIP
    >>> with ll.start_run(experiment="churn") as run:  # doctest: +SKIP
    ...     df = ll.datasets.get("churn").to_pandas()
    ...     clf = LogisticRegression().fit(df[features], df["churned"])
    ...     run.log_model(clf, "model", input_example=df[features].head(5))
    >>> v = ll.registry.register(run, "churn")  # doctest: +SKIP
    >>> ll.registry.set_alias("churn", "champion", v.version, reason="best AUC")  # doctest: +SKIP
    >>> ll.registry.load("models:/churn@champion").predict([{"age": 31}])  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loopline.core.context import Context, get_context
from loopline.errors import InvalidInput, NotFound
from loopline.training import (
    registry_aliases,
    registry_checks,
    registry_logged_models,
    registry_models,
    registry_versions,
)
from loopline.training.flavors import LibraryVersionWarning
from loopline.training.registry_lineage import lineage
from loopline.training.registry_model_version import ModelVersion, _wrap
from loopline.training.registry_reads import (
    _MODEL_ID_RE,
    check_intact,
    get,
    get_model,
    list_models,
    load,
    parse_uri,
    verify,
    versions,
)
from loopline.training.registry_records import LoggedModel, RegisteredModel

if TYPE_CHECKING:
    from loopline.training.models import LoadedModel

__all__ = [
    "LibraryVersionWarning",
    "LoadedModel",
    "LoggedModel",
    "ModelVersion",
    "RegisteredModel",
    "check_intact",
    "delete_alias",
    "get",
    "get_model",
    "lineage",
    "list_models",
    "load",
    "parse_uri",
    "register",
    "rename",
    "set_alias",
    "verify",
    "versions",
]


def __getattr__(name: str) -> Any:
    """``LoadedModel``, imported on first use: with it come numpy and the model code, which
    listing models (``loopline models ls``) does not need."""
    if name == "LoadedModel":
        from loopline.training.models import LoadedModel

        return LoadedModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _single_logged_model(ctx: Context, run_id: str) -> LoggedModel:
    models = registry_logged_models.search_logged_models(ctx, source_run_id=run_id)
    ready = [m for m in models if m.status == "READY"]
    if len(ready) == 1:
        return ready[0]
    if not ready:
        cached = _cached_from_runs(ctx, run_id)
        raise InvalidInput(
            f"run {run_id} has no logged model to register"
            + (
                f": it is a pipeline run whose steps came from the cache, and the model was "
                f"logged when they ran, by pipeline run {', '.join(cached)}"
                if cached
                else ""
            ),
            field="logged_model_or_run",
            hint=f"register that run (ll.registry.register({cached[0]!r}, name)), or run the "
            "pipeline with cache=False to log a model on a run of its own"
            if cached
            else "log one first with run.log_model(model, 'model', input_example=...)",
        )
    ready.sort(key=lambda m: (m.creation_time, m.name))
    listed = ", ".join(f"{m.name} ({m.model_id})" for m in ready)
    raise InvalidInput(
        f"run {run_id} logged {len(ready)} models: {listed}",
        field="logged_model_or_run",
        hint="pass the one to register: ll.registry.register(run.log_model(...), name)",
    )


def _cached_from_runs(ctx: Context, run_id: str) -> list[str]:
    """The earlier pipeline runs whose step outputs ``run_id`` (a pipeline run) reused and
    that logged a model: a step logs on the pipeline's run, so a run served from the cache
    has none of its own, and "log one first" sent the user the wrong way."""
    from loopline.tracking.api import get_run
    from loopline.training import pipeline_store

    try:
        record = pipeline_store.get(ctx.engine, run_id)
    except NotFound:
        return []
    found: list[str] = []
    for step_ in record.steps.values():
        if step_.status != "cached" or not step_.cached_from:
            continue
        try:
            parent = get_run(step_.cached_from).parent_run_id
        except NotFound:
            continue
        if (
            parent
            and parent not in found
            and registry_logged_models.search_logged_models(ctx, source_run_id=parent)
        ):
            found.append(parent)
    return found


def _resolve_source(ctx: Context, obj: Any) -> LoggedModel:
    if isinstance(obj, LoggedModel):
        return registry_logged_models.get_logged_model(ctx, obj.model_id)
    if isinstance(obj, str):
        if _MODEL_ID_RE.fullmatch(obj):
            return registry_logged_models.get_logged_model(ctx, obj)
        return _single_logged_model(ctx, obj)
    from loopline.tracking.run_handle import Run

    if isinstance(obj, Run):
        return _single_logged_model(ctx, obj.id)
    raise InvalidInput(
        f"register takes a run, a LoggedModel, a run id or a logged model id, "
        f"got {type(obj).__name__}",
        field="logged_model_or_run",
        hint="e.g. ll.registry.register(run, 'churn')",
    )


def register(logged_model_or_run: Any, name: str, description: str | None = None) -> ModelVersion:
    """Register a logged model as the next version of ``name`` (created if missing).

    Takes a run that logged exactly one model, a :class:`LoggedModel` (what
    ``run.log_model`` returns), a run id or a logged model id. The new version points at the
    logged model and its run (lineage); the registration is audited.

    Example:
        >>> # v = ll.registry.register(run, "churn"); v.version  -> 1
    """
    ctx = get_context()
    logged = _resolve_source(ctx, logged_model_or_run)
    if logged.status != "READY":
        raise InvalidInput(
            f"logged model {logged.model_id} is {logged.status}, not READY",
            field="logged_model_or_run",
            hint="register a model whose logging finished",
        )
    record = registry_versions.create_model_version(
        ctx,
        name,
        source=f"models:/{logged.model_id}",
        run_id=logged.source_run_id,
        model_id=logged.model_id,
        description=description,
    )
    return ModelVersion(record, logged, ctx)


def rename(name: str, new_name: str) -> RegisteredModel:
    """Rename registered model ``name`` to ``new_name`` (audited); its versions, tags,
    aliases and gate verdicts follow it, and ``models:/NEW_NAME@champion`` loads what
    ``models:/NAME@champion`` did. :class:`~loopline.errors.Conflict` when the new name is
    taken or the model is deployed (its servers load it by name).

    Example:
        >>> # ll.registry.rename("churn", "churn-classifier").name  -> 'churn-classifier'
    """
    return registry_models.rename_registered_model(get_context(), name, new_name)


def set_alias(name: str, alias: str, version: int | str, reason: str | None = None) -> ModelVersion:
    """Point ``alias`` at ``version`` of ``name``; the move is audited with ``reason``.

    The version's files are verified first (:func:`check_intact`): a server pinned to the
    alias would load nothing once it pointed at corrupted bytes.

    Example:
        >>> # ll.registry.set_alias("churn", "champion", 3, reason="AUC 0.91 > 0.89")
    """
    ctx = get_context()
    number = registry_checks.require_version_number(version)
    check_intact(ctx, name, number, doing=f"point alias {alias!r} at")
    registry_aliases.set_alias(ctx, name, alias, number, reason=reason)
    return _wrap(ctx, registry_versions.get_model_version(ctx, name, number))


def delete_alias(name: str, alias: str, reason: str | None = None) -> None:
    """Remove ``alias`` from ``name`` (audited); NotFound when it is not set.

    Example:
        >>> # ll.registry.delete_alias("churn", "challenger", reason="rolled back")
    """
    ctx = get_context()
    registry_models.get_registered_model(ctx, name)
    try:
        registry_aliases.delete_alias(ctx, name, alias, reason=reason)
    except NotFound as exc:
        raise NotFound(
            exc.message, hint=f"list its aliases with `loopline models show {name}`"
        ) from exc
