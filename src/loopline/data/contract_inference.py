"""Inferring a contract from data: :func:`infer`.

Reads a DataFrame and writes down the rules it meets (dtypes, nulls, ranges, allowed
values of categories, uniqueness of identifiers, a row-count range) as a
:class:`~loopline.data.contract_validation.Contract` for a person to review and edit.
Kept apart from validation (:mod:`loopline.data.contract_validation`), whose helpers
for reading a frame's values it shares. The public face is
:mod:`loopline.data.contracts` (``ll.contracts.infer``).

Example:
    >>> import pandas as pd
    >>> infer(pd.DataFrame({"x": [1, 2]})).columns["x"].min
    1
"""

from __future__ import annotations

import math
from typing import Any

from loopline.data.contract_rules import ColumnRule, RowRule
from loopline.data.contract_validation import Contract, _all_hashable, _py, _string_columns

MAX_CATEGORIES = 50


def _is_float(series: Any) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_float_dtype(series.dtype))


def _plain(values: list[Any]) -> bool:
    """True when every value is a str, int, float or bool: what ``allowed`` can hold and
    YAML gives back as it was. Dates, decimals and bytes would come back as text and no
    longer equal the data they were inferred from."""
    return all(type(v) in (str, int, float, bool) for v in values)


def infer(df: Any, *, name: str | None = None, row_tolerance: float | None = None) -> Contract:
    """A contract that ``df`` meets, to be reviewed and edited by a person.

    For every column: its dtype; ``nullable`` when it has nulls; ``min``/``max`` for numbers
    (not booleans); ``allowed`` for strings and categoricals with at most 50 distinct values
    (for strings, only when some value repeats: a column of distinct names is an
    identifier, not a category; not for dates, decimals or bytes held as Python objects,
    which a YAML contract would give back as text); ``unique`` when every value differs
    and none is null (integers, strings and dates; not floating-point measurements,
    booleans or categoricals; at least two rows). A column of lists, arrays or dicts gets
    neither ``allowed`` nor ``unique`` (its values are not plain). Rows: at least 1, no
    upper bound, or ``n * (1 ± row_tolerance)`` when ``row_tolerance`` is given.

    Example:
        >>> import pandas as pd
        >>> infer(pd.DataFrame({"x": [1, 2]})).columns["x"].max
        2
    """
    import pandas as pd

    frame = _string_columns(df, "infer a contract from", "infer-contract PATH OUT.yaml")
    columns: dict[str, ColumnRule] = {}
    for col in frame.columns:
        series = frame[col]
        dtype = series.dtype
        non_null = series.dropna()
        # Lists, arrays and dicts (a list column) have no set of values to allow, and
        # pandas cannot tell whether they are unique.
        hashable = _all_hashable(non_null)
        rule = ColumnRule(dtype=str(dtype), nullable=bool(len(non_null) < len(series)))
        if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
            if len(non_null):
                rule.min, rule.max = _py(non_null.min()), _py(non_null.max())
        elif isinstance(dtype, pd.CategoricalDtype):
            levels = [_py(v) for v in dtype.categories]
            if len(levels) <= MAX_CATEGORIES and _plain(levels):
                rule.allowed = sorted(levels, key=str)
        elif (pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype)) and (
            hashable
        ):
            distinct = [_py(v) for v in non_null.unique()]
            if (
                len(distinct) <= MAX_CATEGORIES
                and len(distinct) < len(non_null)
                and _plain(distinct)
            ):
                rule.allowed = sorted(distinct, key=str)
        if (
            hashable
            and not _is_float(series)
            and not pd.api.types.is_bool_dtype(dtype)
            and not isinstance(dtype, pd.CategoricalDtype)
            and len(series) >= 2
            and len(non_null) == len(series)
            and series.is_unique
        ):
            rule.unique = True
        columns[col] = rule
    n = len(frame)
    if row_tolerance is None:
        rows = RowRule(min=1 if n else 0, max=None)
    else:
        rows = RowRule(
            min=max(0, math.floor(n * (1 - row_tolerance))), max=math.ceil(n * (1 + row_tolerance))
        )
    return Contract(columns, rows=rows, name=name)
