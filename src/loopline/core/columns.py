"""Facts about the database's column types that code outside the schema needs.

Importable without SQLAlchemy, so that a parser of ids and versions (the dataset catalog's,
say) does not load it.

Example:
    >>> MAX_INTEGER, integer_value("12"), integer_value(" 12")
    (2147483647, 12, None)
"""

from __future__ import annotations

#: The largest value an ``sa.Integer`` column holds on every backend (PostgreSQL's
#: ``integer`` is 32-bit): an id or version past it names nothing, and binding it would
#: make SQLite overflow or PostgreSQL refuse the comparison.
MAX_INTEGER = 2**31 - 1


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
