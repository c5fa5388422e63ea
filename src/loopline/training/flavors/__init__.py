"""Model flavors: one module per model library, each a :class:`~.base.Flavor`.

* ``sklearn`` - scikit-learn estimators and pipelines, saved with skops
  (:mod:`~loopline.training.flavors.sklearn_flavor`);
* ``xgboost`` - XGBoost boosters and wrappers, native UBJSON
  (:mod:`~loopline.training.flavors.xgboost_flavor`);
* ``lightgbm`` - LightGBM boosters and wrappers, native text
  (:mod:`~loopline.training.flavors.lightgbm_flavor`).

No flavor imports its library until it saves or loads a model.

Example:
    >>> from sklearn.linear_model import LinearRegression
    >>> flavor_for(LinearRegression()).name
    'sklearn'
"""

from __future__ import annotations

from typing import Any

from loopline.errors import InvalidInput
from loopline.training.flavors.base import (
    Flavor,
    LibraryVersionWarning,
    Predictor,
    SavedModel,
)
from loopline.training.flavors.lightgbm_flavor import LightGBMFlavor
from loopline.training.flavors.sklearn_flavor import SklearnFlavor
from loopline.training.flavors.xgboost_flavor import XGBoostFlavor

# Detection order matters: the XGBoost and LightGBM wrappers also subclass scikit-learn.
FLAVORS: dict[str, Flavor] = {
    f.name: f for f in (XGBoostFlavor(), LightGBMFlavor(), SklearnFlavor())
}

__all__ = [
    "FLAVORS",
    "Flavor",
    "LibraryVersionWarning",
    "Predictor",
    "SavedModel",
    "flavor_for",
    "get_flavor",
]


def get_flavor(name: str) -> Flavor:
    """The flavor called ``name``; InvalidInput listing the known ones otherwise.

    Example:
        >>> get_flavor("xgboost").libraries
        ('xgboost',)
    """
    flavor = FLAVORS.get(name)
    if flavor is None:
        raise InvalidInput(
            f"unknown model flavor {name!r}",
            field="flavor",
            hint=f"known flavors: {', '.join(FLAVORS)}",
        )
    return flavor


def flavor_for(model: Any) -> Flavor:
    """The flavor that saves ``model``; InvalidInput when none does.

    Example:
        >>> from xgboost import XGBRegressor
        >>> flavor_for(XGBRegressor()).name
        'xgboost'
    """
    for flavor in FLAVORS.values():
        if flavor.handles(model):
            return flavor
    raise InvalidInput(
        f"no model flavor saves a {type(model).__name__}",
        field="model",
        hint="log a scikit-learn estimator or pipeline, an XGBoost or a LightGBM model",
    )
