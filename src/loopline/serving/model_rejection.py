"""The 422 for values a model itself refused: a model logged without an input example
has no signature to check the types of a request, so when it raises on text where it reads
numbers, the request's wrong columns are found here and named to the client.

Separate from :mod:`loopline.serving.inputs` (checks of a body before any model runs)
because it judges a model's failure after the fact: which exceptions count as the
client's, and which values in the rows caused them.

Example:
    >>> rejected_by_model(TypeError("bad"), "lists", [["x", 1.0]], ["a", "b"]).field
    'a'
"""

from __future__ import annotations

from typing import Any

from loopline.errors import InvalidInput
from loopline.serving.inputs import LISTS, RECORDS, _json_type


class ModelRejected(InvalidInput):
    """The model itself raised on values no signature checked: text (or an array, an
    object) where it reads numbers. A 422 like a signature's, but the version did fail to
    predict, so the server lets another version judge the input (the stable version for a
    candidate, the fallback for the stable one) and counts the failure when that one takes
    it.

    Example:
        >>> ModelRejected("column 'a' holds a string", field="a").code
        'INVALID_INPUT'
    """


#: Raised by models given values they cannot read; anything else is the model's failure.
_CONVERSION_ERRORS = (ValueError, TypeError)
#: The values of the model's exception and of the request echoed in a 422, at most.
_SHOWN_CHARS = 300
_SHOWN_VALUE_CHARS = 40
_SHOWN_COLUMNS = 5


def rejected_by_model(
    exc: BaseException, shape: str, rows: Any, names: list[str] | None
) -> ModelRejected | None:
    """The 422 for a model logged without an input example that raised ``exc`` while
    predicting ``rows`` (as :func:`~.inputs.parse` returned them): a :class:`ModelRejected` naming
    the columns that hold values no numeric column takes - JSON strings, arrays, objects -
    with the first row of each and the model's message, when ``exc`` is a ValueError or
    TypeError (what scikit-learn, LightGBM and XGBoost raise for them) and such a column
    exists. None otherwise: numbers alone that made the model raise are not the client's
    fault as far as anyone can tell, so that stays the model's failure (a 500 or the
    fallback's answer). ``names`` are the model's columns in order, for rows sent as
    lists; without them a column is named by its position, ``instances[ROW][COLUMN]``.

    Example:
        >>> bad = rejected_by_model(
        ...     ValueError("could not convert string to float: 'abc'"),
        ...     "records", [{"a": 1.0, "b": 2}, {"a": "abc", "b": 3}], None)
        >>> bad.field
        'a'
        >>> print(bad.message)  # doctest: +NORMALIZE_WHITESPACE
        the model raised ValueError: could not convert string to float: 'abc' - the request
        holds values that are not numbers: column 'a' (a string, 'abc', row 1). The model
        was logged without an input example, so no signature checked the types first
        >>> rejected_by_model(ValueError("unknown category 9"), "lists", [[1.0, 9]], None) is None
        True
    """
    if not isinstance(exc, _CONVERSION_ERRORS):
        return None
    cells = _not_numbers(shape, rows, names)
    if not cells:
        return None
    said = f"{type(exc).__name__}: {_shorten(str(exc), _SHOWN_CHARS)}"
    shown = ", ".join(
        f"{_column(c)} ({_json_type(v)}, {_shorten(repr(v), _SHOWN_VALUE_CHARS)}, row {r})"
        for c, r, v in cells[:_SHOWN_COLUMNS]
    )
    if len(cells) > _SHOWN_COLUMNS:
        shown += f" and {len(cells) - _SHOWN_COLUMNS} more columns"
    column, r, _ = cells[0]
    return ModelRejected(
        f"the model raised {said} - the request holds values that are not numbers: "
        f"{shown}. The model was logged without an input example, so no signature checked "
        "the types first",
        field=column if isinstance(column, str) else f"instances[{r}][{column}]",
        hint=f"send numbers in {_column(column)} if the model reads it as a number; "
        "log the model with an input example (log_model(..., input_example=X.head())) to "
        "have the server check every column's type and name the wrong value",
    )


def _column(column: str | int) -> str:
    """A column in a message: by name, or by position for rows of unnamed columns."""
    return f"column {column!r}" if isinstance(column, str) else f"column {column} (by position)"


def _not_numbers(
    shape: str, rows: Any, names: list[str] | None
) -> list[tuple[str | int, int, Any]]:
    """Each column holding a string, an array or an object: (its name - its position for
    rows as lists without ``names`` -, the first row holding one, that value).

    JSON null and booleans are not listed: a numeric model may take them (NaN, 0 and 1).

    Example:
        >>> _not_numbers("split", (["a", "b"], [[1, "x"], [[2], "y"]]), None)
        [('a', 1, [2]), ('b', 0, 'x')]
    """
    found: dict[str | int, tuple[int, Any]] = {}
    if shape == RECORDS:
        for r, record in enumerate(rows):
            for key, value in record.items():
                if key not in found and isinstance(value, _NOT_NUMBERS):
                    found[key] = r, value
        order: list[str | int] = list(found)
    else:
        columns: list[str | int]
        if shape == LISTS:
            data = rows
            width = max((len(row) for row in rows), default=0)
            columns = list(names) if names is not None else list(range(width))
        else:
            named, data = rows
            columns = list(named)
        for r, row in enumerate(data):
            for i, value in enumerate(row):
                if i < len(columns) and columns[i] not in found and isinstance(value, _NOT_NUMBERS):
                    found[columns[i]] = r, value
        order = [c for c in columns if c in found]
    return [(c, *found[c]) for c in order]


#: Values of a parsed JSON body that no numeric column takes.
_NOT_NUMBERS = (str, list, dict)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
