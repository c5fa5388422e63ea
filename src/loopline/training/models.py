"""Saving, logging and loading models: a folder of files plus ``loopline-model.json``.

:func:`save_model` writes a model folder with the flavor's files (never a pickle) and the
manifest (see :mod:`~loopline.training.model_manifest`). Before it returns it loads the
files back and predicts on the input example, so a model that cannot be reloaded is never
saved, and the output type goes into the signature.

:func:`log_model` (``run.log_model``) stores every file content-addressed and names it
``{experiment_id}/models/{model_id}/artifacts/<file>`` - the layout the MLflow artifact
proxy serves - then records a READY logged model with the manifest's digest, linked to the
run.

:func:`load_logged_model` reads the manifest by the digest the registry recorded, then each
file by the digest the manifest recorded; every byte is hashed before any is deserialized,
and a mismatch is an :class:`~loopline.errors.IntegrityError` naming the file. A library
version other than the recorded one raises a :class:`LibraryVersionWarning`.

Example:
    >>> import tempfile
    >>> from sklearn.linear_model import LinearRegression
    >>> model = LinearRegression().fit([[0.0], [1.0]], [0.0, 2.0])
    >>> folder = save_model(model, tempfile.mkdtemp() + "/m", input_example=[{"x": 0.5}])
    >>> load_folder(folder).predict([{"x": 2.0}]).round(6).tolist()
    [4.0]
"""

from __future__ import annotations

import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from loopline.core import artifact_paths
from loopline.core.artifacts import hash_bytes, hash_file
from loopline.core.context import Context
from loopline.errors import IntegrityError, InvalidInput, LooplineError, NotFound
from loopline.training import registry_checks, registry_logged_models, registry_records
from loopline.training.flavors import (
    Flavor,
    LibraryVersionWarning,
    Predictor,
    flavor_for,
    get_flavor,
)
from loopline.training.flavors.base import ModelTask, installed_version
from loopline.training.model_manifest import (
    MANIFEST_FILE,
    Manifest,
    ManifestFile,
    example_rows,
)
from loopline.training.signature import ModelSignature, infer_output, infer_signature

if TYPE_CHECKING:
    from loopline.tracking.run_handle import Run

__all__ = [
    "MANIFEST_FILE",
    "LibraryVersionWarning",
    "LoadedModel",
    "artifact_prefix",
    "load_folder",
    "load_logged_model",
    "log_model",
    "save_model",
]

ARTIFACT_SCHEME = "mlflow-artifacts:/"


class LoadedModel:
    """A model loaded from the registry (or a folder), ready to predict.

    ``predict(X)`` takes a DataFrame, a numpy array or a list of row dicts, validates it
    against the signature, and returns a numpy array. ``predict_proba(X)`` exists only when
    the model gives class probabilities (``hasattr(model, "predict_proba")``). ``native``
    is the library's own object.

    Example:
        >>> # model = ll.registry.load("models:/churn@champion")
        >>> # model.predict([{"age": 31, "plan": "pro"}]), model.version, model.flavor
    """

    def __init__(
        self,
        native: Any,
        manifest: Manifest,
        predictor: Predictor,
        *,
        uri: str,
        name: str | None = None,
        version: int | None = None,
        model_id: str | None = None,
    ) -> None:
        self.native = native
        self.manifest = manifest
        self.uri = uri
        self.name = name
        self.version = version
        self.model_id = model_id
        self.input_kind = predictor.input_kind
        self._predict = predictor.predict
        self._proba = predictor.predict_proba
        sig = manifest.signature
        self._prepare: Callable[[Any], Any]
        if sig is None:
            self._prepare = _unvalidated
        elif predictor.input_kind == "array":
            self._prepare = sig.validate
        else:
            self._prepare = sig.to_frame

    @property
    def flavor(self) -> str:
        """The flavor that saved the model: ``sklearn``, ``xgboost`` or ``lightgbm``."""
        return self.manifest.flavor

    @property
    def signature(self) -> ModelSignature | None:
        """The input columns and output type, or None when the model was logged without."""
        return self.manifest.signature

    @property
    def input_columns(self) -> list[str] | None:
        """The columns the model takes, in its order - the one answer to "which columns of
        a table go to this model": the signature's when it was logged with an input
        example, else the names its library fitted it on (scikit-learn's
        ``feature_names_in_``, a LightGBM or XGBoost booster's feature names), else None:
        a model fitted on a bare array and logged without an example, whose columns and
        their order nothing records.

        Example:
            >>> # ll.registry.load("models:/churn/3").input_columns  -> ['tenure', 'spend']
        """
        if self.signature is not None:
            return list(self.signature.names)
        return get_flavor(self.flavor).fitted_columns(self.native, self.manifest.saved)

    @property
    def input_width(self) -> int | None:
        """How many columns the model takes: as many as :attr:`input_columns` when they are
        known, else the count its library recorded at fitting (scikit-learn's
        ``n_features_in_``, a booster's feature count), else None. A width without names
        marks a model fitted on a bare array: its values are told apart by position only.

        Example:
            >>> # ll.registry.load("models:/bare/1").input_width  -> 2
        """
        names = self.input_columns
        if names is not None:
            return len(names)
        return get_flavor(self.flavor).fitted_width(self.native, self.manifest.saved)

    def select_inputs(self, available: Sequence[str]) -> list[str] | None:
        """:attr:`input_columns`, each checked to be among ``available`` (a table's
        columns): select these, in this order, to predict - an id column, the label or
        another column order stays out of the model's way. None when the columns are not
        known; InvalidInput naming the first missing column.

        Example:
            >>> # model.select_inputs(["id", "spend", "tenure"])  -> ['tenure', 'spend']
        """
        names = self.input_columns
        if names is None:
            return None
        have = set(available)
        missing = [n for n in names if n not in have]
        if missing:
            raise InvalidInput(
                f"missing column {missing[0]!r}: the model takes {len(names)} columns "
                f"({', '.join(names)}), the input has no {', '.join(map(repr, missing))}",
                field=missing[0],
                hint="add the column to the input",
            )
        return names

    @property
    def task(self) -> ModelTask | None:
        """``classification`` or ``regression`` when the model says which it is (a
        scikit-learn or XGBoost classifier or regressor, a LightGBM one by the wrapper it
        was logged from), else None.

        Example:
            >>> # ll.registry.load("models:/churn/3").task  -> 'classification'
        """
        return get_flavor(self.flavor).task(self.native, self.manifest.saved)

    def predict(self, X: Any) -> np.ndarray[Any, Any]:
        """Validate ``X`` against the signature and predict.

        Example:
            >>> # model.predict([{"age": 31, "income": 52.5}])
        """
        return np.asarray(self._predict(self._prepare(X)))

    @property
    def predict_proba(self) -> Callable[[Any], np.ndarray[Any, Any]]:
        """Class probabilities (``predict_proba(X)``); AttributeError when the model has none.

        Example:
            >>> # model.predict_proba([{"age": 31}])[:, 1]
        """
        proba = self._proba
        if proba is None:
            raise AttributeError(
                f"{self.uri} ({self.manifest.saved.model_class}) has no predict_proba: "
                "it does not give class probabilities"
            )
        prepare = self._prepare

        def predict_proba(X: Any) -> np.ndarray[Any, Any]:
            return np.asarray(proba(prepare(X)))

        return predict_proba

    def __repr__(self) -> str:
        return f"<LoadedModel {self.uri} {self.flavor} {self.manifest.saved.model_class}>"


def _unvalidated(X: Any) -> Any:
    if isinstance(X, list) and X and isinstance(X[0], Mapping):
        import pandas as pd

        return pd.DataFrame(X)
    return X


# -- saving ---------------------------------------------------------------------------------


def _library_versions(flavor: Flavor) -> dict[str, str]:
    return {
        "python": installed_version("python"),
        "numpy": installed_version("numpy"),
        **flavor.library_versions(),
    }


def _as_signature(signature: ModelSignature | Mapping[str, Any] | None) -> ModelSignature | None:
    if signature is None or isinstance(signature, ModelSignature):
        return signature
    if isinstance(signature, Mapping):
        return ModelSignature.from_dict(signature)
    raise InvalidInput(
        f"signature must be a ModelSignature or a dict, got {type(signature).__name__}",
        field="signature",
        hint="build one with loopline.training.signature.infer_signature(example)",
    )


def _save(
    model: Any,
    folder: Path,
    flavor: Flavor,
    input_example: Any,
    signature: ModelSignature | Mapping[str, Any] | None,
) -> Manifest:
    if folder.exists() and any(folder.iterdir()):
        raise InvalidInput(
            f"{folder} is not empty", field="path", hint="save each model into a new folder"
        )
    folder.mkdir(parents=True, exist_ok=True)
    rows = example_rows(input_example)
    sig = _as_signature(signature)
    if sig is None and input_example is not None:
        sig = infer_signature(input_example)
    if sig is not None and rows:
        sig.validate(rows)  # the example must fit the signature it came with
    saved = flavor.save(model, folder)
    files = tuple(
        ManifestFile(rel, hash_file(folder / rel), (folder / rel).stat().st_size)
        for rel in saved.files
    )
    manifest = Manifest(
        flavor.name,
        saved,
        _library_versions(flavor),
        sig,
        rows,
        files,
        time.time(),
        _loopline_version(),
    )
    # Load what was written and predict on the example: proof it can be reloaded, and the
    # output type for the signature.
    # The flavor's own untrusted types are trusted here: this process built the object.
    own = tuple(saved.options.get("untrusted_types", ()))
    probe = _build(
        manifest,
        {f.path: (folder / f.path).read_bytes() for f in files},
        uri=str(folder),
        trusted_types=own,
        warn=False,
    )
    if sig is not None and rows and sig.output is None:
        try:
            predicted = probe.predict(rows)
        except (LooplineError, MemoryError):
            raise
        except Exception as exc:  # the user's model failed on the user's example
            raise InvalidInput(
                f"the model could not predict on its input example: {type(exc).__name__}: {exc}",
                field="input_example",
                hint="pass rows like the ones the model was trained on, with every column "
                "it needs (X.head(3))",
            ) from exc
        output = infer_output(predicted)
        manifest = Manifest(
            flavor.name,
            saved,
            manifest.library_versions,
            ModelSignature(sig.inputs, output),
            rows,
            files,
            manifest.created,
            manifest.loopline_version,
        )
    (folder / MANIFEST_FILE).write_bytes(manifest.to_bytes())
    return manifest


def _loopline_version() -> str:
    from loopline import __version__

    return __version__


def save_model(
    model: Any,
    path: str | Path,
    input_example: Any = None,
    signature: ModelSignature | Mapping[str, Any] | None = None,
) -> Path:
    """Save ``model`` into a new folder ``path``: its flavor's files + the manifest.

    The signature is inferred from ``input_example`` (a DataFrame or a list of row dicts)
    unless given. Returns the folder.

    Example:
        >>> # save_model(clf, "out/churn-model", input_example=X_train.head(5))
    """
    folder = Path(path)
    _save(model, folder, flavor_for(model), input_example, signature)
    return folder


# -- logging --------------------------------------------------------------------------------


def artifact_prefix(logged: registry_records.LoggedModel) -> str | None:
    """Where a logged model's files are named: ``{experiment}/models/{model_id}/artifacts``.

    None when the logged model's location is not served by Loopline's artifact proxy.

    Example:
        >>> # artifact_prefix(logged)  -> '1/models/m-0123.../artifacts'
    """
    location = logged.artifact_location
    if not location.startswith(ARTIFACT_SCHEME):
        return None
    return artifact_paths.clean_path(location.removeprefix(ARTIFACT_SCHEME))


def log_model(
    ctx: Context,
    run: Run,
    model: Any,
    name: str,
    input_example: Any = None,
    signature: ModelSignature | Mapping[str, Any] | None = None,
) -> registry_records.LoggedModel:
    """Save ``model``, store its files content-addressed, record a READY logged model.

    Called by ``run.log_model(...)``. On any failure the logged model is marked FAILED
    and the error rises.

    Example:
        >>> # with ll.start_run(experiment="churn") as run:
        >>> #     logged = run.log_model(clf, "model", input_example=X_train.head(5))
    """
    registry_checks.check_name(name)
    flavor = flavor_for(model)
    logged = registry_logged_models.create_logged_model(
        ctx,
        name=name,
        experiment_id=str(run.experiment_id),
        source_run_id=run.id,
        model_type=type(model).__name__,
        flavor=flavor.name,
    )
    prefix = artifact_prefix(logged) or f"{run.experiment_id}/models/{logged.model_id}/artifacts"
    try:
        with tempfile.TemporaryDirectory(prefix="loopline-model-") as tmp:
            folder = Path(tmp) / "model"
            manifest = _save(model, folder, flavor, input_example, signature)
            for f in manifest.files:
                stored = artifact_paths.put_file(ctx, f"{prefix}/{f.path}", folder / f.path)
                if stored != f.digest:
                    raise IntegrityError(
                        f"{f.path} changed while the model was being logged",
                        hint="log the model again",
                    )
            manifest_digest = artifact_paths.put_file(
                ctx, f"{prefix}/{MANIFEST_FILE}", folder / MANIFEST_FILE
            )
    except BaseException:
        registry_logged_models.update_logged_model(ctx, logged.model_id, status="FAILED")
        raise
    sig = manifest.signature
    return registry_logged_models.update_logged_model(
        ctx,
        logged.model_id,
        status="READY",
        manifest_digest=manifest_digest,
        signature=None if sig is None else sig.to_json(),
        flavor=flavor.name,
    )


# -- loading --------------------------------------------------------------------------------


def _check_versions(manifest: Manifest, ref: str) -> None:
    flavor = get_flavor(manifest.flavor)
    differ = []
    for dist in ("numpy", *flavor.libraries):
        recorded = manifest.library_versions.get(dist)
        installed = installed_version(dist)
        if recorded is not None and recorded != installed:
            differ.append(f"{dist} {recorded} (installed: {installed})")
    if differ:
        warnings.warn(
            f"{ref} was saved with {', '.join(differ)}; its predictions may differ",
            LibraryVersionWarning,
            stacklevel=4,
        )


def _build(
    manifest: Manifest,
    files: Mapping[str, bytes],
    *,
    uri: str,
    name: str | None = None,
    version: int | None = None,
    model_id: str | None = None,
    trusted_types: Sequence[str] = (),
    warn: bool = True,
) -> LoadedModel:
    """Deserialize verified bytes and wrap them: the only place a model is rebuilt."""
    flavor = get_flavor(manifest.flavor)
    if warn:
        _check_versions(manifest, uri)
    native = flavor.load(files, manifest.saved, trusted_types=trusted_types)
    predictor = flavor.predictor(native, manifest.saved, manifest.signature, manifest.input_example)
    return LoadedModel(
        native, manifest, predictor, uri=uri, name=name, version=version, model_id=model_id
    )


def _verified_bytes(ctx: Context, digest: str, file: str, ref: str) -> bytes:
    try:
        data = ctx.artifacts.get_bytes(digest)
    except IntegrityError as exc:
        raise IntegrityError(
            f"{file} of {ref} is corrupted: its stored bytes no longer hash to the digest "
            f"{digest} recorded in the manifest; nothing was deserialized",
            hint="restore the artifact store from a backup, or log the model again",
        ) from exc
    except NotFound as exc:
        raise IntegrityError(
            f"{file} of {ref} ({digest}) is missing from the artifact store",
            hint="restore the artifact store from a backup, or log the model again",
        ) from exc
    if hash_bytes(data) != digest:  # the store verified already; this is the trust boundary
        raise IntegrityError(f"{file} of {ref} does not match its manifest digest {digest}")
    return data


def _check_named_path(ctx: Context, prefix: str, f: ManifestFile, ref: str) -> None:
    try:
        digest, _ = artifact_paths.lookup(ctx, f"{prefix}/{f.path}")
    except NotFound:
        return
    if digest != f.digest:
        raise IntegrityError(
            f"{f.path} of {ref} was replaced after the model was logged: "
            f"{prefix}/{f.path} now holds {digest}, but the manifest recorded {f.digest}; "
            "nothing was deserialized",
            hint="find who rewrote it in the audit log; log the model again to replace it",
        )


def _not_loopline(ctx: Context, logged: registry_records.LoggedModel, ref: str) -> InvalidInput:
    prefix = artifact_prefix(logged)
    entries = artifact_paths.list_dir(ctx, prefix) if prefix else []
    has_mlmodel = any(e.path.rsplit("/", 1)[-1] == "MLmodel" for e in entries)
    if has_mlmodel or logged.status == "READY":
        what = "an MLmodel file and no" if has_mlmodel else "no"
        return InvalidInput(
            f"{ref} was logged by the MLflow client: it has {what} {MANIFEST_FILE}, and "
            "Loopline never unpickles MLflow models",
            field="model",
            hint=f"load it with mlflow.pyfunc.load_model({ref!r}) with "
            "MLFLOW_TRACKING_URI pointing at the Loopline server, or log it again with "
            "run.log_model(...)",
        )
    return InvalidInput(
        f"{ref} has no {MANIFEST_FILE}: its logging has not finished (status {logged.status})",
        field="model",
        hint="wait for the logging run, or log the model again with run.log_model(...)",
    )


def _verified_manifest(ctx: Context, logged: registry_records.LoggedModel, ref: str) -> Manifest:
    if not logged.manifest_digest:
        raise _not_loopline(ctx, logged, ref)
    return Manifest.from_bytes(
        _verified_bytes(ctx, logged.manifest_digest, MANIFEST_FILE, ref), ref
    )


def _verified_files(
    ctx: Context, logged: registry_records.LoggedModel, manifest: Manifest, ref: str
) -> Iterator[tuple[str, bytes]]:
    """Each file of ``manifest`` with its bytes, hashed against the manifest's digest."""
    prefix = artifact_prefix(logged)
    for f in manifest.files:
        if prefix is not None:
            _check_named_path(ctx, prefix, f, ref)
        yield f.path, _verified_bytes(ctx, f.digest, f.path, ref)


def verify_logged_model(
    ctx: Context, logged: registry_records.LoggedModel, *, ref: str
) -> Manifest:
    """Check that every file of a logged model is stored and intact, deserializing none.

    The checks of :func:`load_logged_model` without the load: the manifest and each file
    are read and hashed against the digests the registry and the manifest recorded (one
    file in memory at a time; BLAKE3 hashes well over a GB a second), and the flavor must
    be one this installation knows. An :class:`~loopline.errors.IntegrityError` names a
    corrupted or missing file. Returns the manifest.

    Example:
        >>> # logged = registry_logged_models.get_logged_model(ctx, "m-01...")
        >>> # verify_logged_model(ctx, logged, ref="m-01...")
    """
    manifest = _verified_manifest(ctx, logged, ref)
    get_flavor(manifest.flavor)
    for _ in _verified_files(ctx, logged, manifest, ref):
        pass
    return manifest


def load_logged_model(
    ctx: Context,
    logged: registry_records.LoggedModel,
    *,
    ref: str,
    name: str | None = None,
    version: int | None = None,
    trusted_types: Sequence[str] = (),
) -> LoadedModel:
    """Load a logged model, verifying every byte against the registry's manifest digest.

    ``ref`` names the model in messages (``models:/churn/3``). ``trusted_types`` adds
    fully qualified type names to the sklearn flavor's allow-list.

    Example:
        >>> # logged = registry_logged_models.get_logged_model(ctx, "m-01...")
        >>> # load_logged_model(ctx, logged, ref="m-01...")
    """
    manifest = _verified_manifest(ctx, logged, ref)
    files = dict(_verified_files(ctx, logged, manifest, ref))
    return _build(
        manifest,
        files,
        uri=ref,
        name=name,
        version=version,
        model_id=logged.model_id,
        trusted_types=trusted_types,
    )


def load_folder(
    path: str | Path, manifest_digest: str | None = None, trusted_types: Sequence[str] = ()
) -> LoadedModel:
    """Load a model folder written by :func:`save_model`, verifying every file.

    Each file must hash to the digest in ``loopline-model.json``; pass ``manifest_digest``
    (e.g. from the registry) to verify the manifest itself too.

    Example:
        >>> # load_folder("out/churn-model").predict(X_test)
    """
    folder = Path(path)
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        raise NotFound(
            f"{folder} has no {MANIFEST_FILE}",
            hint="pass a folder written by save_model or run.log_model",
        )
    data = manifest_path.read_bytes()
    if manifest_digest is not None and hash_bytes(data) != manifest_digest:
        raise IntegrityError(
            f"{MANIFEST_FILE} in {folder} does not match the digest {manifest_digest}",
            hint="the folder was edited after it was saved; save it again",
        )
    manifest = Manifest.from_bytes(data, str(folder))
    files: dict[str, bytes] = {}
    for f in manifest.files:
        content = (folder / f.path).read_bytes()
        actual = hash_bytes(content)
        if actual != f.digest:
            raise IntegrityError(
                f"{f.path} in {folder} does not match its manifest: it hashes to {actual}, "
                f"the manifest recorded {f.digest}; nothing was deserialized",
                hint="the file was edited or corrupted after it was saved; save it again",
            )
        files[f.path] = content
    return _build(manifest, files, uri=str(folder), trusted_types=trusted_types)
