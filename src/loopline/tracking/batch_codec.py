"""The metric points of a log-batch body: encoded by the SDK, decoded and checked by the server.

Points travel in columns::

    {"metrics": {"keys": ["loss", "acc"], "values": [0.5, "NaN"],
                 "steps": [3, 3], "timestamps": [1700000000000, 1700000000000]}}

or as rows ``[key, value, step, timestamp]`` (step and timestamp may be left off: 0 and
now). NaN and the infinities travel as the strings ``"NaN"``, ``"Infinity"`` and
``"-Infinity"``; steps and timestamps are 64-bit integers. Decoding checks whole columns
in C when it can and falls back to a point-by-point pass that names the first bad point
(``metrics.values[3]``).

Example:
    >>> encode_metric_rows([("r" * 32, "loss", 0.0, 5, 1, 1)])["values"]
    ['NaN']
    >>> decode_metrics({"keys": ["loss"], "values": ["NaN"]}, "r" * 32, now=5)
    [('rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr', 'loss', 0.0, 5, 0, 1)]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import repeat
from operator import itemgetter
from typing import Any

from loopline.core.text import some_names
from loopline.errors import InvalidInput
from loopline.tracking._dialect import MetricRow
from loopline.tracking.validation import MAX_FLOAT, check_key

#: The most metric points one log-batch request may carry.
MAX_BATCH_POINTS = 100_000
#: How NaN and the infinities travel in JSON.
NAN, POS_INF, NEG_INF = "NaN", "Infinity", "-Infinity"
_SPECIAL = {NAN: (0.0, 1), POS_INF: (MAX_FLOAT, 0), NEG_INF: (-MAX_FLOAT, 0)}
#: The range of a step or timestamp (their columns are BIGINT).
MIN_INT64, MAX_INT64 = -(2**63), 2**63 - 1
_KEY, _VALUE, _TIMESTAMP, _STEP, _IS_NAN = (itemgetter(i) for i in (1, 2, 3, 4, 5))


def encode_metric_rows(rows: Sequence[MetricRow]) -> dict[str, list[Any]]:
    """Stored-form rows of one run as the columnar ``metrics`` of a log-batch body.

    Example:
        >>> encode_metric_rows([("r" * 32, "acc", 0.5, 7, 2, 0)])
        {'keys': ['acc'], 'values': [0.5], 'steps': [2], 'timestamps': [7]}
    """
    # One C-level pass per column (map + itemgetter): no Python frame per point, and no
    # tuple per row as transposing with zip(*rows) would build.
    values: list[Any] = list(map(_VALUE, rows))
    if any(map(_IS_NAN, rows)):
        for i, row in enumerate(rows):
            if row[5]:
                values[i] = NAN
    return {
        "keys": list(map(_KEY, rows)),
        "values": values,
        "steps": list(map(_STEP, rows)),
        "timestamps": list(map(_TIMESTAMP, rows)),
    }


def _bad(field: str, message: str) -> InvalidInput:
    return InvalidInput(
        f"{field}: {message}",
        field=field,
        hint='send numbers, or "NaN", "Infinity", "-Infinity" for the values JSON cannot spell',
    )


def _stored_value(value: Any, field: str) -> tuple[float, int]:
    kind = type(value)
    if kind is float:
        if value - value == 0.0:
            return value, 0
        if math.isnan(value):
            return 0.0, 1
        return (MAX_FLOAT if value > 0 else -MAX_FLOAT), 0
    if kind is int:
        try:
            return float(value), 0
        except OverflowError:
            raise _bad(field, f"{value} is too large for a float") from None
    if kind is str and value in _SPECIAL:
        return _SPECIAL[value]
    raise _bad(field, f"{value!r} is not a number")


def _int(value: Any, field: str) -> int:
    if type(value) is int and MIN_INT64 <= value <= MAX_INT64:
        return int(value)
    if type(value) is int:
        raise _out_of_range(field, str(value))
    if type(value) is float and value.is_integer() and abs(value) >= 2.0**63:
        # orjson reads an integer beyond 64 bits as a float (-2**63 - 1 rounds to -2**63,
        # whose own literal orjson would have read as an int): it was sent as an integer,
        # or as a float no 64-bit column holds, so say that, not "is not an integer".
        raise _out_of_range(field, f"about {value:.4g}")
    raise InvalidInput(f"{field}: {value!r} is not an integer", field=field)


def _out_of_range(field: str, shown: str) -> InvalidInput:
    return InvalidInput(
        f"{field}: {shown} is out of the 64-bit integer range",
        field=field,
        hint="send steps and timestamps between -2**63 and 2**63 - 1",
    )


def _fits(column: list[int]) -> bool:
    """Whether no int of ``column`` is past 2**63 - 1 (one pass in C).

    orjson reads an integer below -2**63 (or past 2**64 - 1) as a float, which the type
    checks send to the point-by-point pass; only 2**63 to 2**64 - 1 arrive as ints too
    large for the column. The store refuses any other value out of range all the same.
    """
    return not column or max(column) <= MAX_INT64


def _column(metrics: dict[str, Any], name: str, n: int, default: int) -> list[Any]:
    column = metrics.get(name)
    if column is None:
        return [default] * n
    if not isinstance(column, list) or len(column) != n:
        raise InvalidInput(
            f"metrics.{name} must be a list as long as metrics.keys ({n})",
            field=f"metrics.{name}",
        )
    return column


def decode_metrics(raw: Any, run_id: str, now: int) -> list[MetricRow]:
    """The stored-form rows of a log-batch ``metrics`` value, every point checked.

    Raises :class:`InvalidInput` naming the first bad point, e.g. ``metrics.values[3]``.

    Example:
        >>> decode_metrics([["loss", 0.5, 2]], "r" * 32, now=9)[0][2:]
        (0.5, 9, 2, 0)
    """
    if raw is None:
        return []
    checked: set[str] = set()
    rows: list[MetricRow] = []
    append = rows.append
    if isinstance(raw, dict):
        unknown = set(raw) - {"keys", "values", "steps", "timestamps"}
        if unknown:
            raise InvalidInput(
                f"metrics has unknown field(s) {some_names(unknown)}",
                field="metrics",
                hint="columns are keys, values, steps and timestamps",
            )
        keys = raw.get("keys")
        if not isinstance(keys, list):
            raise InvalidInput("metrics.keys must be a list of metric keys", field="metrics.keys")
        n = len(keys)
        _check_size(n)
        if "values" not in raw:
            raise InvalidInput("metrics.values is required", field="metrics.values")
        values = _column(raw, "values", n, 0)
        steps = _column(raw, "steps", n, 0)
        stamps = _column(raw, "timestamps", n, now)
        fast = _fast_columns(keys, values, steps, stamps, run_id)
        if fast is not None:
            return fast
        for i, (key, value, step, ts) in enumerate(zip(keys, values, steps, stamps, strict=True)):
            # Not a str (a list, say) cannot be looked up in ``checked``: checked, and refused.
            if type(key) is not str or key not in checked:
                _check_metric_key(key, f"metrics.keys[{i}]")
                checked.add(key)
            v, nan = _stored_value(value, f"metrics.values[{i}]")
            if type(step) is not int or not MIN_INT64 <= step <= MAX_INT64:
                _int(step, f"metrics.steps[{i}]")
            if type(ts) is not int or not MIN_INT64 <= ts <= MAX_INT64:
                _int(ts, f"metrics.timestamps[{i}]")
            append((run_id, key, v, ts, step, nan))
        return rows
    if not isinstance(raw, list):
        raise InvalidInput(
            "metrics must be {keys, values, steps, timestamps} columns or a list of rows",
            field="metrics",
        )
    _check_size(len(raw))
    for i, row in enumerate(raw):
        if not isinstance(row, list) or not 2 <= len(row) <= 4:
            raise InvalidInput(
                f"metrics[{i}] must be [key, value, step, timestamp], got {row!r}",
                field=f"metrics[{i}]",
            )
        key = row[0]
        if type(key) is not str or key not in checked:
            _check_metric_key(key, f"metrics[{i}][0]")
            checked.add(key)
        v, nan = _stored_value(row[1], f"metrics[{i}][1]")
        step = _int(row[2], f"metrics[{i}][2]") if len(row) > 2 and row[2] is not None else 0
        ts = _int(row[3], f"metrics[{i}][3]") if len(row) > 3 and row[3] is not None else now
        append((run_id, key, v, ts, step, nan))
    return rows


def _fast_columns(
    keys: list[Any], values: list[Any], steps: list[Any], stamps: list[Any], run_id: str
) -> list[MetricRow] | None:
    """The rows when every value is a JSON number and every step and timestamp an int.

    The checks run over whole columns in C (``map(type, ...)``, ``max``); a JSON
    number is always finite, since NaN and the infinities travel as strings. None sends the
    caller to the point-by-point path, which names the first bad point.
    """
    value_types = set(map(type, values))
    if not value_types <= {float, int} or set(map(type, steps)) - {int}:
        return None
    if set(map(type, stamps)) - {int}:
        return None
    if not (_fits(steps) and _fits(stamps)):
        return None
    if set(map(type, keys)) - {str}:
        return None  # before set(keys): a list among them is unhashable
    distinct = set(keys)
    try:
        for key in distinct:
            check_key(key, "metric")
    except InvalidInput:
        return None  # the slow path names the first point with this key
    if int in value_types:
        try:
            values = [float(v) for v in values]
        except OverflowError:
            return None
    return list(zip(repeat(run_id), keys, values, stamps, steps, repeat(0)))


def _check_size(n: int) -> None:
    if n > MAX_BATCH_POINTS:
        raise InvalidInput(
            f"a batch holds {n} metric points, over the limit of {MAX_BATCH_POINTS} "
            "(MAX_BATCH_POINTS)",
            field="metrics",
            hint="split the points into several batches",
        )


def _check_metric_key(key: Any, field: str) -> None:
    try:
        check_key(key, "metric")
    except InvalidInput as exc:
        raise InvalidInput(f"{field}: {exc.message}", field=field, hint=exc.hint) from None
