"""Facts about columns: the database's types that code outside the schema needs, and the
names of the tables users give (:func:`duplicate_names`), and how a value of a column is
written as JSON (:func:`json_number`).

Importable without SQLAlchemy, so that a parser of ids and versions (the dataset catalog's,
say) does not load it.

Example:
    >>> MAX_INTEGER, integer_value("12"), integer_value(" 12")
    (2147483647, 12, None)
"""

from __future__ import annotations

import math
from collections.abc import Iterable

#: The largest value an ``sa.Integer`` column holds on every backend (PostgreSQL's
#: ``integer`` is 32-bit): an id or version past it names nothing, and binding it would
#: make SQLite overflow or PostgreSQL refuse the comparison.
MAX_INTEGER = 2**31 - 1

#: The longest request id a prediction is logged under and a label can name. Here, not in
#: :mod:`loopline.monitoring.wire`, so that the model server checks it without loading the
#: monitoring package.
MAX_REQUEST_ID_CHARS = 200


def integer_value(ref: object, low: int = 0) -> int | None:
    """``ref`` as a value of an ``sa.Integer`` column (an id, a version): an int, or a
    string of ASCII digits, from ``low`` to :data:`MAX_INTEGER`; else None.

    Strict on purpose: ``int()`` also takes ``" 3"``, ``"+3"``, ``"1_0"`` and other
    scripts' digits (``"٣"``), and would name a row nobody wrote; ``"²"`` passes
    ``isdigit()`` and fails ``int()``. Past the column's range a value names nothing, and
    SQLite could not bind it.

    Example:
        >>> integer_value("3"), integer_value(3), integer_value("0", low=1), integer_value(True)
        (3, 3, None, None)
    """
    if isinstance(ref, str) and ref.isascii() and ref.isdigit():
        ref = int(ref)
    if type(ref) is int and low <= ref <= MAX_INTEGER:
        return ref
    return None


def duplicate_names(names: Iterable[object]) -> list[str]:
    """The names given more than once (as text: ``1`` and ``"1"`` are one name), sorted.

    Example:
        >>> duplicate_names(["a", "b", "a", 1, "1"])
        ['1', 'a']
    """
    seen: set[str] = set()
    twice: set[str] = set()
    for name in map(str, names):
        (twice if name in seen else seen).add(name)
    return sorted(twice)


def json_number(value: object) -> object:
    """``value`` as JSON can hold it: a float infinity becomes the text ``"inf"`` or
    ``"-inf"`` and NaN None (JSON has no form of them; orjson would write ``null`` for
    both, and a column that gained infinities would look like one that lost its values).
    Anything else is returned as it is.

    Example:
        >>> json_number(float("-inf")), json_number(float("nan")), json_number(2.5)
        ('-inf', None, 2.5)
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value
