"""The model registry SDK, used as ``ll.registry``: register, alias, get, load, lineage.

A registered model has numbered versions; each version points at a logged model (saved by
``run.log_model``) and through it at the run that made it - and so at the run's code
version, the dataset versions it read, its params and metrics. Aliases (``champion``,
``challenger``) name versions; every move is written to the audit log with its reason.

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

import re
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from loopline.core.context import Context, get_context
from loopline.errors import IntegrityError, InvalidInput, NotFound
from loopline.training import (
    registry_aliases,
    registry_checks,
    registry_logged_models,
    registry_models,
    registry_records,
    registry_versions,
)
from loopline.training.flavors import LibraryVersionWarning
from loopline.training.registry_records import LoggedModel, RegisteredModel

if TYPE_CHECKING:
    from loopline.tracking.entities import RunInput
    from loopline.tracking.run_handle import Run
    from loopline.training.models import LoadedModel
    from loopline.training.signature import ModelSignature

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


_MODEL_ID_RE = re.compile(r"^m-[0-9a-f]{32}$")
#: Run tags that identify the code a run ran (see loopline.tracking.environment).
CODE_TAGS = {
    "git_commit": "mlflow.source.git.commit",
    "git_branch": "mlflow.source.git.branch",
    "git_dirty": "loopline.git.dirty",
    "git_diff_blake3": "loopline.git.diff_blake3",
    "source": "mlflow.source.name",
    "command": "loopline.command",
}


class ModelVersion:
    """One numbered version of a registered model, with its lineage through the run.

    ``run``, ``code_version``, ``datasets``, ``params`` and ``metrics`` are read from the
    run that logged the model, on first use.

    Example:
        >>> # v = ll.registry.get("churn", "champion"); v.version, v.datasets[0].version
    """

    def __init__(
        self, record: registry_records.ModelVersion, logged: LoggedModel | None, ctx: Context
    ) -> None:
        self._record = record
        self._logged = logged
        self._ctx = ctx

    @property
    def name(self) -> str:
        """The registered model's name."""
        return self._record.name

    @property
    def version(self) -> int:
        """The version number (1, 2, ...)."""
        return self._record.version

    @property
    def aliases(self) -> list[str]:
        """The aliases pointing at this version."""
        return list(self._record.aliases)

    @property
    def tags(self) -> dict[str, str]:
        """The version's tags."""
        return dict(self._record.tags)

    @property
    def description(self) -> str | None:
        """The version's description."""
        return self._record.description

    @property
    def status(self) -> str:
        """READY once registered."""
        return self._record.status

    @property
    def creation_time(self) -> int:
        """When the version was registered, milliseconds since the epoch."""
        return self._record.creation_time

    @property
    def source(self) -> str | None:
        """Where the model came from, e.g. ``models:/m-...``."""
        return self._record.source

    @property
    def model_id(self) -> str | None:
        """The logged model's id (None for a version registered from a bare source)."""
        return self._record.model_id

    @property
    def run_id(self) -> str | None:
        """The id of the run that logged the model (from the version, else its logged model)."""
        if self._record.run_id:
            return self._record.run_id
        return self._logged.source_run_id if self._logged else None

    @property
    def logged_model(self) -> LoggedModel | None:
        """The logged model this version points at."""
        return self._logged

    @property
    def flavor(self) -> str | None:
        """``sklearn``, ``xgboost``, ``lightgbm``; None for a model logged by MLflow."""
        return self._logged.flavor if self._logged and self._logged.manifest_digest else None

    @property
    def signature(self) -> ModelSignature | None:
        """The model's input/output signature, when it was logged with one."""
        if self._logged is None or not self._logged.signature:
            return None
        from loopline.training.signature import ModelSignature

        return ModelSignature.from_json(self._logged.signature)

    @property
    def uri(self) -> str:
        """``models:/NAME/VERSION``, what :func:`load` takes."""
        return f"models:/{self.name}/{self.version}"

    @cached_property
    def run(self) -> Run | None:
        """The run that logged the model (None when unknown or deleted)."""
        if not self.run_id:
            return None
        from loopline.tracking.api import get_run

        try:
            return get_run(self.run_id)
        except NotFound:
            return None

    @property
    def code_version(self) -> dict[str, str | None]:
        """The run's git commit, branch, dirty flag and diff hash, source and command."""
        tags = self.run.tags if self.run else {}
        return {key: tags.get(tag) for key, tag in CODE_TAGS.items()}

    @property
    def datasets(self) -> list[RunInput]:
        """The dataset versions the run read (``ll.datasets.get`` inside the run)."""
        return self.run.inputs if self.run else []

    @property
    def params(self) -> dict[str, str]:
        """The run's params."""
        return self.run.params if self.run else {}

    @property
    def metrics(self) -> dict[str, float]:
        """The run's metrics (latest values)."""
        return self.run.metrics if self.run else {}

    def to_dict(self, *, with_lineage: bool = True) -> dict[str, Any]:
        """Plain JSON-ready data; with the run's lineage unless ``with_lineage=False``.

        Example:
            >>> # ll.registry.get("churn", 3).to_dict()["datasets"]
        """
        sig = self.signature
        out: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "uri": self.uri,
            "aliases": self.aliases,
            "status": self.status,
            "description": self.description,
            "creation_time": self.creation_time,
            "source": self.source,
            "model_id": self.model_id,
            "run_id": self.run_id,
            "flavor": self.flavor,
            "model_type": self._logged.model_type if self._logged else None,
            "signature": None if sig is None else sig.to_dict(),
            "tags": self.tags,
        }
        if with_lineage:
            out["code_version"] = self.code_version
            out["datasets"] = [vars(i) for i in self.datasets]
            out["params"] = self.params
            out["metrics"] = self.metrics
        return out

    def __repr__(self) -> str:
        return f"<ModelVersion {self.name}/{self.version} aliases={self.aliases}>"


def _wrap(ctx: Context, record: registry_records.ModelVersion) -> ModelVersion:
    logged = None
    if record.model_id:
        try:
            logged = registry_logged_models.get_logged_model(ctx, record.model_id)
        except NotFound:
            logged = None
    return ModelVersion(record, logged, ctx)


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


def _dataset_entry(item: RunInput) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "kind": item.kind,
        "name": item.name,
        "version": item.version,
        "digest": item.digest,
        "context": item.context,
        "found": False,
    }
    if item.kind != "dataset":
        return entry
    from loopline.data import catalog
    from loopline.data.dataset_refs import check_name, parse_version

    # Only the version the run read, with its own file list: reading every version of the
    # dataset (ll.datasets.versions) read the file lists of all of them.
    try:
        check_name(item.name)
        number = parse_version(item.version)
    except InvalidInput:
        return entry
    if number is None:  # "latest" is no version a run read
        return entry
    engine = get_context().engine
    row = catalog.find_version(engine, item.name, number)
    if row is None:
        return entry
    files = catalog.files_of(engine, [row.id])[row.id]
    entry.update(
        {
            "found": True,
            "digest_matches": row.hash == item.digest,
            "ref": f"{row.name}@{row.version}",
            "data_kind": row.kind,
            "row_count": row.row_count,
            "byte_size": row.byte_size,
            "file_count": len(files),
            "files": [{"path": f.path, "digest": f.digest, "size": f.size} for f in files[:100]],
        }
    )
    return entry


def lineage(name: str, version: int | str) -> dict[str, Any]:
    """Where a model version came from, and where it went.

    ``datasets`` (the dataset versions and files the run read) -> ``run`` (code version,
    params, metrics) -> ``model_version`` (with its logged model) -> ``deployments`` (the
    deployment events in which this version served or was rolled out, oldest first).

    Example:
        >>> # ll.registry.lineage("churn", 3)["datasets"][0]["ref"]  -> 'churn-data@2'
    """
    # Imported here: serving imports the registry, and lineage is off every hot path.
    from loopline.serving.deploy import deployments_of_version

    mv = get(name, version)
    run = mv.run
    logged = mv.logged_model
    run_info: dict[str, Any] | None = None
    if run is not None:
        data = run.to_dict()
        run_info = {
            key: data[key]
            for key in (
                "id",
                "name",
                "experiment",
                "experiment_id",
                "status",
                "user",
                "start_time",
                "end_time",
                "params",
                "metrics",
            )
        }
        run_info["code_version"] = mv.code_version
    return {
        "datasets": [_dataset_entry(i) for i in mv.datasets],
        "run": run_info,
        "run_id": mv.run_id,
        "model_version": mv.to_dict(with_lineage=False),
        "logged_model": None
        if logged is None
        else {
            "model_id": logged.model_id,
            "name": logged.name,
            "flavor": logged.flavor,
            "model_type": logged.model_type,
            "status": logged.status,
            "artifact_location": logged.artifact_location,
            "manifest_digest": logged.manifest_digest,
        },
        "deployments": [e.to_dict() for e in deployments_of_version(mv.name, mv.version)],
    }
