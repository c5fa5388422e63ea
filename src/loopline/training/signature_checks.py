"""How a value, or a column of values, is checked against a column type, and the
:class:`~loopline.errors.InvalidInput` each violation raises (naming the column, the row
and what was expected).

Holds the ranges a column takes (:data:`INT_MIN`, :data:`INT_MAX`,
:data:`INT_EXACT_FLOAT`), the type tables of the one-row fast path, the checks of whole
arrays and frames (infinities, integers out of range or not integral), and the column type
of a value, of a pandas Series and of an example's column.
:class:`~loopline.training.signature.ModelSignature` runs them per row, per array and per
frame, and infers types with them; they are apart from it so that every path raises the
same message for the same violation.

Example:
    >>> _value_type(3), _value_type(2.5), _value_type("pro"), _value_type(None)
    ('int', 'float', 'string', None)
"""

from __future__ import annotations

import math
import numbers
from typing import Any, cast

import numpy as np

from loopline.errors import InvalidInput
from loopline.training.signature_columns import COLUMN_TYPES, ColumnType

_INT_TYPES = frozenset(
    {int, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64}
)
_FLOAT_TYPES = frozenset({float, np.float16, np.float32, np.float64})
_BOOL_TYPES = frozenset({bool, np.bool_})
_STR_TYPES = frozenset({str, np.str_})
# Python value types each column type accepts without a closer look.
_ACCEPTS: dict[str, frozenset[type]] = {
    "float": _FLOAT_TYPES | _INT_TYPES,
    "int": _INT_TYPES | _FLOAT_TYPES,  # a float is accepted when it is integral (JSON 3.0)
    "bool": _BOOL_TYPES,
    "string": _STR_TYPES,
    "category": frozenset(),  # every value is looked up among the column's categories
}
_TEXT_TYPES = ("string", "category")  # the types that make a signature's rows non-numeric
_HINT = "send the columns and types of the model's signature (see `loopline models show`)"
_INF = math.inf
#: The range of an ``int`` column (int64), as ints and as the floats that bound it.
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
_INT_LOW, _INT_HIGH = float(INT_MIN), float(2**63)  # a float v fits when _INT_LOW <= v < _INT_HIGH
_INT_TOP = float(np.nextafter(_INT_HIGH, 0.0))  # the largest float64 that is an int64
#: A float is a value of an ``int`` column only below this magnitude (2**53): from there on
#: floats no longer hold every integer, so one may stand for another integer than was sent -
#: orjson reads an integer beyond 64 bits as the float nearest to it (-2**63 - 1 became
#: -2**63, in range), and 9007199254740993 written as 9007199254740993.0 is the float 2**53.
INT_EXACT_FLOAT = 2**53
_EXACT = float(INT_EXACT_FLOAT)
#: The largest finite float: an int beyond it cannot feed a ``float`` column.
_FLOAT_MAX = float(np.finfo(np.float64).max)


def _is_dataframe(obj: object) -> bool:
    return type(obj).__name__ == "DataFrame" and type(obj).__module__.startswith("pandas")


def _no_rows() -> InvalidInput:
    return InvalidInput("the input has no rows", field="input", hint="send at least one row")


def _null(name: str, row: int) -> InvalidInput:
    return InvalidInput(
        f"column {name!r} is NaN/null in row {row}, but the signature does not allow nulls",
        field=name,
        hint="fill the value, or log the model with an example that holds nulls in this "
        "column (or infer_signature(..., nullable=[...]))",
    )


def _wrong(name: str, kind: str, value: Any, row: int) -> InvalidInput:
    return InvalidInput(
        f"column {name!r} expects {kind}, got {type(value).__name__} {value!r} (row {row})",
        field=name,
        hint=_HINT,
    )


def _infinite(name: str, value: Any, row: int) -> InvalidInput:
    return InvalidInput(
        f"column {name!r} is {value!r} in row {row}; the model takes finite numbers only",
        field=name,
        hint="send a finite number (or null, where the signature allows nulls)",
    )


def _out_of_range(name: str, kind: str, value: Any, row: int) -> InvalidInput:
    shown = repr(value)
    if len(shown) > 32:  # a 400-digit integer helps nobody
        shown = f"{shown[:12]}... ({len(shown)} characters)"
    limits = f"{INT_MIN}..{INT_MAX}" if kind == "int" else "finite 64-bit floats"
    return InvalidInput(
        f"column {name!r} ({kind}) is out of range in row {row}: {shown}; it takes {limits}",
        field=name,
        hint="send a value within that range",
    )


def _inexact(name: str, value: float, row: int) -> InvalidInput:
    """A float for an ``int`` column from :data:`INT_EXACT_FLOAT` on: which integer it
    stands for is not known (see there)."""
    return InvalidInput(
        f"column {name!r} (int) is out of range in row {row}: {value!r}; it takes integers "
        f"from {INT_MIN} to {INT_MAX}, and a value that arrives as a float (a number with a "
        "fraction or an exponent, or an integer beyond 64 bits) only below 2**53 "
        f"({INT_EXACT_FLOAT}) in magnitude, where a float stands for one integer",
        field=name,
        hint="send the integer in digits, without a fraction or an exponent, within that range",
    )


def _py(value: Any) -> Any:
    """A numpy scalar as the Python value (for messages: 'abc', not np.str_('abc'))."""
    return value.item() if isinstance(value, np.generic) else value


def _row_labels(df: Any) -> Any:
    """Position -> the row number to report: a RangeIndex's label (a chunk of a file scored in
    chunks is indexed from its first row), else the position."""
    import pandas as pd

    index = df.index
    if isinstance(index, pd.RangeIndex):
        return lambda pos: int(index[pos])  # type: ignore[call-overload]
    return int


def _check_integral(
    name: str, kind: str, values: np.ndarray[Any, Any], mask: Any, row_of: Any = int
) -> None:
    """Non-integral (or, for bool, non-0/1) values among ``values[mask]``, named by row."""
    positions = np.flatnonzero(mask)
    checked = values[positions].astype(np.float64)
    finite = np.isfinite(checked)
    if not finite.all():  # inf is not "fractional": say what it is
        at = int(positions[int(np.argmax(~finite))])
        raise _infinite(name, _py(values[at]), row_of(at))
    bad = (checked != 0) & (checked != 1) if kind == "bool" else np.mod(checked, 1) != 0
    if bad.any():
        at = int(positions[int(np.argmax(bad))])
        raise _wrong(name, kind, _py(values[at]), row_of(at))


def _check_numbers(
    name: str, kind: str, values: np.ndarray[Any, Any], row_of: Any, nulls: Any = None
) -> None:
    """+-inf in a numeric column, and values an int column (int64) cannot hold."""
    dtype = values.dtype.kind
    if dtype in "ib":
        return  # fits int64 and float64 by construction
    if dtype == "u":
        bad = values > INT_MAX if kind == "int" else np.zeros(len(values), dtype=bool)
    elif dtype == "f":
        inf = np.isinf(values)
        if inf.any():
            at = int(np.argmax(inf))
            raise _infinite(name, _py(values[at]), row_of(at))
        if kind != "int":
            return
        bad = (values < _INT_LOW) | (values >= _INT_HIGH)  # NaN compares False: not bad
    else:  # object or an extension type: one Python value at a time (only on a frame)
        for at, v in enumerate(values):
            if (nulls is not None and nulls[at]) or isinstance(v, bool | np.bool_):
                continue
            if isinstance(v, numbers.Integral):
                n = int(v)
                fits = INT_MIN <= n <= INT_MAX if kind == "int" else abs(n) <= _FLOAT_MAX
                if not fits:
                    raise _out_of_range(name, kind, v, row_of(at))
            elif isinstance(v, numbers.Real):
                f = float(v)
                if f in (_INF, -_INF):
                    raise _infinite(name, v, row_of(at))
                if kind == "int" and not _INT_LOW <= f < _INT_HIGH:
                    raise _out_of_range(name, kind, v, row_of(at))
        return
    if bad.any():
        at = int(np.argmax(bad))
        raise _out_of_range(name, kind, _py(values[at]), row_of(at))


def _first_offending(values: np.ndarray[Any, Any], nulls: Any, kind: str) -> int:
    """The position of the first value a ``kind`` column cannot take.

    A number written as text counts only when nothing else is wrong: a CSV column with one
    stray word is read as text throughout, and the word is what the user must fix.
    """
    allowed = ("int", "float") if kind in ("int", "float") else (kind,)
    numeric_text: int | None = None
    for at, v in enumerate(values):
        if nulls[at] or _value_type(v) in allowed:
            continue
        if kind in allowed[:2] and kind != "bool" and isinstance(v, str) and _is_number(v):
            numeric_text = at if numeric_text is None else numeric_text
            continue
        return at
    return numeric_text if numeric_text is not None else int(np.argmax(~np.asarray(nulls)))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _slow_value(name: str, kind: str, nullable: bool, v: Any, r: int) -> Any:
    """Values of types outside the fast tables: other numeric scalars, pandas NA."""
    if kind != "string" and not isinstance(v, bool | np.bool_) and isinstance(v, numbers.Real):
        try:
            f = float(v)
        except OverflowError:  # e.g. a huge Fraction
            raise _out_of_range(name, kind, v, r) from None
        if f != f:
            if not nullable:
                raise _null(name, r)
            return f
        if f in (_INF, -_INF):
            raise _infinite(name, v, r)
        if kind == "float":
            return v
        if kind == "int" and f.is_integer():
            if not _INT_LOW <= f < _INT_HIGH:
                raise _out_of_range(name, kind, v, r)
            return v
    if v is not None and type(v).__name__ in ("NAType", "NaTType"):
        if not nullable:
            raise _null(name, r)
        return math.nan if kind != "string" else None
    raise _wrong(name, kind, v, r)


def _value_type(v: Any) -> str | None:
    """The column type of one Python value; None for a null."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, bool | np.bool_):
        return "bool"
    if isinstance(v, numbers.Integral):
        return "int"
    if isinstance(v, numbers.Real):
        return "float"
    if isinstance(v, str):
        return "string"
    return "?" + type(v).__name__


def _series_type(series: Any) -> str | None:
    """The column type of a pandas Series; None when it holds only nulls."""
    import pandas as pd

    kind = pd.api.types.infer_dtype(series, skipna=True)
    if kind == "categorical":
        kind = pd.api.types.infer_dtype(series.cat.categories, skipna=True)
    mapping = {
        "integer": "int",
        "floating": "float",
        "mixed-integer-float": "float",
        "boolean": "bool",
        "string": "string",
        "empty": None,
    }
    if kind in mapping:
        return mapping[kind]
    return "?" + kind


def _merge(name: str, a: str | None, b: str | None) -> str | None:
    if a is None:
        return b
    if b is None or a == b:
        return a
    if {a, b} == {"int", "float"}:
        return "float"
    raise InvalidInput(
        f"column {name!r} mixes {a} and {b} values in the example",
        field=name,
        hint="give each column one type",
    )


def _checked_type(name: str, found: str | None) -> ColumnType:
    if found is None:
        raise InvalidInput(
            f"column {name!r} holds only nulls in the example, so its type is unknown",
            field=name,
            hint="give an example with a value in every column, or a signature",
        )
    if found not in COLUMN_TYPES:
        raise InvalidInput(
            f"column {name!r} has unsupported values ({found.lstrip('?')})",
            field=name,
            hint="convert it to int, float, bool or string before training",
        )
    return cast(ColumnType, found)
