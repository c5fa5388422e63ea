"""XGBoost models saved in XGBoost's own UBJSON format (``model.ubj``), never pickled.

Handles a bare ``xgboost.Booster`` and the scikit-learn wrappers (``XGBClassifier``,
``XGBRegressor``, ...): ``save_model`` keeps the wrapper's own attributes (classes,
objective) in the same file. Only the classes in :data:`MODEL_CLASSES` are rebuilt on load.

Example:
    >>> XGBoostFlavor().name
    'xgboost'
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopline.errors import InvalidInput
from loopline.training.flavors.base import Flavor, Predictor, SavedModel, class_path, defined_in

if TYPE_CHECKING:
    from loopline.training.signature import ModelSignature

MODEL_FILE = "model.ubj"

#: The classes a saved XGBoost model may be rebuilt as (recorded class -> attribute name).
MODEL_CLASSES: dict[str, str] = {
    "xgboost.core.Booster": "Booster",
    "xgboost.sklearn.XGBClassifier": "XGBClassifier",
    "xgboost.sklearn.XGBRegressor": "XGBRegressor",
    "xgboost.sklearn.XGBRanker": "XGBRanker",
    "xgboost.sklearn.XGBRFClassifier": "XGBRFClassifier",
    "xgboost.sklearn.XGBRFRegressor": "XGBRFRegressor",
}


class XGBoostFlavor(Flavor):
    """XGBoost boosters and their scikit-learn wrappers.

    Example:
        >>> XGBoostFlavor().handles(object())
        False
    """

    name = "xgboost"
    libraries = ("xgboost",)

    def handles(self, model: Any) -> bool:
        return defined_in(model, "xgboost")

    def save(self, model: Any, folder: Path) -> SavedModel:
        kind = class_path(model)
        if kind not in MODEL_CLASSES:
            raise InvalidInput(
                f"cannot save an XGBoost {kind}",
                field="model",
                hint=f"log one of {', '.join(sorted(MODEL_CLASSES))}",
            )
        model.save_model(str(folder / MODEL_FILE))
        return SavedModel((MODEL_FILE,), kind, {"format": "ubj"})

    def load(
        self, files: Mapping[str, bytes], saved: SavedModel, *, trusted_types: Sequence[str] = ()
    ) -> Any:
        attr = MODEL_CLASSES.get(saved.model_class)
        if attr is None:
            raise InvalidInput(
                f"the manifest names the class {saved.model_class!r}, which is not an XGBoost "
                "model class Loopline rebuilds",
                field="model_class",
                hint=f"expected one of {', '.join(sorted(MODEL_CLASSES))}",
            )
        xgb = importlib.import_module("xgboost")
        model = getattr(xgb, attr)()
        try:
            model.load_model(bytearray(files[MODEL_FILE]))
        except xgb.core.XGBoostError as exc:
            raise InvalidInput(
                f"{MODEL_FILE} is not a readable XGBoost model: {exc}",
                field=MODEL_FILE,
                hint="log the model again",
            ) from exc
        return model

    def fitted_columns(self, model: Any, saved: SavedModel) -> list[str] | None:
        """The wrapper's ``feature_names_in_``, else a bare Booster's ``feature_names``
        (None for a model fitted on a bare array).

        Example:
            >>> XGBoostFlavor().fitted_columns(object(), SavedModel((), "x")) is None
            True
        """
        names = super().fitted_columns(model, saved)
        if names is None and saved.model_class == "xgboost.core.Booster":
            found = getattr(model, "feature_names", None)
            names = None if found is None else [str(n) for n in found]
        return names

    def fitted_width(self, model: Any, saved: SavedModel) -> int | None:
        """The wrapper's ``n_features_in_``, else a bare Booster's feature count.

        Example:
            >>> XGBoostFlavor().fitted_width(object(), SavedModel((), "x")) is None
            True
        """
        width = super().fitted_width(model, saved)
        if width is None and saved.model_class == "xgboost.core.Booster":
            width = int(model.num_features())
        return width

    def predictor(
        self,
        model: Any,
        saved: SavedModel,
        signature: ModelSignature | None,
        example: list[dict[str, Any]] | None,
    ) -> Predictor:
        kind = _input_kind(signature)
        if saved.model_class == "xgboost.core.Booster":
            return Predictor(model.inplace_predict, None, kind)
        proba = model.predict_proba if hasattr(model, "predict_proba") else None
        return Predictor(model.predict, proba, kind)


def _input_kind(signature: ModelSignature | None) -> Any:
    if signature is not None and not signature.numeric:
        return "frame"
    return "array"
