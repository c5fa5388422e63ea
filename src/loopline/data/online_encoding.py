"""The online store's text form of entity keys and packed form of feature rows.

The stores of :mod:`loopline.data.online` keep bytes under text keys and know nothing of
features: this module makes both. A key is the text of its value (a tuple's parts joined
by :data:`KEY_SEP`, escaped; a whole float as an integer, as the training-set join
matches them); a row is orjson of ``{feature: value}``, or, when it holds inf, -inf, NaN
or bytes (which JSON has no form of), a JSON array that :func:`_unpack` reads back. Pure
functions with no store or context, kept apart so both the writer
(:func:`~loopline.data.features.materialize`) and the reader
(:func:`~loopline.data.features.get_online`) share one copy.

Example:
    >>> encode_key(("eu", 7.0)) == "eu\\x1f7"
    True
"""

from __future__ import annotations

import base64
import datetime as dt
import itertools
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

import numpy as np
import orjson

KEY_SEP = "\x1f"
_ESC = "\x1e"


def _key_part(value: object) -> str:
    """One key value's text: a whole float as an integer, since the join matches 1.0 to 1
    (a key column with a missing value is float64 in pandas)."""
    if isinstance(value, float | np.floating) and value.is_integer():
        return str(int(value))
    return str(value)


def _joined(parts: Iterator[str]) -> str:
    """Key parts joined by KEY_SEP, escaped so that no two keys share a text: a part holding
    KEY_SEP (or the escape character) would otherwise read as two parts."""
    return KEY_SEP.join(
        p.replace(_ESC, _ESC + "0").replace(KEY_SEP, _ESC + "1") if _ESC in p or KEY_SEP in p else p
        for p in parts
    )


def encode_key(key: object) -> str:
    """The online store's text form of an entity key (a tuple for several key columns).

    Example:
        >>> encode_key(42), encode_key(42.0), encode_key(("eu", 7)) == "eu\\x1f7"
        ('42', '42', True)
    """
    if isinstance(key, tuple | list):
        return _joined(_key_part(k) for k in key)
    return _key_part(key)


def iso_duration(value: dt.timedelta) -> str:
    """A duration as ISO 8601 text, the form of ``pd.Timedelta.isoformat`` (a negative one
    with a leading ``-``); ``pd.Timedelta(text)`` reads it back.

    Example:
        >>> iso_duration(dt.timedelta(days=1, seconds=5, microseconds=500_000))
        'P1DT0H0M5.5S'
        >>> iso_duration(-dt.timedelta(seconds=1))
        '-P0DT0H0M1S'
    """
    us = value // dt.timedelta(microseconds=1)
    sign, us = ("-", -us) if us < 0 else ("", us)
    days, us = divmod(us, 86_400_000_000)
    seconds, fraction = divmod(us, 1_000_000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    digits = f".{fraction:06d}".rstrip("0") if fraction else ""
    return f"{sign}P{days}DT{hours}H{minutes}M{seconds}{digits}S"


def _json_value(value: object) -> object:
    """What orjson writes for a value it has no JSON form of (called for those only)."""
    if isinstance(value, Decimal):  # one nested in a list or struct: a float, as at the top
        return float(value)
    if isinstance(value, dt.timedelta):
        return iso_duration(value)
    return str(value)


def _special(value: Any, path: list[Any], odd: list[list[Any]]) -> Any:
    """``value`` with each value JSON has no form of replaced by None, noted in ``odd`` as
    ``[path, kind, text]``: an inf, -inf or NaN (kind ``"f"``, text ``'inf'``...) and
    bytes (kind ``"b"``, text base64)."""
    if isinstance(value, float):
        if value - value == 0:  # finite (inf - inf and NaN - NaN are NaN)
            return value
        odd.append([path, "f", repr(value)])  # 'inf', '-inf', 'nan': float() reads them
        return None
    if isinstance(value, bytes | bytearray):
        odd.append([path, "b", base64.b64encode(value).decode()])
        return None
    if isinstance(value, list | tuple):
        return [_special(v, [*path, i], odd) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _special(v, [*path, k], odd) for k, v in value.items()}
    return value


def _pack_special(row: dict[str, Any]) -> bytes:
    """A row holding inf, -inf, NaN or bytes, which JSON has no form of (orjson writes
    null for the first and refuses bytes): ``[row with nulls there, [[path, kind, text],
    ...]]``. A plain row is a JSON object, so the first byte tells the two apart
    (:func:`_unpack`)."""
    odd: list[list[Any]] = []
    clean = {k: _special(v, [k], odd) for k, v in row.items()}
    return orjson.dumps([clean, odd], default=_json_value)


def _unpack(packed: bytes) -> dict[str, Any]:
    """A row written by :func:`_pack_special`, with its floats and bytes back."""
    row, odd = orjson.loads(packed)
    for path, kind, text in odd:
        target = row
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = float(text) if kind == "f" else base64.b64decode(text)
    result: dict[str, Any] = row
    return result


def _packed_rows(
    rows: Iterator[tuple[Any, ...]], n_keys: int, features: Sequence[str]
) -> Iterator[tuple[str, bytes]]:
    """``(key text, packed row)`` of :func:`pit_join.latest_rows`'s tuples."""
    dumps, names = orjson.dumps, tuple(features)
    rows = iter(rows)
    first = next(rows, None)
    if first is None:
        return
    # A column's values all have one type: only float keys need _key_part's care.
    part: Any = _key_part if any(isinstance(k, float) for k in first[:n_keys]) else str
    for row in itertools.chain([first], rows):
        key = part(row[0]) if n_keys == 1 else _joined(map(part, row[:n_keys]))
        values = dict(zip(names, row[n_keys:-1], strict=True))
        if row[-1]:  # may hold inf, -inf, NaN or bytes
            yield key, _pack_special(values)
        else:
            yield key, dumps(values, default=_json_value)
