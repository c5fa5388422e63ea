"""How a ``category`` column matches values to its categories: by kind and value, so
``True`` is not the category ``1`` and ``"1"`` is not ``1``, but ``3.0`` (JSON has one
number type) is ``3``.

Holds the membership key, the lookup a signature builds once per category column (and the
checks of its categories), the test whether a frame's column already is a categorical of
exactly those categories, and the error that lists them. Apart from
:mod:`loopline.training.signature` because a category column is matched, not type-checked:
no other column type uses these.

Example:
    >>> _category_key(3.0) == _category_key(3), _category_key(True) == _category_key(1)
    (True, False)
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from loopline.errors import InvalidInput
from loopline.training.signature_checks import _py
from loopline.training.signature_columns import (
    Category,
    ColumnSpec,
)

_NOT_FOUND = object()


def _first_index(values: Any, v: Any) -> int:
    for i, x in enumerate(values):
        if x is v or x == v:
            return i
    return 0


def _category_key(v: Any) -> Any:
    """How a value is matched to a category: by kind and value, so ``True`` is not the
    category ``1`` and ``"1"`` is not ``1``, but ``3.0`` (JSON has one number type) is
    ``3``; None for a null."""
    if v is None:
        return None
    if isinstance(v, bool | np.bool_):
        return ("bool", bool(v))
    if isinstance(v, str):
        return ("str", str(v))
    if isinstance(v, numbers.Integral):
        return ("num", int(v))
    if isinstance(v, numbers.Real):
        f = float(v)
        if f != f:
            return None
        return ("num", int(f)) if f.is_integer() else ("num", f)
    if type(v).__name__ in ("NAType", "NaTType"):
        return None
    return ("other", repr(v))  # never a category: lists, dicts, dates...


def _category_lookup(c: ColumnSpec) -> dict[Any, Category]:
    """{key: category} of a category column; InvalidInput when its categories are not
    a non-empty list of distinct JSON scalars."""
    hint = "give the column's categories as a non-empty list of distinct strings or numbers"
    if not c.categories:
        raise InvalidInput(
            f"column {c.name!r} is a category column without categories", field=c.name, hint=hint
        )
    lookup: dict[Any, Category] = {}
    for v in c.categories:
        key = _category_key(v)
        ok = isinstance(v, Category) and key is not None and key[0] != "other"
        if not ok or (isinstance(v, float) and math.isinf(v)):
            raise InvalidInput(
                f"column {c.name!r} has the category {v!r} ({type(v).__name__}), which is not "
                "a string, a finite number or a bool",
                field=c.name,
                hint="convert the categories to strings before training "
                "(df[col] = df[col].astype(str).astype('category'))",
            )
        if key in lookup:
            raise InvalidInput(
                f"column {c.name!r} has the category {v!r} twice (as {lookup[key]!r})",
                field=c.name,
                hint=hint,
            )
        lookup[key] = v
    return lookup


def _same_categories(frame: Any, c: ColumnSpec) -> bool:
    """Whether ``frame[c.name]`` is already a categorical of exactly ``c``'s categories."""
    import pandas as pd

    dtype = frame[c.name].dtype
    if not isinstance(dtype, pd.CategoricalDtype):
        return False
    have = [_category_key(v) for v in dtype.categories]
    return have == [_category_key(v) for v in c.categories or ()]


def _not_a_category(name: str, categories: list[Any], value: Any, row: int) -> InvalidInput:
    value = _py(value)
    shown = ", ".join(repr(v) for v in categories[:10])
    if len(categories) > 10:
        shown += f", ... ({len(categories)} in all)"
    return InvalidInput(
        f"column {name!r} expects one of its categories ({shown}), got "
        f"{type(value).__name__} {value!r} (row {row})",
        field=name,
        hint="send a category the model was trained with; a new category needs a model "
        "trained and logged with it",
    )


def _category_spec(name: str, series: Any, nullable: bool) -> ColumnSpec:
    """The ``category`` column of a pandas categorical Series (its categories, in order)."""
    categories = tuple(_py(v) for v in series.cat.categories)
    return ColumnSpec(name, "category", nullable, categories)
