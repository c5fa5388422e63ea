"""Rows of a parsed predict body in the form the model's ``predict`` takes: row dicts
named by the signature, a DataFrame of exactly the columns a model was fitted on, or a
numpy array of positional values.

Separate from :mod:`loopline.serving.inputs`, which reads what the client sent: this
module fits those rows to one model version, so the same body is converted once per
version that answers it (the stable version, a candidate, the fallback).

Example:
    >>> as_records("split", (["b", "a"], [[2, 1]]), ["a", "b"])
    [{'b': 2, 'a': 1}]
"""

from __future__ import annotations

from typing import Any

from loopline.errors import InvalidInput
from loopline.serving.inputs import LISTS, RECORDS


def as_records(shape: str, rows: Any, names: list[str] | None) -> Any:
    """Rows in the form the model's ``predict`` takes: a list of row dicts.

    ``names`` are the signature's columns (None without a signature: lists become a numpy
    array, a split becomes a DataFrame).

    Example:
        >>> as_records("lists", [[1, 2]], ["a", "b"])
        [{'a': 1, 'b': 2}]
    """
    if shape == RECORDS:
        return rows
    if shape == LISTS:
        if names is None:
            import numpy as np

            return np.asarray(rows)
        _check_width(rows, names)
        return [dict(zip(names, row, strict=True)) for row in rows]
    columns, data = rows
    if names is None:
        import pandas as pd

        return pd.DataFrame(data, columns=columns)
    return [dict(zip(columns, row, strict=True)) for row in data]


#: What to do about a column error of a model known only by the columns it was fitted on.
_FITTED_HINT = (
    "send exactly the columns the model was fitted on (GET /v1/models/NAME lists them as "
    "inputs); log the model with an input example to have each column's type checked too"
)


def as_fitted_frame(shape: str, rows: Any, names: list[str]) -> Any:
    """Rows as a DataFrame of exactly ``names``, in that order: what a model logged without
    an input example, which records the columns it was fitted on but no signature
    (:attr:`~loopline.training.models.LoadedModel.input_columns`), is given - whatever
    order the request names its columns in. A missing column, or one the model was not
    fitted on, is an :class:`~loopline.errors.InvalidInput` naming it, as the signature
    names them for a model logged with an example; rows as lists must have one value per
    column, in the model's order. The values are not checked: nothing records their types.

    Example:
        >>> try:
        ...     as_fitted_frame("records", [{"id": 7, "b": 2, "a": 1}], ["a", "b"])
        ... except InvalidInput as exc:
        ...     print(exc.field)
        id
        >>> as_fitted_frame("split", (["b", "a"], [[2, 1]]), ["a", "b"]).to_dict("records")
        [{'a': 1, 'b': 2}]
    """
    import pandas as pd

    if shape == RECORDS:
        data = [_fitted_values(row, names, r) for r, row in enumerate(rows)]
    elif shape == LISTS:
        _check_width(rows, names)
        data = rows
    else:
        columns, split = rows
        _fitted_values(dict.fromkeys(columns), names, 0)  # the columns, checked once
        at = [columns.index(c) for c in names]
        data = [[row[i] for i in at] for row in split]
    return pd.DataFrame(data, columns=names)


def _check_width(rows: list[Any], names: list[str]) -> None:
    """InvalidInput naming the first row as a list without one value per column of ``names``."""
    n = len(names)
    for i, row in enumerate(rows):
        if len(row) != n:
            raise InvalidInput(
                f"instances[{i}] has {len(row)} values, but the model takes {n} features "
                f"in this order: {', '.join(names)}",
                field="instances",
                hint="send one value per feature, or send objects with feature names",
            )


def _fitted_values(row: dict[str, Any], names: list[str], r: int) -> list[Any]:
    """``row``'s values of ``names``, in order; InvalidInput naming a missing or extra key."""
    try:
        values = [row[c] for c in names]
    except KeyError as exc:
        raise InvalidInput(
            f"missing column {exc.args[0]!r}: expected {len(names)} columns "
            f"({', '.join(names)}), got {len(row)} ({', '.join(map(str, row))})",
            field=str(exc.args[0]),
            hint=_FITTED_HINT,
        ) from None
    if len(row) != len(names):
        extra = next(k for k in row if k not in names)
        raise InvalidInput(
            f"unexpected column {extra!r} (row {r}); the model takes {len(names)} columns: "
            f"{', '.join(names)}",
            field=str(extra),
            hint=_FITTED_HINT,
        )
    return values


def as_positional(shape: str, rows: Any, width: int) -> Any:
    """Rows as lists, each of ``width`` values, as a numpy array: what a model fitted on
    unnamed columns (a bare array) and logged without an input example is given. Nothing
    records which column is which but their position, so rows with column names are an
    :class:`~loopline.errors.InvalidInput`: given in the order the request names them, a
    client's other order would be scored on the wrong columns without a word.

    Example:
        >>> as_positional("lists", [[1.0, 2.0]], 2).tolist()
        [[1.0, 2.0]]
        >>> try:
        ...     as_positional("records", [{"a": 1.0, "b": 2.0}], 2)
        ... except InvalidInput as exc:
        ...     print(exc.field)
        instances
    """
    import numpy as np

    if shape != LISTS:
        raise InvalidInput(
            f"the model was fitted on {width} unnamed columns and logged without an input "
            "example, so nothing says which named value is which column; send each row as "
            f"a list of its {width} values in the order the model was fitted on",
            field="instances",
            hint='send {"instances": [[...], ...]}, or log the model from a DataFrame (or '
            "with an input example) to have its columns taken by name",
        )
    for i, row in enumerate(rows):
        if len(row) != width:
            raise InvalidInput(
                f"instances[{i}] has {len(row)} values, but the model takes {width} features "
                "(unnamed: in the order it was fitted on)",
                field="instances",
                hint=f"send {width} values per row",
            )
    return np.asarray(rows)
