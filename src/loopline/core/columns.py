"""Facts about the database's column types that code outside the schema needs.

Importable without SQLAlchemy, so that a parser of ids and versions (the dataset catalog's,
say) does not load it.

Example:
    >>> MAX_INTEGER
    2147483647
"""

from __future__ import annotations

#: The largest value an ``sa.Integer`` column holds on every backend (PostgreSQL's
#: ``integer`` is 32-bit): an id or version past it names nothing, and binding it would
#: make SQLite overflow or PostgreSQL refuse the comparison.
MAX_INTEGER = 2**31 - 1
