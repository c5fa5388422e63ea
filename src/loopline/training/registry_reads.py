"""Reading the registry back: versions by number, alias or URI, loaded and verified.

:func:`get`, :func:`versions`, :func:`list_models` and :func:`get_model` read versions
and models; :func:`parse_uri` splits ``models:/NAME/VERSION`` and ``models:/NAME@ALIAS``;
:func:`load` loads a version with every file checked against its manifest digest,
:func:`verify` and :func:`check_intact` check the files without loading. They are
separate from :mod:`loopline.training.registry`, which changes the registry (register,
rename, aliases) and hands these on as ``ll.registry``, because they change nothing.

Example:
    >>> parse_uri("models:/churn/latest")
    ('churn', 'latest')
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from loopline.core.context import Context, get_context
from loopline.errors import IntegrityError, InvalidInput, NotFound
from loopline.training import (
    registry_aliases,
    registry_checks,
    registry_logged_models,
    registry_models,
    registry_versions,
)
from loopline.training.registry_model_version import ModelVersion, _wrap
from loopline.training.registry_records import LoggedModel, RegisteredModel

if TYPE_CHECKING:
    from loopline.training.models import LoadedModel

_MODEL_ID_RE = re.compile(r"^m-[0-9a-f]{32}$")


def get(name: str, version_or_alias: int | str = "latest") -> ModelVersion:
    """A version of ``name`` by number, by alias, or ``"latest"`` (the newest).

    NotFound names what is missing and says how to list what exists.

    Example:
        >>> # ll.registry.get("churn", "champion").version
    """
    ctx = get_context()
    number = registry_checks.version_number(version_or_alias)
    if number is not None:
        return _wrap(ctx, registry_versions.get_model_version(ctx, name, number))
    if version_or_alias == "latest":
        latest = registry_models.get_registered_model(ctx, name).latest_version
        if latest is None:
            raise NotFound(
                f"model {name!r} has no versions yet",
                hint="register one with ll.registry.register(run, name)",
            )
        return _wrap(ctx, registry_versions.get_model_version(ctx, name, latest))
    alias = str(version_or_alias)
    try:
        return _wrap(ctx, registry_aliases.get_version_by_alias(ctx, name, alias))
    except NotFound as exc:
        raise NotFound(
            exc.message, hint=f"list its aliases and versions with `loopline models show {name}`"
        ) from exc


def versions(name: str) -> list[ModelVersion]:
    """Every version of ``name``, newest first.

    Example:
        >>> # [v.version for v in ll.registry.versions("churn")]  -> [3, 2, 1]
    """
    ctx = get_context()
    registry_models.get_registered_model(ctx, name)  # NotFound with a hint for an unknown name
    return [_wrap(ctx, r) for r in registry_versions.search_model_versions(ctx, name=name)]


def list_models(name_like: str | None = None) -> list[RegisteredModel]:
    """Registered models by name, optionally matching a SQL LIKE pattern (``churn%``).

    Example:
        >>> # [(m.name, m.latest_version, m.aliases) for m in ll.registry.list_models()]
    """
    return registry_models.search_registered_models(get_context(), name_like=name_like)


def get_model(name: str) -> RegisteredModel:
    """The registered model ``name``: description, tags, aliases, latest version.

    Example:
        >>> # ll.registry.get_model("churn").aliases  -> {"champion": 3}
    """
    return registry_models.get_registered_model(get_context(), name)


def check_intact(ctx: Context, name: str, version: int, doing: str) -> None:
    """Refuse to ``doing`` ("point alias 'champion' at") ``version`` of ``name`` when its
    stored files are corrupted or missing: an IntegrityError naming the version and file.

    A model server started with ``--model models:/NAME@ALIAS`` serves whatever version the
    alias points at, so an alias moved onto a version with rotten bytes is a server that
    loads nothing at its next start. Each file is read and hashed once (as :func:`verify`).
    A version Loopline cannot load for another reason (logged by the MLflow client, of a
    flavor not installed here) is not refused: its aliases may serve other tools.

    Example:
        >>> # check_intact(ctx, "churn", 3, doing="point alias 'champion' at")
    """
    from loopline.training.models import verify_logged_model

    mv = _wrap(ctx, registry_versions.get_model_version(ctx, name, version))
    if mv.logged_model is None:
        return
    try:
        verify_logged_model(ctx, mv.logged_model, ref=mv.uri)
    except IntegrityError as exc:
        raise IntegrityError(
            f"cannot {doing} version {version} of {name!r}: the model servers could not load "
            f"it: {exc.message}",
            hint=exc.hint,
        ) from exc
    except InvalidInput:
        return  # not Loopline's to load (see above); its bytes are not this check's business


def parse_uri(uri: str) -> tuple[str, int | str]:
    """Split ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS`` into name and reference.

    Example:
        >>> parse_uri("models:/churn@champion"), parse_uri("models:/churn/3")
        (('churn', 'champion'), ('churn', 3))
    """
    if not isinstance(uri, str) or not uri.startswith("models:/"):
        raise InvalidInput(
            f"{uri!r} is not a model URI",
            field="uri",
            hint="use models:/NAME/VERSION, models:/NAME@ALIAS or models:/NAME/latest",
        )
    rest = uri.removeprefix("models:/").strip("/")
    if "@" in rest:
        name, _, alias = rest.partition("@")
        if name and alias:
            return name, alias
    elif "/" in rest:
        name, _, ref = rest.rpartition("/")
        number = registry_checks.version_number(ref)
        if name and (number is not None or ref == "latest"):
            return name, number if number is not None else "latest"
    raise InvalidInput(
        f"{uri!r} is not a model URI",
        field="uri",
        hint="use models:/NAME/VERSION, models:/NAME@ALIAS or models:/NAME/latest",
    )


def load(uri: str, trusted_types: Sequence[str] = ()) -> LoadedModel:
    """Load a registered model, verified, ready to ``predict``.

    ``uri``: ``models:/NAME/VERSION``, ``models:/NAME@ALIAS``, ``models:/NAME/latest`` or
    ``models:/<logged model id>``. Every file is checked against the manifest digest the
    registry recorded (IntegrityError naming the file on mismatch); a library version other
    than the recorded one raises :class:`LibraryVersionWarning`. ``trusted_types`` adds
    fully qualified type names to the scikit-learn allow-list - only for types you trust.

    Example:
        >>> # model = ll.registry.load("models:/churn@champion"); model.predict(X)
    """
    from loopline.training.models import load_logged_model

    ctx = get_context()
    rest = uri.removeprefix("models:/") if isinstance(uri, str) else ""
    if _MODEL_ID_RE.fullmatch(rest):
        return load_logged_model(
            ctx,
            registry_logged_models.get_logged_model(ctx, rest),
            ref=uri,
            trusted_types=trusted_types,
        )
    name, ref = parse_uri(uri)
    mv = get(name, ref)
    return load_logged_model(
        ctx,
        _logged_model(mv, uri),
        ref=mv.uri,
        name=mv.name,
        version=mv.version,
        trusted_types=trusted_types,
    )


def _logged_model(mv: ModelVersion, uri: str) -> LoggedModel:
    """The Loopline model behind ``mv``; InvalidInput when the MLflow client logged it."""
    if mv.logged_model is None:
        raise InvalidInput(
            f"{uri} (version {mv.version}) was registered from {mv.source!r}, not from a "
            "model logged with a Loopline manifest; it was logged by the MLflow client",
            field="uri",
            hint=f"load it with mlflow.pyfunc.load_model({mv.uri!r}) with MLFLOW_TRACKING_URI "
            "pointing at the Loopline server",
        )
    return mv.logged_model


def verify(name: str, version_or_alias: int | str = "latest") -> ModelVersion:
    """Check that a version's files are all stored and intact, without loading it.

    What :func:`load` checks before it deserializes anything - every file hashed against
    the digest the registry recorded - at the cost of reading the files once: an
    :class:`~loopline.errors.IntegrityError` names a corrupted or missing file, an
    :class:`~loopline.errors.InvalidInput` a version the MLflow client logged (Loopline
    cannot load it). ``ll.deploy`` runs it before a version may serve.

    Example:
        >>> # ll.registry.verify("churn", 3).version  -> 3, or IntegrityError naming the file
    """
    from loopline.training.models import verify_logged_model

    mv = get(name, version_or_alias)
    verify_logged_model(get_context(), _logged_model(mv, mv.uri), ref=mv.uri)
    return mv
