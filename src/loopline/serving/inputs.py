"""Request bodies of ``POST /v1/models/NAME/predict``, parsed into rows for a model.

Three shapes are accepted::

    {"instances": [{"age": 31, "plan": "pro"}, ...]}          # rows as objects
    {"instances": [[31, "pro"], ...]}                          # rows in signature order
    {"dataframe_split": {"columns": ["age", "plan"], "data": [[31, "pro"], ...]}}

(``dataframe_records`` is accepted as a synonym of ``instances`` with objects, as MLflow
sends it.) One of these keys per body; ``dataframe_split`` names each column once. An
optional top-level ``"key"`` (a string) makes A/B routing sticky. No other top-level field
is read, so none is taken: MLflow's ``params`` (model parameters at predict time) and any
unknown field are refused rather than silently ignored. Anything else is an
:class:`~loopline.errors.InvalidInput` naming the field, which the server answers with 422.

Example:
    >>> parse({"instances": [[1.0, 2.0]]})
    ('lists', [[1.0, 2.0]], None)
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
    "{'instances': [{...}, ...]}, {'instances': [[...], ...]} or "
    "{'dataframe_split': {'columns': [...], 'data': [[...], ...]}}"
)


_ROW_KEYS = ("instances", "dataframe_records", "dataframe_split")
#: Every top-level field a body may have.
_FIELDS = frozenset((*_ROW_KEYS, "key"))


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
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        error = exc
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
        payload = json.loads(text)
    except (ValueError, RecursionError):
        raise MalformedBody(f"the body is not valid JSON: {error}") from None
    if _SURROGATE_ESCAPE.search(text):
        _refuse_lone_surrogates(payload)
    return payload


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
            f"{field} must be a list of rows, got {type(value).__name__}",
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
            f"the body must be a JSON object, got {type(payload).__name__}",
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
    if given and not _FIELDS.issuperset(payload):
        _refuse_unknown(payload)
    if "instances" in payload or "dataframe_records" in payload:
        field = "instances" if "instances" in payload else "dataframe_records"
        rows = _rows(payload[field], field)
        first = type(rows[0])
        if first is dict:
            for i, row in enumerate(rows):
                if type(row) is not dict:
                    raise InvalidInput(
                        f"{field}[{i}] is a {type(row).__name__}; every row "
                        "must be an object like the first",
                        field=field,
                    )
            return RECORDS, rows, skey
        if first is list:
            for i, row in enumerate(rows):
                if type(row) is not list:
                    raise InvalidInput(
                        f"{field}[{i}] is a {type(row).__name__}; every row "
                        "must be a list like the first",
                        field=field,
                    )
            return LISTS, rows, skey
        raise InvalidInput(
            f"{field}[0] is a {first.__name__}; a row is an object or a list",
            field=field,
            hint=f"send {_SHAPES}",
        )
    if "dataframe_split" in payload:
        split = payload["dataframe_split"]
        if not isinstance(split, dict):
            raise InvalidInput(
                "dataframe_split must be an object with columns and data",
                field="dataframe_split",
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
                got = len(row) if isinstance(row, list) else type(row).__name__
                raise InvalidInput(
                    f"dataframe_split.data[{i}] has {got} values for {n} columns",
                    field="dataframe_split.data",
                )
        return SPLIT, (columns, data), skey
    raise InvalidInput(
        f"the body has no rows (keys: {', '.join(map(str, payload)) or 'none'})",
        field="instances",
        hint=f"send {_SHAPES}",
    )


def _refuse_unknown(payload: dict[str, Any]) -> None:
    """InvalidInput naming the first top-level field the server does not read."""
    field = next(k for k in payload if k not in _FIELDS)
    if field == "params":  # MLflow's scoring protocol has it; a client may expect it to work
        message = "params are not supported by Loopline's model server; remove the field"
    else:
        message = (
            f"unknown field {field!r}; the body takes instances, dataframe_records, "
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
        n = len(names)
        for i, row in enumerate(rows):
            if len(row) != n:
                raise InvalidInput(
                    f"instances[{i}] has {len(row)} values, but the model takes {n} features "
                    f"in this order: {', '.join(names)}",
                    field="instances",
                    hint="send one value per feature, or send objects with feature names",
                )
        return [dict(zip(names, row, strict=True)) for row in rows]
    columns, data = rows
    if names is None:
        import pandas as pd

        return pd.DataFrame(data, columns=columns)
    return [dict(zip(columns, row, strict=True)) for row in data]
