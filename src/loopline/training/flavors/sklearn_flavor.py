"""scikit-learn models saved with skops (``model.skops``), never with pickle.

On load, :func:`skops.io.get_untrusted_types` lists the types skops does not trust by
itself; every one must be in :data:`ALLOWED_TYPES` (a fixed list of scikit-learn, NumPy
and SciPy internals found in fitted estimators) or named by the caller in
``trusted_types``. Anything else is refused with :class:`InvalidInput` naming the types,
before a single object is built. The types of :data:`CHECKED_TYPES` are loaded and then
checked object by object, and so are the node arrays of trees (see ``sklearn_trees``) and
the arrays other estimators' compiled code trusts (see ``sklearn_arrays``).

Models fitted on a DataFrame remember their column names and warn when given a bare
array. For the fast path the predictor uses a shallow copy that has forgotten the names
(after checking they are the signature's, in order) - but only if a probe on the example
row gives exactly the same predictions as the DataFrame path; otherwise (e.g. a
ColumnTransformer selecting columns by name) it takes DataFrames.

Example:
    >>> SklearnFlavor().name
    'sklearn'
"""

from __future__ import annotations

import copy
import importlib
import io
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopline.errors import InvalidInput
from loopline.training.flavors.base import (
    Flavor,
    Predictor,
    SavedModel,
    class_path,
    defined_in,
)
from loopline.training.flavors.sklearn_arrays import check_arrays
from loopline.training.flavors.sklearn_trees import check_trees, walk

if TYPE_CHECKING:
    from loopline.training.signature import ModelSignature

MODEL_FILE = "model.skops"

#: Types skops does not trust by default that Loopline accepts: each is a scikit-learn,
#: NumPy or SciPy internal of fitted estimators (trees, kernels, losses, optimisers, ...).
ALLOWED_TYPES: frozenset[str] = frozenset(
    {
        "numpy.dtype",
        "numpy.mean",
        "numpy.median",
        "scipy._lib.array_api_compat.numpy._aliases.asarray",
        "scipy.interpolate._bsplines.BSpline",
        "sklearn._loss.link.IdentityLink",
        "sklearn._loss.link.LogitLink",
        "sklearn._loss.link.LogLink",
        "sklearn._loss.link.MultinomialLogit",
        "sklearn._loss.loss.AbsoluteError",
        "sklearn._loss.loss.HalfBinomialLoss",
        "sklearn._loss.loss.HalfGammaLoss",
        "sklearn._loss.loss.HalfMultinomialLoss",
        "sklearn._loss.loss.HalfPoissonLoss",
        "sklearn._loss.loss.HalfSquaredError",
        "sklearn._loss.loss.HalfTweedieLoss",
        "sklearn._loss.loss.HalfTweedieLossIdentity",
        "sklearn._loss.loss.HuberLoss",
        "sklearn._loss.loss.PinballLoss",
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        "sklearn.cluster._bisect_k_means._BisectingTree",
        "sklearn.cluster._kmeans._kmeans_single_lloyd",
        "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.feature_selection._univariate_selection.chi2",
        "sklearn.feature_selection._univariate_selection.f_classif",
        "sklearn.feature_selection._univariate_selection.f_regression",
        "sklearn.gaussian_process._gpc._BinaryGaussianProcessClassifierLaplace",
        "sklearn.gaussian_process.kernels.ConstantKernel",
        "sklearn.gaussian_process.kernels.DotProduct",
        "sklearn.gaussian_process.kernels.ExpSineSquared",
        "sklearn.gaussian_process.kernels.Matern",
        "sklearn.gaussian_process.kernels.Product",
        "sklearn.gaussian_process.kernels.RBF",
        "sklearn.gaussian_process.kernels.RationalQuadratic",
        "sklearn.gaussian_process.kernels.Sum",
        "sklearn.gaussian_process.kernels.WhiteKernel",
        "sklearn.metrics._dist_metrics.EuclideanDistance64",
        "sklearn.metrics._dist_metrics.ManhattanDistance64",
        "sklearn.metrics._dist_metrics.MinkowskiDistance64",
        "sklearn.neighbors._ball_tree.BallTree",
        "sklearn.neighbors._kd_tree.KDTree",
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
        "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
        "sklearn.tree._tree.Tree",
        "sklearn.utils.validation.check_array",
    }
)

#: Types outside the allow-list accepted when every object of the type in the loaded model
#: passes a check: ``functools.partial`` only around ``check_array``, which scikit-learn's
#: HistGradientBoosting* puts in front of its trees when it is fitted on category columns
#: (calling a partial of another function, even an allowed one, is not what a model does).
CHECKED_TYPES: frozenset[str] = frozenset({"functools.partial"})


#: The allowed types whose content skops cannot vouch for: node arrays the compiled
#: prediction code follows without bounds checks. Loopline checks them after loading.
TREE_TYPES: frozenset[str] = frozenset(
    {
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.neighbors._ball_tree.BallTree",
        "sklearn.neighbors._kd_tree.KDTree",
        "sklearn.tree._tree.Tree",
    }
)


def _check_partials(model: Any) -> None:
    """Refuse a loaded model holding a ``functools.partial`` of anything but
    ``check_array`` (see :data:`CHECKED_TYPES`); nothing was called while loading it."""
    import functools

    from sklearn.utils.validation import check_array

    for obj in walk(model):
        if isinstance(obj, functools.partial) and obj.func is not check_array:
            name = f"{getattr(obj.func, '__module__', '?')}.{getattr(obj.func, '__name__', '?')}"
            raise InvalidInput(
                f"{MODEL_FILE} holds functools.partial({name}, ...); Loopline loads a partial "
                "only around sklearn.utils.validation.check_array",
                field="trusted_types",
                hint="if you trust this model, load with trusted_types=['functools.partial']; "
                "otherwise do not load it",
            )


def _skops() -> Any:
    return importlib.import_module("skops.io")


class SklearnFlavor(Flavor):
    """scikit-learn estimators and pipelines, persisted with skops.

    Example:
        >>> SklearnFlavor().handles(object())
        False
    """

    name = "sklearn"
    libraries = ("scikit-learn", "skops")

    def handles(self, model: Any) -> bool:
        return defined_in(model, "sklearn")

    def save(self, model: Any, folder: Path) -> SavedModel:
        sio = _skops()
        path = folder / MODEL_FILE
        sio.dump(model, path)
        refused = sorted(set(sio.get_untrusted_types(file=path)) - ALLOWED_TYPES)
        return SavedModel(
            (MODEL_FILE,),
            class_path(model),
            {"untrusted_types": refused},
        )

    def load(
        self, files: Mapping[str, bytes], saved: SavedModel, *, trusted_types: Sequence[str] = ()
    ) -> Any:
        data = files[MODEL_FILE]
        sio = _skops()
        try:
            untrusted = sorted(sio.get_untrusted_types(data=data))
        except (zipfile.BadZipFile, KeyError, ValueError, TypeError) as exc:
            raise InvalidInput(
                f"{MODEL_FILE} is not a readable skops file: {type(exc).__name__}: {exc}",
                field=MODEL_FILE,
                hint="log the model again",
            ) from exc
        refused = [
            t
            for t in untrusted
            if t not in ALLOWED_TYPES and t not in CHECKED_TYPES and t not in trusted_types
        ]
        if refused:
            raise InvalidInput(
                f"{MODEL_FILE} holds types that are not on the allow-list of scikit-learn/"
                f"NumPy/SciPy types, so it was not loaded: {', '.join(refused)}",
                field="trusted_types",
                hint="if you trust these types, load with "
                f"trusted_types={refused!r}; otherwise do not load this model",
            )
        try:
            model = sio.load(io.BytesIO(data), trusted=untrusted)
        except (zipfile.BadZipFile, KeyError, ValueError, TypeError, IndexError) as exc:
            # An estimator's __setstate__, or skops itself, refused what the file holds
            # (e.g. IsotonicRegression thresholds of unequal lengths).
            raise InvalidInput(
                f"{MODEL_FILE} could not be loaded: {type(exc).__name__}: {exc}",
                field=MODEL_FILE,
                hint="the file is damaged or was altered; log the model again",
            ) from exc
        if "functools.partial" in untrusted and "functools.partial" not in trusted_types:
            _check_partials(model)
        # skops checked the types; the trees' node arrays (sklearn_trees) and the other
        # estimators' arrays (sklearn_arrays) it cannot check. One walk lists the objects
        # for both. Naming a tree type in trusted_types skips the trees' check; the other
        # estimators are types skops trusts by itself, and a fitted one always passes.
        found = list(walk(model))
        if not TREE_TYPES.intersection(trusted_types):
            check_trees(model, found)
        check_arrays(model, found)
        return model

    def predictor(
        self,
        model: Any,
        saved: SavedModel,
        signature: ModelSignature | None,
        example: list[dict[str, Any]] | None,
    ) -> Predictor:
        proba = getattr(model, "predict_proba", None) if _has_proba(model) else None
        names = getattr(model, "feature_names_in_", None)
        if names is None:
            return Predictor(model.predict, proba, "array")
        fitted = [str(n) for n in names]
        if signature is None:
            return Predictor(model.predict, proba, "frame")
        if set(fitted) != set(signature.names):
            missing = [n for n in fitted if n not in signature.names]
            extra = [n for n in signature.names if n not in fitted]
            said = [
                f"lacks {', '.join(map(repr, missing))}" if missing else "",
                f"has {', '.join(map(repr, extra))} the model was not fitted on" if extra else "",
            ]
            raise InvalidInput(
                f"the input example {' and '.join(p for p in said if p)}: the model was "
                f"fitted on the columns {fitted}",
                field="input_example",
                hint="pass rows of the frame the model was fitted on, with every one of its "
                "columns (X.head(3))",
            )
        if fitted != signature.names:  # same columns in another order: reorder for the model
            return Predictor(
                _reordered(model.predict, fitted),
                None if proba is None else _reordered(proba, fitted),
                "frame",
            )
        view = _without_feature_names(model)
        if view is None or not _same_predictions(model, view, signature, example):
            return Predictor(model.predict, proba, "frame")
        view_proba = view.predict_proba if proba is not None else None
        return Predictor(view.predict, view_proba, "array")


def _reordered(fn: Any, columns: list[str]) -> Any:
    def call(frame: Any) -> Any:
        return fn(frame[columns])

    return call


def _has_proba(model: Any) -> bool:
    # hasattr, not getattr(..., None) alone: sklearn's available_if hides the method when
    # the estimator cannot provide it (e.g. SVC(probability=False)).
    return hasattr(model, "predict_proba")


def _without_feature_names(model: Any) -> Any:
    """A shallow copy that takes bare arrays (None when it must see column names)."""
    compose = importlib.import_module("sklearn.compose")
    pipeline = importlib.import_module("sklearn.pipeline")
    if isinstance(model, compose.ColumnTransformer):
        return None
    if isinstance(model, pipeline.Pipeline):
        first_name, first = model.steps[0]
        inner = _without_feature_names(first)
        if inner is None:
            return None
        clone = copy.copy(model)
        clone.steps = [(first_name, inner), *model.steps[1:]]
        return clone
    clone = copy.copy(model)
    clone.__dict__.pop("feature_names_in_", None)
    return clone


def _same_predictions(
    model: Any, view: Any, signature: ModelSignature, example: list[dict[str, Any]] | None
) -> bool:
    """Probe once: does the array path predict exactly what the DataFrame path does?"""
    import numpy as np  # here: the registry imports every flavor; listing models needs none

    rows = example or [_placeholder_row(signature)]
    try:
        frame = signature.to_frame(rows)
        array = signature.validate(rows)
        expected = np.asarray(model.predict(frame))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = np.asarray(view.predict(array))
    except Exception:  # not swallowed: a failing probe selects the DataFrame path
        return False
    if caught or expected.shape != got.shape:
        return False
    numeric = expected.dtype.kind in "biuf" and got.dtype.kind in "biuf"
    return bool(np.array_equal(expected, got, equal_nan=numeric))


def _placeholder_row(signature: ModelSignature) -> dict[str, Any]:
    zero: dict[str, Any] = {"int": 0, "float": 0.0, "bool": False, "string": ""}
    return {c.name: c.categories[0] if c.categories else zero[c.type] for c in signature.inputs}
