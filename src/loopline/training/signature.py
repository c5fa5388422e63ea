"""Model signatures: the columns a model takes, their types and nullability, and its output.

A signature is inferred from an input example (a pandas DataFrame or a list of row dicts):
the columns in order, each typed ``int``, ``float``, ``bool``, ``string`` or ``category``,
and allowed to hold NaN/None only when the example holds one (or when the caller says so
with ``nullable=``). The output type comes from a prediction on the example.

A pandas categorical column (what LightGBM and XGBoost with ``enable_categorical=True``
train on) is a ``category`` column that records its categories, in order: input must be
one of them, and the model is given the column back as a categorical of exactly those
categories (a JSON client sends the values, e.g. ``"pro"``).

:meth:`ModelSignature.validate` checks input at predict time and returns it as a 2-D numpy
array in signature order; every violation is an :class:`~loopline.errors.InvalidInput`
naming the column and what was expected. One row given as a list of one dict takes a fast
path with no pandas (the model server validates each request with it).

Example:
    >>> sig = infer_signature([{"age": 31, "income": 52.5, "plan": "pro"}])
    >>> [(c.name, c.type, c.nullable) for c in sig.inputs]
    [('age', 'int', False), ('income', 'float', False), ('plan', 'string', False)]
    >>> sig.validate([{"age": 40, "income": 61.0, "plan": "free"}]).tolist()
    [[40, 61.0, 'free']]
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast, get_args

import numpy as np
import orjson

from loopline.core.columns import duplicate_names
from loopline.errors import InvalidInput

if TYPE_CHECKING:
    import pandas as pd

ColumnType = Literal["int", "float", "bool", "string", "category"]
COLUMN_TYPES: tuple[str, ...] = get_args(ColumnType)
#: The values a ``category`` column's categories may be (JSON scalars, as pandas holds them).
Category = str | int | float | bool

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


@dataclass(frozen=True)
class ModelSignature:
    """The columns a model takes (in order) and what it returns.

    Example:
        >>> sig = ModelSignature((ColumnSpec("x", "float"),), OutputSpec("float"))
        >>> sig.validate([{"x": 1.5}]).shape
        (1, 1)
    """

    inputs: tuple[ColumnSpec, ...]
    output: OutputSpec | None = None
    _index: dict[str, int] = field(init=False, repr=False, compare=False)
    _plan: tuple[tuple[str, str, bool, frozenset[type]], ...] = field(
        init=False, repr=False, compare=False
    )
    _numeric: bool = field(init=False, repr=False, compare=False)
    # category column -> {membership key: the category}, see _category_key.
    _lookup: dict[str, dict[Any, Category]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.inputs:
            raise InvalidInput("a signature needs at least one input column", field="signature")
        names = [c.name for c in self.inputs]
        dupes = duplicate_names(names)
        if dupes:
            raise InvalidInput(f"signature has duplicate columns {dupes}", field="signature")
        for c in self.inputs:
            if c.type not in COLUMN_TYPES:
                raise InvalidInput(
                    f"column {c.name!r} has type {c.type!r}",
                    field=c.name,
                    hint=f"use one of {', '.join(COLUMN_TYPES)}",
                )
        lookup = {c.name: _category_lookup(c) for c in self.inputs if c.type == "category"}
        for c in self.inputs:
            if c.type != "category" and c.categories is not None:
                raise InvalidInput(
                    f"column {c.name!r} is {c.type}, so it cannot have categories",
                    field=c.name,
                    hint="give categories to category columns only",
                )
        object.__setattr__(self, "_index", {n: i for i, n in enumerate(names)})
        plan = tuple((c.name, c.type, c.nullable, _ACCEPTS[c.type]) for c in self.inputs)
        object.__setattr__(self, "_plan", plan)
        object.__setattr__(self, "_numeric", all(c.type not in _TEXT_TYPES for c in self.inputs))
        object.__setattr__(self, "_lookup", lookup)

    @property
    def names(self) -> list[str]:
        """The input column names, in order."""
        return [c.name for c in self.inputs]

    @property
    def numeric(self) -> bool:
        """Whether every column is int, float or bool: rows are then a float64 array (a
        model that needs ``string`` or ``category`` columns takes a DataFrame).

        Example:
            >>> infer_signature([{"x": 1.0, "ok": True}]).numeric
            True
        """
        return self._numeric

    # -- serialisation --------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data.

        Example:
            >>> ModelSignature((ColumnSpec("x", "float"),)).to_dict()["inputs"][0]["type"]
            'float'
        """
        return {
            "inputs": [_column_dict(c) for c in self.inputs],
            "output": None
            if self.output is None
            else {"type": self.output.type, "width": self.output.width},
        }

    def to_json(self) -> str:
        """The signature as JSON text (what the registry stores).

        Example:
            >>> ModelSignature((ColumnSpec("x", "bool"),)).to_json()[:10]
            '{"inputs":'
        """
        return orjson.dumps(self.to_dict()).decode()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSignature:
        """Rebuild a signature from :meth:`to_dict` output; InvalidInput when malformed.

        Example:
            >>> ModelSignature.from_dict({"inputs": [{"name": "x", "type": "int"}]}).names
            ['x']
        """
        try:
            inputs = tuple(
                ColumnSpec(
                    str(c["name"]),
                    cast(ColumnType, c["type"]),
                    bool(c.get("nullable", False)),
                    None if c.get("categories") is None else tuple(c["categories"]),
                )
                for c in data["inputs"]
            )
            out = data.get("output")
            output = (
                None
                if not out
                else OutputSpec(cast(ColumnType, out["type"]), int(out.get("width", 1)))
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(
                f"malformed signature: {exc!r}",
                field="signature",
                hint="build it with infer_signature(example)",
            ) from exc
        return cls(inputs, output)

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelSignature:
        """Rebuild a signature from :meth:`to_json` text.

        Example:
            >>> s = ModelSignature((ColumnSpec("x", "int"),))
            >>> ModelSignature.from_json(s.to_json()) == s
            True
        """
        return cls.from_dict(orjson.loads(text))

    # -- validation -----------------------------------------------------------------------

    def validate(self, rows: Any) -> np.ndarray[Any, Any]:
        """Check ``rows`` against the signature; return them as a 2-D array in column order.

        ``rows``: a pandas DataFrame, a list of row dicts (one dict is one row), or a numpy
        array (2-D, or 1-D for one row) whose columns are in signature order. The array is
        float64 when every column is numeric or bool, else object. A missing or extra
        column, a wrong feature count, a wrong type, or NaN/None where the column does not
        allow it raises :class:`InvalidInput` naming the column.

        Example:
            >>> sig = infer_signature([{"a": 1.0, "b": 2}])
            >>> sig.validate([{"a": 0.5, "b": 3}]).tolist()
            [[0.5, 3.0]]
        """
        if isinstance(rows, Mapping):
            rows = [rows]
        if isinstance(rows, list):
            if len(rows) == 1 and isinstance(rows[0], Mapping):
                values = self._check_row(rows[0], 0)
                dtype = np.float64 if self._numeric else object
                return np.array([values], dtype=dtype)
            return self._from_records(rows)
        if isinstance(rows, np.ndarray):
            return self._from_array(rows)
        if _is_dataframe(rows):
            return self._from_frame(rows)
        raise InvalidInput(
            f"model input must be a DataFrame, a list of row dicts or a numpy array, "
            f"got {type(rows).__name__}",
            field="input",
            hint=_HINT,
        )

    def to_frame(self, rows: Any) -> pd.DataFrame:
        """Validate ``rows`` and return them as a DataFrame in signature order and types.

        Example:
            >>> infer_signature([{"a": 1}]).to_frame([{"a": 2}]).dtypes["a"].name
            'int64'
        """
        import pandas as pd

        if _is_dataframe(rows):
            self._from_frame(rows)
            frame: pd.DataFrame = rows[self.names]
            recode = [
                c for c in self.inputs if c.type == "category" and not _same_categories(frame, c)
            ]
            if recode:
                frame = frame.copy()
                for c in recode:
                    frame[c.name] = self._categorical(c, frame[c.name].to_numpy(dtype=object))
            return frame
        arr = self.validate(rows)
        data: dict[str, Any] = {}
        for i, c in enumerate(self.inputs):
            col = arr[:, i]
            if c.type == "float" or (c.type == "int" and c.nullable):
                data[c.name] = col.astype(np.float64)
            elif c.type == "int":
                if col.dtype == np.float64:
                    # A numeric model's rows are float64: ints within 512 of INT_MAX (valid)
                    # round up to 2**63, one past int64; they go back to the nearest int64.
                    col = np.minimum(col, _INT_TOP)
                data[c.name] = col.astype(np.int64)
            elif c.type == "bool":
                data[c.name] = col.astype(bool) if not c.nullable else col.astype(object)
            elif c.type == "category":
                data[c.name] = self._categorical(c, col)
            else:
                data[c.name] = col.astype(object)
        return pd.DataFrame(data, columns=self.names)

    def _categorical(self, c: ColumnSpec, values: Any) -> pd.Categorical:
        """Validated values of category column ``c`` as a categorical of its categories."""
        import pandas as pd

        lookup = self._lookup[c.name]
        canonical = [None if (k := _category_key(v)) is None else lookup[k] for v in values]
        return pd.Categorical(canonical, categories=list(c.categories or ()))

    def _category(self, name: str, nullable: bool, v: Any, r: int) -> Any:
        """The category ``v`` stands for (``3.0`` is the category ``3``), else InvalidInput."""
        key = _category_key(v)
        if key is None:
            if not nullable:
                raise _null(name, r)
            return None
        found = self._lookup[name].get(key, _NOT_FOUND)
        if found is _NOT_FOUND:
            raise _not_a_category(name, list(self._lookup[name].values()), v, r)
        return found

    def _check_row(self, row: Mapping[str, Any], r: int) -> list[Any]:
        values: list[Any] = []
        append = values.append
        numeric = self._numeric
        for name, kind, nullable, accepts in self._plan:
            try:
                v = row[name]
            except KeyError:
                raise self._missing(row, name) from None
            t = type(v)
            if t in accepts:
                if t in _FLOAT_TYPES:
                    # One chained comparison on the hot path catches NaN and +-inf alike.
                    if not -_INF < v < _INF:
                        if v == v:
                            raise _infinite(name, v, r)
                        if not nullable:
                            raise _null(name, r)
                    elif kind == "int":
                        if not float(v).is_integer():
                            raise _wrong(name, kind, v, r)
                        if not -_EXACT < v < _EXACT:
                            raise _inexact(name, v, r)
                        v = int(v)  # the column's type: 3.0 is the int 3
                elif kind == "int":
                    if not INT_MIN <= v <= INT_MAX:
                        raise _out_of_range(name, kind, v, r)
                elif t is int:
                    if not -_FLOAT_MAX <= v <= _FLOAT_MAX:  # float(v) would overflow
                        raise _out_of_range(name, kind, v, r)
                    # The column's type: the float the model takes, also in an object row
                    # (2**63 stayed an int there, which no int64 column could hold).
                    v = float(v)
                append(v)
            elif v is None:
                if not nullable:
                    raise _null(name, r)
                append(math.nan if numeric else None)
            elif kind == "category":
                append(self._category(name, nullable, v, r))
            else:
                append(_slow_value(name, kind, nullable, v, r))
        if len(row) != len(self._plan):
            extra = [k for k in row if k not in self._index]
            raise InvalidInput(
                f"unexpected column {extra[0]!r} (row {r}); the model takes "
                f"{len(self._plan)} columns: {', '.join(self.names)}",
                field=str(extra[0]),
                hint=_HINT,
            )
        return values

    def _missing(self, row: Mapping[str, Any], name: str) -> InvalidInput:
        return InvalidInput(
            f"missing column {name!r}: expected {len(self._plan)} columns "
            f"({', '.join(self.names)}), got {len(row)} ({', '.join(map(str, row))})",
            field=name,
            hint=_HINT,
        )

    def _from_records(self, rows: Sequence[Any]) -> np.ndarray[Any, Any]:
        if not rows:
            raise _no_rows()
        out = []
        for r, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise InvalidInput(
                    f"row {r} is a {type(row).__name__}, not a dict", field="input", hint=_HINT
                )
            out.append(self._check_row(row, r))
        dtype = np.float64 if self._numeric else object
        return np.array(out, dtype=dtype).reshape(len(out), len(self._plan))

    def _from_array(self, arr: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        if arr.ndim == 1:
            arr = arr.reshape(1, -1)
        n = len(self._plan)
        if arr.ndim != 2 or arr.shape[1] != n:
            got = arr.shape[1] if arr.ndim == 2 else f"an array of shape {arr.shape}"
            raise InvalidInput(
                f"expected {n} features ({', '.join(self.names)}), got {got}",
                field="input",
                hint=_HINT,
            )
        if arr.shape[0] == 0:
            raise _no_rows()
        if arr.dtype.kind == "O" or (self._lookup and arr.dtype.kind in "biuf"):
            # Numbers may be categories: each is looked up, one row at a time.
            return self._from_records([dict(zip(self.names, row, strict=True)) for row in arr])
        if arr.dtype.kind not in "biuf":
            raise InvalidInput(
                f"an array of dtype {arr.dtype} cannot feed this model",
                field="input",
                hint="pass a numeric array or a DataFrame",
            )
        for j, (name, kind, nullable, _) in enumerate(self._plan):
            col = arr[:, j]
            if kind == "string":
                raise _wrong(name, kind, col[0] if len(col) else 0.0, 0)
            if arr.dtype.kind == "f":
                nan = np.isnan(col)
                if not nullable and nan.any():
                    raise _null(name, int(np.argmax(nan)))
                if kind != "float":
                    _check_integral(name, kind, col, ~nan)
            _check_numbers(name, kind, col, int)
        return arr if arr.dtype == np.float64 else arr.astype(np.float64)

    def _from_frame(self, df: Any) -> np.ndarray[Any, Any]:
        import pandas as pd

        if len(df) == 0:
            raise _no_rows()
        cols = [str(c) for c in df.columns]
        twice = duplicate_names(cols)
        if twice:  # df[name] would be a frame, not a column
            raise InvalidInput(
                f"column {twice[0]!r} appears more than once", field=twice[0], hint=_HINT
            )
        missing = [n for n in self.names if n not in cols]
        if missing:
            raise InvalidInput(
                f"missing column {missing[0]!r}: expected {len(self.names)} columns "
                f"({', '.join(self.names)}), got {len(cols)} ({', '.join(cols)})",
                field=missing[0],
                hint=_HINT,
            )
        extra = [c for c in cols if c not in self._index]
        if extra:
            raise InvalidInput(
                f"unexpected column {extra[0]!r}; the model takes {len(self.names)} columns: "
                f"{', '.join(self.names)}",
                field=extra[0],
                hint=_HINT,
            )
        row_of = _row_labels(df)
        for c in self.inputs:
            series = df[c.name]
            nulls = series.isna().to_numpy()
            if nulls.any() and not c.nullable:
                raise _null(c.name, row_of(int(np.argmax(nulls))))
            if c.type == "category":
                self._check_categories(c.name, series.to_numpy(dtype=object), nulls, row_of)
                continue
            found = _series_type(series)
            ok = found is None or found == c.type or (c.type == "float" and found == "int")
            if found in ("int", "float") and c.type in ("int", "float"):
                _check_numbers(c.name, c.type, series.to_numpy(), row_of, nulls)
            if not ok and c.type == "int" and found == "float":
                _check_integral(c.name, "int", series.to_numpy(), ~nulls, row_of)
                ok = True
            if not ok:
                values = series.to_numpy()
                at = _first_offending(values, nulls, c.type)
                error = _wrong(c.name, c.type, _py(values[at]), row_of(at))
                if isinstance(values[at], str) and _is_number(values[at]):
                    error.hint = (
                        "the column holds numbers as text: a CSV column with one value that "
                        "is not a number is read as text throughout - fix that value"
                    )
                raise error
        frame = df[self.names]
        if self._numeric:
            return np.asarray(frame.astype("float64").to_numpy(dtype=np.float64))
        return np.asarray(frame.astype(object).where(pd.notna(frame), None).to_numpy())

    def _check_categories(self, name: str, values: Any, nulls: Any, row_of: Any) -> None:
        """Every non-null value of a category column is one of its categories."""
        import pandas as pd

        present = values[~nulls]
        for v in pd.unique(present):
            try:
                self._category(name, True, v, 0)
            except InvalidInput:
                at = int(np.flatnonzero(~nulls)[_first_index(present, v)])
                raise _not_a_category(
                    name, list(self._lookup[name].values()), _py(v), row_of(at)
                ) from None


_NOT_FOUND = object()


def _first_index(values: Any, v: Any) -> int:
    for i, x in enumerate(values):
        if x is v or x == v:
            return i
    return 0


def _category_key(v: Any) -> Any:
    """How a value is matched to a category: by kind and value, so ``True`` is not the
    category ``1`` and ``"1"`` is not ``1``, but ``3.0`` (JSON has one number type) is
    ``3``; None for a null."""
    if v is None:
        return None
    if isinstance(v, bool | np.bool_):
        return ("bool", bool(v))
    if isinstance(v, str):
        return ("str", str(v))
    if isinstance(v, numbers.Integral):
        return ("num", int(v))
    if isinstance(v, numbers.Real):
        f = float(v)
        if f != f:
            return None
        return ("num", int(f)) if f.is_integer() else ("num", f)
    if type(v).__name__ in ("NAType", "NaTType"):
        return None
    return ("other", repr(v))  # never a category: lists, dicts, dates...


def _category_lookup(c: ColumnSpec) -> dict[Any, Category]:
    """{key: category} of a category column; InvalidInput when its categories are not
    a non-empty list of distinct JSON scalars."""
    hint = "give the column's categories as a non-empty list of distinct strings or numbers"
    if not c.categories:
        raise InvalidInput(
            f"column {c.name!r} is a category column without categories", field=c.name, hint=hint
        )
    lookup: dict[Any, Category] = {}
    for v in c.categories:
        key = _category_key(v)
        ok = isinstance(v, Category) and key is not None and key[0] != "other"
        if not ok or (isinstance(v, float) and math.isinf(v)):
            raise InvalidInput(
                f"column {c.name!r} has the category {v!r} ({type(v).__name__}), which is not "
                "a string, a finite number or a bool",
                field=c.name,
                hint="convert the categories to strings before training "
                "(df[col] = df[col].astype(str).astype('category'))",
            )
        if key in lookup:
            raise InvalidInput(
                f"column {c.name!r} has the category {v!r} twice (as {lookup[key]!r})",
                field=c.name,
                hint=hint,
            )
        lookup[key] = v
    return lookup


def _same_categories(frame: Any, c: ColumnSpec) -> bool:
    """Whether ``frame[c.name]`` is already a categorical of exactly ``c``'s categories."""
    import pandas as pd

    dtype = frame[c.name].dtype
    if not isinstance(dtype, pd.CategoricalDtype):
        return False
    have = [_category_key(v) for v in dtype.categories]
    return have == [_category_key(v) for v in c.categories or ()]


def _not_a_category(name: str, categories: list[Any], value: Any, row: int) -> InvalidInput:
    value = _py(value)
    shown = ", ".join(repr(v) for v in categories[:10])
    if len(categories) > 10:
        shown += f", ... ({len(categories)} in all)"
    return InvalidInput(
        f"column {name!r} expects one of its categories ({shown}), got "
        f"{type(value).__name__} {value!r} (row {row})",
        field=name,
        hint="send a category the model was trained with; a new category needs a model "
        "trained and logged with it",
    )


def _column_dict(c: ColumnSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"name": c.name, "type": c.type, "nullable": c.nullable}
    if c.categories is not None:
        out["categories"] = list(c.categories)
    return out


def _category_spec(name: str, series: Any, nullable: bool) -> ColumnSpec:
    """The ``category`` column of a pandas categorical Series (its categories, in order)."""
    categories = tuple(_py(v) for v in series.cat.categories)
    return ColumnSpec(name, "category", nullable, categories)


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


def infer_signature(
    example: Any, output: Any = None, nullable: Iterable[str] = ()
) -> ModelSignature:
    """Infer a signature from an input example and, optionally, the model's output on it.

    ``example``: a pandas DataFrame or a list of row dicts. A column allows NaN/None when
    the example has one or when it is named in ``nullable``. ``output``: what the model
    returned for the example (array-like), to record the output type.

    Example:
        >>> sig = infer_signature([{"x": 1.0, "y": None}, {"x": 2.0, "y": 3}])
        >>> [(c.type, c.nullable) for c in sig.inputs]
        [('float', False), ('int', True)]
    """
    allow = set(nullable)
    columns: list[ColumnSpec] = []
    if _is_dataframe(example):
        for name in example.columns:
            series = example[name]
            has_null = bool(series.isna().any())
            if type(series.dtype).__name__ == "CategoricalDtype":
                columns.append(_category_spec(str(name), series, has_null or str(name) in allow))
                continue
            found = _series_type(series)
            columns.append(
                ColumnSpec(
                    str(name), _checked_type(str(name), found), has_null or str(name) in allow
                )
            )
    elif (
        isinstance(example, list | tuple)
        and example
        and all(isinstance(r, Mapping) for r in example)
    ):
        order: dict[str, None] = {}
        for row in example:
            order.update(dict.fromkeys(row))
        for name in order:
            found = None
            has_null = False
            for row in example:
                kind = _value_type(row.get(name))
                has_null = has_null or kind is None
                found = _merge(name, found, kind)
            columns.append(
                ColumnSpec(str(name), _checked_type(name, found), has_null or name in allow)
            )
    else:
        raise InvalidInput(
            f"an input example must be a DataFrame or a non-empty list of row dicts, "
            f"got {type(example).__name__}",
            field="input_example",
            hint="pass X_train.head(5) or [{'age': 31, 'plan': 'pro'}]",
        )
    unknown = allow - {c.name for c in columns}
    if unknown:
        raise InvalidInput(f"nullable names unknown columns {sorted(unknown)}", field="nullable")
    return ModelSignature(tuple(columns), None if output is None else infer_output(output))


def infer_output(output: Any) -> OutputSpec:
    """The output spec of a prediction (array-like: one value or one vector per row).

    Example:
        >>> infer_output([0.1, 0.9]), infer_output([[0.2, 0.8]]).width
        (OutputSpec(type='float', width=1), 2)
    """
    arr = np.asarray(output)
    kind = arr.dtype.kind
    mapping = {"b": "bool", "i": "int", "u": "int", "f": "float", "U": "string", "S": "string"}
    if kind == "O":
        types = {_value_type(v) for v in arr.ravel()} - {None}
        found = types.pop() if len(types) == 1 else "string"
    else:
        found = mapping.get(kind, "string")
    width = 1 if arr.ndim <= 1 else int(np.prod(arr.shape[1:]))
    return OutputSpec(cast(ColumnType, found if found in COLUMN_TYPES else "string"), width)
