"""LightGBM models saved in LightGBM's own text format (``model.txt``), never pickled.

A scikit-learn wrapper (``LGBMClassifier``, ``LGBMRegressor``, ``LGBMRanker``) is saved as
its booster plus, for a classifier, its class labels; it loads back as a
``lightgbm.Booster`` whose predictor maps probabilities to labels as the wrapper does
(the wrapper itself cannot be rebuilt from the text format).

Example:
    >>> LightGBMFlavor().name
    'lightgbm'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopline.errors import InvalidInput
from loopline.training import native_threads
from loopline.training.flavors.base import (
    Flavor,
    ModelTask,
    Predictor,
    SavedModel,
    class_path,
    defined_in,
)

if TYPE_CHECKING:
    import numpy as np

    from loopline.training.signature import ModelSignature

# numpy is imported where a model is saved or served, not with the module: the registry
# imports every flavor, and `loopline models ls` has no use for numpy's start-up.

MODEL_FILE = "model.txt"


class LightGBMFlavor(Flavor):
    """LightGBM boosters and their scikit-learn wrappers.

    Example:
        >>> LightGBMFlavor().handles(object())
        False
    """

    name = "lightgbm"
    libraries = ("lightgbm",)

    def handles(self, model: Any) -> bool:
        return defined_in(model, "lightgbm")

    def save(self, model: Any, folder: Path) -> SavedModel:
        lgb = importlib.import_module("lightgbm")
        options: dict[str, Any] = {"estimator": "booster", "classes": None}
        if isinstance(model, lgb.Booster):
            booster = model
        else:
            try:
                booster = model.booster_
            except (AttributeError, lgb.compat.LGBMNotFittedError) as exc:
                raise InvalidInput(
                    f"the {type(model).__name__} is not fitted",
                    field="model",
                    hint="call fit() before logging it",
                ) from exc
            if isinstance(model, lgb.LGBMClassifier):
                import numpy as np

                options = {
                    "estimator": "classifier",
                    "classes": np.asarray(model.classes_).tolist(),
                }
            elif isinstance(model, lgb.LGBMRanker):
                options["estimator"] = "ranker"
            else:
                options["estimator"] = "regressor"
        booster.save_model(str(folder / MODEL_FILE))
        return SavedModel((MODEL_FILE,), class_path(model), options)

    def load(
        self, files: Mapping[str, bytes], saved: SavedModel, *, trusted_types: Sequence[str] = ()
    ) -> Any:
        lgb = importlib.import_module("lightgbm")
        try:
            text = files[MODEL_FILE].decode("utf-8")
            return lgb.Booster(model_str=text)
        except (UnicodeDecodeError, lgb.basic.LightGBMError) as exc:
            raise InvalidInput(
                f"{MODEL_FILE} is not a readable LightGBM model: {exc}",
                field=MODEL_FILE,
                hint="log the model again",
            ) from exc

    def fitted_columns(self, model: Any, saved: SavedModel) -> list[str] | None:
        """The booster's feature names; None for the ``Column_0``, ``Column_1``, ...
        LightGBM makes up for a model fitted on a bare array.

        Example:
            >>> LightGBMFlavor().fitted_columns(object(), SavedModel((), "x")) is None
            True
        """
        feature_name = getattr(model, "feature_name", None)
        if feature_name is None:
            return None
        names = [str(n) for n in feature_name()]
        return None if names == [f"Column_{i}" for i in range(len(names))] else names

    def fitted_width(self, model: Any, saved: SavedModel) -> int | None:
        """The booster's feature count.

        Example:
            >>> LightGBMFlavor().fitted_width(object(), SavedModel((), "x")) is None
            True
        """
        num_feature = getattr(model, "num_feature", None)
        return None if num_feature is None else int(num_feature())

    def task(self, model: Any, saved: SavedModel) -> ModelTask | None:
        """From the wrapper the booster was saved from (recorded at logging).

        Example:
            >>> LightGBMFlavor().task(None, SavedModel((), "x", {"estimator": "regressor"}))
            'regression'
        """
        kind = saved.options.get("estimator")
        if kind == "classifier":
            return "classification"
        return "regression" if kind == "regressor" else None

    def predictor(
        self,
        model: Any,
        saved: SavedModel,
        signature: ModelSignature | None,
        example: list[dict[str, Any]] | None,
    ) -> Predictor:
        kind: Any = "array"
        if signature is not None and not signature.numeric:
            kind = "frame"
        raw = _threaded(model.predict)
        classes = saved.options.get("classes")
        if saved.options.get("estimator") != "classifier" or not classes:
            return Predictor(raw, None, kind)
        import numpy as np

        labels = np.asarray(classes)
        return Predictor(_labels(raw, labels), _proba(raw), kind)


def _threaded(predict: Callable[..., Any]) -> Callable[[Any], Any]:
    """``predict`` on the native thread limit in force (see ``loopline.training.native_threads``).

    LightGBM keeps the thread count of its last call in a process-wide setting, so every call
    names one: the limit, or 0 for LightGBM's default.
    """

    def call(x: Any) -> Any:
        return predict(x, num_threads=native_threads.current() or 0)

    return call


def _proba(raw: Callable[[Any], Any]) -> Callable[[Any], Any]:
    import numpy as np

    def predict_proba(x: Any) -> Any:
        p = np.asarray(raw(x))
        if p.ndim == 1:  # binary: the probability of the second class
            return np.column_stack((1.0 - p, p))
        return p

    return predict_proba


def _labels(raw: Callable[[Any], Any], labels: np.ndarray[Any, Any]) -> Callable[[Any], Any]:
    import numpy as np

    proba = _proba(raw)

    def predict(x: Any) -> Any:
        return labels[np.argmax(proba(x), axis=1)]

    return predict
