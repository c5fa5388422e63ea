"""What a model signature is made of: the column types, one input column
(:class:`ColumnSpec`, and its JSON form) and the output (:class:`OutputSpec`).

Apart from :mod:`loopline.training.signature` because the value checks
(:mod:`.signature_checks`) and the category lookups (:mod:`.signature_categories`)
describe columns too, and the signature imports both: this module imports neither.

Example:
    >>> ColumnSpec("plan", "category", categories=("free", "pro")).type in COLUMN_TYPES
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

ColumnType = Literal["int", "float", "bool", "string", "category"]
COLUMN_TYPES: tuple[str, ...] = get_args(ColumnType)
#: The values a ``category`` column's categories may be (JSON scalars, as pandas holds them).
Category = str | int | float | bool


@dataclass(frozen=True)
class ColumnSpec:
    """One input column: its name, type, whether NaN/None is allowed and, for a
    ``category`` column, its categories in order (the codes a model was trained on).

    Example:
        >>> ColumnSpec("age", "int").nullable
        False
        >>> ColumnSpec("plan", "category", categories=("free", "pro")).categories
        ('free', 'pro')
    """

    name: str
    type: ColumnType
    nullable: bool = False
    categories: tuple[Category, ...] | None = None


@dataclass(frozen=True)
class OutputSpec:
    """What the model returns per row: a type and how many values (1 for a label/score).

    Example:
        >>> OutputSpec("int").width
        1
    """

    type: ColumnType
    width: int = 1


def _column_dict(c: ColumnSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"name": c.name, "type": c.type, "nullable": c.nullable}
    if c.categories is not None:
        out["categories"] = list(c.categories)
    return out
