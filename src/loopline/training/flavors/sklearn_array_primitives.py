"""The building blocks of the array checks of :mod:`.sklearn_arrays`: integers, arrays,
ranges and widths read from a loaded model, each refused the same way.

Every estimator check (:mod:`.sklearn_predictor_arrays`, :mod:`.sklearn_transformer_arrays`,
:mod:`.sklearn_scipy_arrays`) is written with these, so a refusal always is an
:class:`~loopline.errors.InvalidInput` on ``model.skops`` with the hint of the tree checks,
naming the estimator and the attribute. They are apart from the checks so that each group
of estimators imports them from one place.

Example:
    >>> _int(3, "SVC", "n_features_in_", 1)
    3
    >>> try:
    ...     _array([1, 2], "SVC", "support_")
    ... except InvalidInput as exc:
    ...     print(exc.message)
    model.skops: SVC: support_ is a list, not an array
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from loopline.errors import InvalidInput
from loopline.training.flavors.sklearn_trees import FIELD, HINT

_INT32_MAX = 2**31 - 1
_FLOATS = (np.dtype(np.float64), np.dtype(np.float32))
_F64 = (np.dtype(np.float64),)


def _refuse(message: str) -> InvalidInput:
    return InvalidInput(f"model.skops: {message}", field=FIELD, hint=HINT)


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _degree(value: Any, what: str, name: str, high: int) -> int:
    """A degree: an integer >= 0 (else the file was altered) and at most ``high``, the
    most Loopline evaluates (a model scikit-learn fitted with more is refused too, with a
    hint that says so)."""
    degree = _int(value, what, name, 0)
    if degree > high:
        raise InvalidInput(
            f"model.skops: {what}: {name} is {degree}, above {high}, the highest degree "
            "Loopline loads (evaluating one costs its square, or more, per value)",
            field=FIELD,
            hint=f"refit with a degree of at most {high}",
        )
    return degree


def _int(value: Any, what: str, name: str, low: int, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high]`` (no upper bound when ``high`` is None)."""
    if not _is_int(value) or value < low or (high is not None and value > high):
        bounds = f"[{low}, {high}]" if high is not None else f"[{low}, ...)"
        raise _refuse(f"{what}: {name} is {value!r}, not an integer in {bounds}")
    return int(value)


def _array(
    value: Any,
    what: str,
    name: str,
    *,
    ndim: int | None = None,
    dtypes: Sequence[np.dtype[Any]] | None = None,
    integer: bool = False,
    shape: tuple[int, ...] | None = None,
) -> np.ndarray[Any, Any]:
    """``value`` if it is an array of the given kind; refused otherwise."""
    if not isinstance(value, np.ndarray):
        raise _refuse(f"{what}: {name} is a {type(value).__name__}, not an array")
    if ndim is not None and value.ndim != ndim:
        raise _refuse(f"{what}: {name} has {value.ndim} dimensions, not {ndim}")
    if dtypes is not None and value.dtype not in dtypes:
        wanted = " or ".join(str(d) for d in dtypes)
        raise _refuse(f"{what}: {name} holds {value.dtype}, not {wanted}")
    if integer and value.dtype.kind not in "iu":
        raise _refuse(f"{what}: {name} holds {value.dtype}, not integers")
    if shape is not None and value.shape != shape:
        raise _refuse(f"{what}: {name} has shape {value.shape}, not {shape}")
    return value


def _within(values: Any, low: int, high: int, what: str, name: str) -> None:
    """Every one of the integer ``values`` is in ``[low, high)``."""
    values = np.asarray(values)
    if values.size and (values.min() < low or values.max() >= high):
        bad = values[(values < low) | (values >= high)].flat[0]
        raise _refuse(f"{what}: {name} holds {bad}, outside [{low}, {high})")


def _width(estimator: Any, what: str) -> int:
    return _int(getattr(estimator, "n_features_in_", None), what, "n_features_in_", 1)


def _fitted(estimator: Any) -> bool:
    """Whether scikit-learn counts ``estimator`` as fitted (an attribute ending in ``_``):
    an unfitted one (a search's or an ensemble's template) refuses to predict by itself."""
    return any(k.endswith("_") and not k.startswith("__") for k in vars(estimator))
