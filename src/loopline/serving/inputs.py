"""Request bodies of ``POST /v1/models/NAME/predict``, parsed into rows for a model.

These shapes are accepted::

    {"instances": [{"age": 31, "plan": "pro"}, ...]}          # rows as objects
    {"instances": [[31, "pro"], ...]}                          # rows in signature order
    {"dataframe_split": {"columns": ["age", "plan"], "data": [[31, "pro"], ...]}}
    {"inputs": {"age": [31, 45], "plan": ["pro", "free"]}}     # columns of values

(As MLflow's scoring server takes them: ``dataframe_records`` is a synonym of
``instances`` with objects; ``inputs`` is a synonym of ``instances`` when it holds rows,
and names each column's values when it is an object - MLflow's tensor input, for a model
with named columns; ``dataframe_split`` may carry the ``index`` pandas writes, which is
ignored.) One of these keys per body; ``dataframe_split`` names each column once. An
optional top-level ``"key"`` (a string) makes A/B routing sticky. No other field is read,
so none is taken: MLflow's ``params`` (model parameters at predict time) and any unknown
field, at the top or in ``dataframe_split``, are refused rather than silently ignored, and
so is a key given twice in one object (JSON parsers keep one of the values, which would be
a guess). Anything else is an :class:`~loopline.errors.InvalidInput` naming the field,
which the server answers with 422.

Example:
    >>> parse({"instances": [[1.0, 2.0]]})
    ('lists', [[1.0, 2.0]], None)
    >>> parse({"inputs": {"a": [1, 2], "b": [3, 4]}})
    ('split', (['a', 'b'], [[1, 3], [2, 4]]), None)
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from loopline.errors import InvalidInput

RECORDS = "records"
LISTS = "lists"
SPLIT = "split"
_SHAPES = (
    "{'instances': [{...}, ...]}, {'instances': [[...], ...]}, "
    "{'dataframe_split': {'columns': [...], 'data': [[...], ...]}} or "
    "{'inputs': {'column': [...], ...}}"
)


_ROW_KEYS = ("instances", "inputs", "dataframe_records", "dataframe_split")
#: Every top-level field a body may have.
_FIELDS = frozenset((*_ROW_KEYS, "key"))
#: Every field of ``dataframe_split`` (pandas' split orient; the index only labels rows).
_SPLIT_FIELDS = frozenset(("columns", "data", "index"))


class MalformedBody(ValueError):
    """The body is not JSON text (answered with 400); ``field`` says where, when known.

    Example:
        >>> MalformedBody("the body is not valid UTF-8").field
        'body'
    """

    def __init__(self, message: str, field: str = "body", hint: str = "send a JSON object"):
        super().__init__(message)
        self.field = field
        self.hint = hint


#: A lone surrogate: in a string the standard parser made, what an escape like \ud800 with
#: no partner became (a pair becomes one character). Such a string is not text: it has no
#: UTF-8, so no answer echoing it could be written.
_SURROGATE = re.compile("[\ud800-\udfff]")
#: The JSON escape of a surrogate (\ud800 to \udfff): only a body holding one is searched.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_TEXT_HINT = (
    "send JSON text in UTF-8; a character beyond U+FFFF is escaped as a pair, e.g. \\ud83d\\ude00"
)


def loads(body: bytes) -> Any:
    """Parse JSON text; NaN and Infinity are accepted (the signature then rejects them).

    A body that is not UTF-8 (a byte order mark is allowed), or whose strings hold a lone
    surrogate escape (``\\ud800`` without its partner), is :class:`MalformedBody` naming
    the byte offset or the place of the string: neither is text.

    Example:
        >>> loads(b'{"x": NaN}')["x"]
        nan
        >>> try:
        ...     loads(b'{"k": "\\\\udfff"}')
        ... except MalformedBody as exc:
        ...     print(exc.field)
        k
    """
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        error = exc
    else:
        # Outside strings a colon ends each key, so as many colons as members counted in
        # the parsed objects means that no key was given twice (one C count; the members
        # counted are a lower bound). Fewer members - a key twice, a colon inside a string
        # or an object deeper than a row - and the body is parsed again, exactly.
        if body.count(b":") != _members(payload):
            _refuse_duplicate_keys(body)
        return payload
    # The standard parser reads NaN/Infinity literals. Given bytes, it would also decode
    # surrogates encoded in UTF-8 (surrogatepass) and it keeps lone surrogate escapes; both
    # are refused here, as orjson refuses them.
    try:
        text = body.decode(json.detect_encoding(body))
    except UnicodeDecodeError as bad:
        encoding = bad.encoding.upper().replace("-SIG", "")
        raise MalformedBody(
            f"the body is not valid {encoding}: byte {body[bad.start]:#04x} at offset "
            f"{bad.start} ({bad.reason})",
            hint=_TEXT_HINT,
        ) from None
    try:
        payload = json.loads(text, object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError):
        raise MalformedBody(f"the body is not valid JSON: {error}") from None
    if _SURROGATE_ESCAPE.search(text):
        _refuse_lone_surrogates(payload)
    return payload


def _members(payload: Any) -> int:
    """The members of the objects in ``payload`` at the top, as its values and as items of
    its lists (where every shape of a body keeps its objects): a lower bound of them all.

    Example:
        >>> _members({"instances": [{"a": 1, "b": 2}, {"a": 3, "b": 4}], "key": "k"})
        6
    """
    if type(payload) is list:
        return sum(len(x) for x in payload if type(x) is dict)
    if type(payload) is not dict:
        return 0
    count = len(payload)
    for value in payload.values():
        if type(value) is dict:
            count += len(value)
        elif type(value) is list and value and type(value[0]) is dict:  # not rows as lists
            count += sum(len(x) for x in value if type(x) is dict)
    return count


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object's members as a dict; InvalidInput naming a key given twice."""
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                shown = key if len(key) <= 40 else key[:40] + "..."
                raise InvalidInput(
                    f"the body gives the key {shown!r} twice in one object; a JSON parser "
                    "keeps one of the values, so which one counts would be a guess",
                    field=shown,
                    hint="send each key once per object",
                )
            seen.add(key)
    return found


def _refuse_duplicate_keys(body: bytes) -> None:
    """Parse ``body`` (JSON that orjson took) again, refusing a key given twice."""
    try:
        json.loads(body.decode("utf-8-sig"), object_pairs_hook=_unique_keys)
    except RecursionError:
        raise MalformedBody(
            "the body nests arrays or objects too deeply", hint="send rows of plain values"
        ) from None


def _refuse_lone_surrogates(payload: Any) -> None:
    """MalformedBody naming the first string (or object key) with a lone surrogate."""
    # Iterative: a body nested as deep as the parser allows must not overflow the stack.
    stack: list[tuple[Any, tuple[Any, ...]]] = [(payload, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            found = _SURROGATE.search(value)
            if found:
                raise _lone_surrogate(path, "the string", found.group())
        elif isinstance(value, dict):
            for k, v in value.items():
                found = _SURROGATE.search(k)
                if found:
                    shown = ascii(k if len(k) <= 40 else k[:40] + "...")
                    raise _lone_surrogate(path, f"the key {shown}", found.group())
                stack.append((v, (*path, k)))
        elif isinstance(value, list):
            stack.extend((v, (*path, i)) for i, v in enumerate(value))


def _lone_surrogate(path: tuple[Any, ...], subject: str, surrogate: str) -> MalformedBody:
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
    return MalformedBody(
        f"{where or 'the body'}: {subject} holds a lone surrogate ({ascii(surrogate)[1:-1]}); "
        "a surrogate escape without its partner is not a character, so the body is not text",
        field=where or "body",
        hint=_TEXT_HINT,
    )


def _rows(value: Any, field: str) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidInput(
            f"{field} must be a list of rows, got {_json_type(value)}",
            field=field,
            hint=f"send {_SHAPES}",
        )
    if not value:
        raise InvalidInput(f"{field} is empty", field=field, hint="send at least one row")
    return value


def parse(payload: Any) -> tuple[str, Any, str | None]:
    """Split a parsed body into (shape, rows, key); InvalidInput names the bad field.

    Example:
        >>> parse({"instances": [{"x": 1}], "key": "user-7"})
        ('records', [{'x': 1}], 'user-7')
    """
    if not isinstance(payload, dict):
        raise InvalidInput(
            f"the body must be a JSON object, got {_json_type(payload)}",
            field="body",
            hint=f"send {_SHAPES}",
        )
    key = payload.get("key", "")
    if type(key) is not str:  # 7 and "7", or true and "True", must not be one routing key
        raise InvalidInput(
            f"key must be a string, got {_json_type(key)}",
            field="key",
            hint='send the routing key as a string, e.g. "user-7", or leave the field out',
        )
    skey = key if "key" in payload else None
    given = [k for k in _ROW_KEYS if k in payload]
    if len(given) > 1:  # which one would win is a guess the client did not ask for
        raise InvalidInput(
            f"the body has both {given[0]!r} and {given[1]!r}; send the rows under one of them",
            field=given[1],
            hint=f"send {_SHAPES}",
        )
    if not _FIELDS.issuperset(payload):
        _refuse_unknown(payload)
    if not given:
        raise InvalidInput(
            "the body has no rows: send them under instances, inputs, dataframe_split or "
            f"dataframe_records (keys given: {', '.join(map(str, payload)) or 'none'})",
            field="body",
            hint=f"send {_SHAPES}",
        )
    field = given[0]
    if field == "dataframe_split":
        return SPLIT, _split(payload[field]), skey
    if field == "inputs" and isinstance(payload[field], dict):
        return SPLIT, _columns(payload[field]), skey
    return (*_row_list(payload[field], field), skey)


def parse_accepted(body: bytes) -> tuple[str, Any]:
    """The shape and rows of a request body this server has already read and accepted
    (the prediction log's writer, a replay of the spool): what :func:`loads` and
    :func:`parse` gave the server, at a third of their cost. The body's checks passed
    when the server read it, so orjson alone parses it (the standard parser as in
    :func:`loads` for NaN and Infinity), and a ``dataframe_split`` body, the only fields
    of which are its rows and a key, gives its columns and data as :func:`parse` gives
    them; any other body goes through :func:`parse`.

    Example:
        >>> parse_accepted(b'{"dataframe_split": {"columns": ["a"], "data": [[1]]}}')
        ('split', (['a'], [[1]]))
        >>> parse_accepted(b'{"instances": [{"a": NaN}]}')
        ('records', [{'a': nan}])
    """
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        payload = loads(body)
    if type(payload) is dict:
        split = payload.get("dataframe_split")
        if type(split) is dict and len(payload) == 1 + ("key" in payload):
            return SPLIT, (split["columns"], split["data"])
    shape, rows, _ = parse(payload)
    return shape, rows


def _row_list(value: Any, field: str) -> tuple[str, list[Any]]:
    """Rows all objects (RECORDS) or all lists (LISTS)."""
    rows = _rows(value, field)
    first = type(rows[0])
    if first is not dict and first is not list:
        raise InvalidInput(
            f"{field}[0] is {_json_type(rows[0])}; a row is an object or a list",
            field=field,
            hint=f"send {_SHAPES}",
        )
    for i, row in enumerate(rows):
        if type(row) is not first:
            raise InvalidInput(
                f"{field}[{i}] is {_json_type(row)}; every row must be "
                f"{_json_type(rows[0])} like the first",
                field=field,
            )
    return (RECORDS if first is dict else LISTS), rows


def _split(split: Any) -> tuple[list[str], list[Any]]:
    """The columns and rows of a ``dataframe_split`` object."""
    if not isinstance(split, dict):
        raise InvalidInput(
            "dataframe_split must be an object with columns and data",
            field="dataframe_split",
            hint=f"send {_SHAPES}",
        )
    if not _SPLIT_FIELDS.issuperset(split):
        field = next(k for k in split if k not in _SPLIT_FIELDS)
        raise InvalidInput(
            f"unknown field {field!r} in dataframe_split; it takes columns and data (and "
            "pandas' index, which is ignored)",
            field=f"dataframe_split.{field}",
            hint=f"send {_SHAPES}",
        )
    columns = split.get("columns")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise InvalidInput(
            "dataframe_split.columns must be a list of column names",
            field="dataframe_split.columns",
        )
    seen: set[str] = set()
    for c in columns:
        if c in seen:  # a dict of the row would keep the last value and drop the first
            raise InvalidInput(
                f"dataframe_split.columns names column {c!r} twice",
                field="dataframe_split.columns",
                hint="name each column once",
            )
        seen.add(c)
    data = _rows(split.get("data"), "dataframe_split.data")
    n = len(columns)
    for i, row in enumerate(data):
        if type(row) is not list or len(row) != n:
            got = f"{len(row)} values" if isinstance(row, list) else _json_type(row)
            raise InvalidInput(
                f"dataframe_split.data[{i}] has {got} for {n} columns"
                if isinstance(row, list)
                else f"dataframe_split.data[{i}] is {got}; a row is a list of {n} values",
                field="dataframe_split.data",
            )
    index = split.get("index")
    if "index" in split and (type(index) is not list or len(index) != len(data)):
        got = f"{len(index)} labels" if type(index) is list else _json_type(index)
        raise InvalidInput(
            f"dataframe_split.index has {got} for {len(data)} rows"
            if type(index) is list
            else f"dataframe_split.index must be a list of row labels, got {got}",
            field="dataframe_split.index",
            hint="send one label per row, or leave the index out (it is not used)",
        )
    return columns, data


def _columns(inputs: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """MLflow's tensor input by column (``{"inputs": {"a": [1, 2], ...}}``) as split rows."""
    if not inputs:
        raise InvalidInput(
            "inputs is empty", field="inputs", hint="send each column's values, one per row"
        )
    columns = list(inputs)
    values = list(inputs.values())
    for name, column in zip(columns, values, strict=True):
        if type(column) is not list:
            raise InvalidInput(
                f"inputs.{name} must be a list of values, one per row, got {_json_type(column)}",
                field=f"inputs.{name}",
                hint="send each column as a list, e.g. {'inputs': {'age': [31, 45]}}",
            )
    n = len(values[0])
    for name, column in zip(columns, values, strict=True):
        if len(column) != n or not column:
            raise InvalidInput(
                f"inputs.{name} has {len(column)} values, inputs.{columns[0]} has {n}"
                if column
                else f"inputs.{name} is empty",
                field=f"inputs.{name}",
                hint="give every column one value per row (at least one row)",
            )
    return columns, [list(row) for row in zip(*values, strict=True)]


def _refuse_unknown(payload: dict[str, Any]) -> None:
    """InvalidInput naming the first top-level field the server does not read."""
    field = next(k for k in payload if k not in _FIELDS)
    if field == "params":  # MLflow's scoring protocol has it; a client may expect it to work
        message = "params are not supported by Loopline's model server; remove the field"
    else:
        message = (
            f"unknown field {field!r}; the body takes instances, inputs, dataframe_records, "
            "dataframe_split and key"
        )
    raise InvalidInput(message, field=field, hint=f"send {_SHAPES}, and optionally a 'key'")


def _json_type(value: Any) -> str:
    """What a parsed JSON value is, in JSON's words (for messages)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an object" if isinstance(value, dict) else "an array"


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
    predicting ``rows`` (as :func:`parse` returned them): a :class:`ModelRejected` naming
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
