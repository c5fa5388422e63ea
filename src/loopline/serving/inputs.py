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

The pieces: :mod:`loopline.serving.body_json` reads the body's JSON text (:func:`loads`,
:class:`~.body_json.MalformedBody`); this module reads its shape;
:mod:`loopline.serving.model_rows` gives the rows to a model in the form it takes, and
:mod:`loopline.serving.model_rejection` names the values a model without a signature
refused.

Example:
    >>> parse({"instances": [[1.0, 2.0]]})
    ('lists', [[1.0, 2.0]], None)
    >>> parse({"inputs": {"a": [1, 2], "b": [3, 4]}})
    ('split', (['a', 'b'], [[1, 3], [2, 4]]), None)
"""

from __future__ import annotations

from typing import Any

import orjson

from loopline.errors import InvalidInput
from loopline.serving.body_json import loads

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
