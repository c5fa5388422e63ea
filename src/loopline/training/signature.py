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

This module holds the signature and its inference; what they are built from lives apart:
the column and output specs in :mod:`.signature_columns`, the checks of values and columns
(and the messages they raise) in :mod:`.signature_checks`, the matching of category values
in :mod:`.signature_categories`.

Example:
    >>> sig = infer_signature([{"age": 31, "income": 52.5, "plan": "pro"}])
    >>> [(c.name, c.type, c.nullable) for c in sig.inputs]
    [('age', 'int', False), ('income', 'float', False), ('plan', 'string', False)]
    >>> sig.validate([{"age": 40, "income": 61.0, "plan": "free"}]).tolist()
    [[40, 61.0, 'free']]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import orjson

from loopline.core.columns import duplicate_names
from loopline.errors import InvalidInput
from loopline.training.signature_categories import (
    _NOT_FOUND,
    _category_key,
    _category_lookup,
    _category_spec,
    _first_index,
    _not_a_category,
    _same_categories,
)
from loopline.training.signature_checks import (
    _ACCEPTS,
    _EXACT,
    _FLOAT_MAX,
    _FLOAT_TYPES,
    _HINT,
    _INF,
    _INT_TOP,
    _TEXT_TYPES,
    INT_MAX,
    INT_MIN,
    _check_integral,
    _check_numbers,
    _checked_type,
    _first_offending,
    _inexact,
    _infinite,
    _is_dataframe,
    _is_number,
    _merge,
    _no_rows,
    _null,
    _out_of_range,
    _py,
    _row_labels,
    _series_type,
    _slow_value,
    _value_type,
    _wrong,
)
from loopline.training.signature_columns import (
    COLUMN_TYPES,
    Category,
    ColumnSpec,
    ColumnType,
    OutputSpec,
    _column_dict,
)

if TYPE_CHECKING:
    import pandas as pd


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
