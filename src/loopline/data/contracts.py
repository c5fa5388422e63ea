"""Data contracts: what a table must look like, inferred from data, kept as YAML, checked.

Used as ``ll.contracts``::

    contract = ll.contracts.infer(train_df, name="churn")
    contract.to_yaml("churn.contract.yaml")          # a file a person reads and edits
    contract = ll.contracts.Contract.from_yaml("churn.contract.yaml")
    report = contract.validate(batch_df)
    report.raise_for_violations()                    # ContractViolation listing them all

A contract names every column with its dtype (a pandas dtype string such as ``int64``,
``float64``, ``str``, ``bool``, ``category``, ``datetime64[ns]``) and optionally:
``nullable`` (false: no nulls), ``min``/``max`` (numbers; not NaN), ``allowed`` (the set of
values, each of a type the dtype holds: no ``'1'`` for an ``int64`` column), ``unique``; and
a row-count range. A missing column and an extra column are violations:
a model trained on 50 features never silently gets 48.

Validation is built on pandera: the contract becomes a ``pandera.DataFrameSchema`` run
with ``lazy=True`` so that *every* violation is collected, not just the first; pandera's
failure cases become :class:`Violation` objects (column, rule, expected, actual and a few
example rows). When a column has the wrong dtype its range and value checks are skipped
(comparing words with a number says nothing new); the ``dtype`` violation lists the
values that do not fit. ``unique`` ignores nulls (they are the ``nullable`` rule's job).

Example:
    >>> import pandas as pd
    >>> c = infer(pd.DataFrame({"age": [20, 30, 40], "plan": ["a", "b", "a"]}))
    >>> c.validate(pd.DataFrame({"age": [20, 99], "plan": ["a", "z"]})).ok
    False
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from loopline.core.columns import duplicate_names, json_number
from loopline.core.yaml_files import read_yaml, write_text
from loopline.errors import ContractViolation, InvalidInput

__all__ = [
    "ColumnRule",
    "Contract",
    "ContractViolations",
    "RowRule",
    "ValidationReport",
    "Violation",
    "infer",
]

FORMAT = 1
MAX_CATEGORIES = 50
MAX_EXAMPLES = 5
Scalar = str | int | float | bool


class ColumnRule(BaseModel):
    """The rules for one column. Unset rules are not checked."""

    model_config = ConfigDict(extra="forbid")

    dtype: str
    nullable: bool = True
    min: int | float | None = None
    max: int | float | None = None
    allowed: list[Scalar] | None = None
    unique: bool = False

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, value: str) -> str:
        from pandera.engines import pandas_engine

        try:
            pandas_engine.Engine.dtype(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"unknown dtype {value!r} (use a pandas dtype such as int64, float64, str, "
                "bool, category, datetime64[ns])"
            ) from exc
        return value

    @field_validator("min", "max", mode="before")
    @classmethod
    def _a_number(cls, value: Any) -> Any:
        # Lax mode read "min: yes" as 1 and the text "3" as 3.
        if isinstance(value, bool | str):
            raise ValueError(f"{value!r} is not a number (write a number, e.g. 3 or 0.5)")
        return value

    @field_validator("min", "max")
    @classmethod
    def _not_nan(cls, value: float | None) -> float | None:
        # NaN compares false with everything: every row would break the rule.
        if isinstance(value, float) and math.isnan(value):
            raise ValueError("NaN is not a bound: no value compares with it (remove the rule)")
        return value

    @model_validator(mode="after")
    def _sensible_range(self) -> ColumnRule:
        if (self.min is not None or self.max is not None) and not _is_number_dtype(self.dtype):
            rule = "min" if self.min is not None else "max"
            raise ValueError(
                f"{rule} applies to numbers, and dtype {self.dtype} is not a number type "
                "(remove the rule, or use allowed)"
            )
        _check_range(self.min, self.max)
        _check_allowed(self.dtype, self.allowed)
        return self


def _is_number_dtype(dtype: str) -> bool:
    """True for integer and floating-point dtypes (not bool): what min/max compare."""
    import pandas as pd
    from pandera.engines import pandas_engine

    native = pandas_engine.Engine.dtype(dtype).type
    return bool(pd.api.types.is_numeric_dtype(native) and not pd.api.types.is_bool_dtype(native))


#: What each kind of dtype can hold, and a value of that kind for a message.
_KINDS: dict[str, tuple[str, str]] = {
    "integer": ("integers", "1"),
    "float": ("numbers", "0.5"),
    "bool": ("booleans", "true"),
    "string": ("text", "'a'"),
}


def _dtype_kind(dtype: str) -> str | None:
    """integer, float, bool or string for a dtype ``allowed`` values can be checked
    against; None for the others (object and category hold anything)."""
    import pandas as pd
    from pandera.engines import pandas_engine

    native = pandas_engine.Engine.dtype(dtype).type
    t = pd.api.types
    if t.is_object_dtype(native) or isinstance(native, pd.CategoricalDtype):
        return None
    if t.is_bool_dtype(native):
        return "bool"
    if t.is_integer_dtype(native):
        return "integer"
    if t.is_float_dtype(native):
        return "float"
    return "string" if t.is_string_dtype(native) else None


def _fits(kind: str, value: Scalar) -> bool:
    if kind == "bool" or isinstance(value, bool):
        return kind == "bool" and isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    return isinstance(value, int | float)


def _check_allowed(dtype: str, allowed: list[Scalar] | None) -> None:
    """Refuse an ``allowed`` value the column's dtype cannot hold: it could never match,
    and validation would call every value of the column unexpected."""
    kind = _dtype_kind(dtype) if allowed else None
    if kind is None or allowed is None:
        return
    wrong = [v for v in allowed if not _fits(kind, v)]
    if wrong:
        holds, example = _KINDS[kind]
        raise ValueError(
            f"allowed holds {wrong[0]!r} ({type(wrong[0]).__name__}), and dtype {dtype} holds "
            f"{holds}: it can never match (write the values as {holds}, e.g. {example}, "
            "or change the dtype)"
        )


def _check_range(low: float | None, high: float | None) -> None:
    if low is not None and high is not None and low > high:
        raise ValueError(f"min {low} is greater than max {high}: nothing can pass")


class RowRule(BaseModel):
    """The allowed number of rows (``max: null`` for no upper bound)."""

    model_config = ConfigDict(extra="forbid")

    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _sensible_range(self) -> RowRule:
        _check_range(self.min, self.max)
        return self


class _ContractFile(BaseModel):
    """The YAML file's structure."""

    model_config = ConfigDict(extra="forbid")

    contract: int = FORMAT
    name: str | None = None
    rows: RowRule = Field(default_factory=RowRule)
    columns: dict[str, ColumnRule]


@dataclass(frozen=True)
class Violation:
    """One rule broken by one column (``column`` is None for a table-level rule)."""

    column: str | None
    rule: str
    expected: Any
    actual: Any
    examples: list[dict[str, Any]] = field(default_factory=list)

    def __str__(self) -> str:
        where = self.column if self.column is not None else "(table)"
        text = f"{where}: {self.rule}: expected {self.expected}, actual {self.actual}"
        if self.examples:
            shown = ", ".join(f"row {e['row']}={e['value']!r}" for e in self.examples)
            text += f" (e.g. {shown})"
        return text


class ContractViolations(ContractViolation):
    """Data broke its contract; ``violations`` lists every broken rule."""

    def __init__(self, message: str, violations: list[Violation], *, hint: str | None = None):
        field_name = violations[0].column if violations else None
        super().__init__(message, field=field_name, hint=hint)
        self.violations = violations


def _json_violation(v: Violation) -> dict[str, Any]:
    data = asdict(v)
    actual = v.actual
    data["actual"] = (
        [json_number(a) for a in actual] if isinstance(actual, list) else json_number(actual)
    )
    data["examples"] = [{**e, "value": json_number(e["value"])} for e in v.examples]
    return data


@dataclass(frozen=True)
class ValidationReport:
    """What :meth:`Contract.validate` found; ``ok`` when nothing was violated."""

    contract: str | None
    rows: int
    violations: list[Violation]

    @property
    def ok(self) -> bool:
        """True when the data meets every rule."""
        return not self.violations

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON: an infinite value is the text ``"inf"`` or ``"-inf"``.

        Example:
            >>> ValidationReport("c", 3, []).to_dict()["ok"]
            True
        """
        return {
            "contract": self.contract,
            "ok": self.ok,
            "rows": self.rows,
            "violations": [_json_violation(v) for v in self.violations],
        }

    def raise_for_violations(self) -> None:
        """Raise :class:`ContractViolations` (a ``ContractViolation``) listing every violation.

        Example:
            >>> ValidationReport("c", 3, []).raise_for_violations()  # nothing to raise
        """
        if self.ok:
            return
        label = f"contract {self.contract!r}" if self.contract else "the contract"
        lines = "\n".join(f"  - {v}" for v in self.violations)
        raise ContractViolations(
            f"the data breaks {label}: {len(self.violations)} violation(s)\n{lines}",
            self.violations,
            hint="fix the data, or edit the contract if the change is intended",
        )


def _py(value: Any) -> Any:
    """A plain Python value (numpy scalars unwrapped, arrays as lists, NaN -> None; an
    infinity stays one: it is a value, and often the one that broke the rule)."""
    if getattr(value, "ndim", 0):  # an array held in a cell of a list column
        return value.tolist()
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


class Contract:
    """A table's contract: its columns' rules and a row-count range."""

    def __init__(
        self,
        columns: dict[str, ColumnRule],
        *,
        rows: RowRule | None = None,
        name: str | None = None,
    ) -> None:
        self.columns = columns
        self.rows = rows or RowRule()
        self.name = name

    def __repr__(self) -> str:
        return f"Contract(name={self.name!r}, columns={list(self.columns)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Contract) and self._file() == other._file()

    __hash__ = None  # type: ignore[assignment]

    def _file(self) -> _ContractFile:
        return _ContractFile(name=self.name, rows=self.rows, columns=self.columns)

    def to_dict(self) -> dict[str, Any]:
        """The contract as plain data, with unset rules left out.

        Example:
            >>> Contract({"x": ColumnRule(dtype="int64")}).to_dict()["columns"]
            {'x': {'dtype': 'int64', 'nullable': True}}
        """
        data = self._file().model_dump(mode="json")
        for rule in data["columns"].values():
            for key in ("min", "max", "allowed"):
                if rule[key] is None:
                    del rule[key]
            if not rule["unique"]:
                del rule["unique"]
        return data

    def to_yaml(self, path: str | os.PathLike[str]) -> Path:
        """Write the contract as YAML (with a comment saying how to edit it); return the path.

        A path that cannot be written (no such folder, a folder, no permission) is an
        :class:`InvalidInput` on ``path``.

        Example:
            >>> # contract.to_yaml("churn.contract.yaml")
        """
        out = Path(path)
        header = (
            "# Loopline data contract: edit freely, then check data with\n"
            "#   loopline data validate DATA --contract THIS_FILE\n"
            "# Per column: dtype (pandas dtype), nullable, min, max (numbers), allowed (values),\n"
            "# unique. rows: min/max row count (null: no bound). A column missing from the data\n"
            "# or not listed here is a violation.\n"
        )
        body = yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)
        write_text(out, header + body, field="path")
        return out

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> Contract:
        """Read a contract written by :meth:`to_yaml` (or by hand).

        A structural mistake is an :class:`InvalidInput` naming the key, e.g.
        ``columns.age.mni: unknown key``; so is a key written twice in one mapping (YAML
        would keep the last silently), and a path that is no readable YAML file (missing,
        a folder, not text).

        Example:
            >>> # contract = Contract.from_yaml("churn.contract.yaml")
        """
        src = Path(path)
        data = read_yaml(
            src,
            field="contract",
            what="contract file",
            missing_hint="write one with: loopline data infer-contract DATA OUT.yaml",
        )
        if not isinstance(data, dict):
            raise InvalidInput(
                f"{src} does not hold a contract (a mapping with 'columns')",
                field="contract",
                hint="write one with: loopline data infer-contract DATA OUT.yaml",
            )
        try:
            parsed = _ContractFile.model_validate(data)
        except ValidationError as exc:
            raise _structure_error(src, exc) from exc
        if parsed.contract != FORMAT:
            raise InvalidInput(
                f"{src}: contract format {parsed.contract} is not supported",
                field="contract",
                hint=f"this version of Loopline reads format {FORMAT}",
            )
        return cls(parsed.columns, rows=parsed.rows, name=parsed.name)

    def validate(self, df: Any) -> ValidationReport:
        """Check ``df`` against every rule and collect every violation.

        Example:
            >>> # report = contract.validate(batch_df); report.ok, report.violations
        """
        import pandera.errors
        import pandera.pandas as pa

        frame = _string_columns(df, "validate", "validate PATH --contract FILE")
        schema, check_rules = self._pandera_schema(frame, pa)
        try:
            schema.validate(frame, lazy=True)
        except pandera.errors.SchemaErrors as exc:
            violations = _violations(exc.schema_errors, frame, self, check_rules)
        else:
            violations = []
        return ValidationReport(self.name, len(frame), violations)

    def _pandera_schema(self, frame: Any, pa: Any) -> tuple[Any, dict[tuple[str, int], str]]:
        from pandera.engines import pandas_engine

        check_rules: dict[tuple[str, int], str] = {}
        columns: dict[str, Any] = {}
        for name, rule in self.columns.items():
            checks: list[Any] = []
            same_dtype = name in frame.columns and pandas_engine.Engine.dtype(rule.dtype).check(
                pandas_engine.Engine.dtype(frame[name].dtype)
            )
            if same_dtype:
                wanted: list[tuple[str, Any]] = []
                if rule.min is not None:
                    wanted.append(("min", pa.Check.ge(rule.min)))
                if rule.max is not None:
                    wanted.append(("max", pa.Check.le(rule.max)))
                if rule.allowed is not None:
                    wanted.append(("allowed", pa.Check.isin(rule.allowed)))
                for rule_name, check in wanted:
                    check_rules[(name, len(checks))] = rule_name
                    checks.append(check)
            if rule.unique:
                check_rules[(name, len(checks))] = "unique"
                checks.append(pa.Check(_unique_ignoring_nulls, name="unique"))
            columns[name] = pa.Column(rule.dtype, nullable=rule.nullable, checks=checks)
        table_checks = []
        if self.rows.min is not None or self.rows.max is not None:
            low, high = self.rows.min, self.rows.max
            table_checks.append(
                pa.Check(
                    lambda d: (low is None or len(d) >= low) and (high is None or len(d) <= high),
                    name="rows",
                )
            )
        return pa.DataFrameSchema(columns, strict=True, checks=table_checks), check_rules


def _unique_ignoring_nulls(series: Any) -> Any:
    return ~_hashable(series).duplicated(keep=False) | series.isna()


def _key(value: Any) -> Any:
    """``value`` as something hashable that equals another's exactly when the values do:
    lists, tuples and arrays as tuples, dicts as tuples of their items."""
    if isinstance(value, dict):
        items = sorted(((repr(k), _key(v)) for k, v in value.items()), key=lambda kv: kv[0])
        return ("dict", tuple(items))
    if isinstance(value, list | tuple) or bool(getattr(value, "ndim", 0)):
        return ("seq", tuple(_key(v) for v in value))
    return value


def _hashable(series: Any) -> Any:
    """``series``, or its values as :func:`_key` when some cannot be hashed (a list column
    from Parquet holds arrays: pandas cannot compare them for ``unique`` or ``allowed``)."""
    return series if _all_hashable(series) else series.map(_key)


def _all_hashable(series: Any) -> bool:
    import pandas as pd

    if not pd.api.types.is_object_dtype(series.dtype):
        return True
    try:
        for value in series:
            hash(value)
    except TypeError:
        return False
    return True


def _string_columns(df: Any, doing: str, command: str) -> Any:
    """``df`` with its column names as text; ``doing`` says what needs a DataFrame, and
    ``command`` the CLI command that reads a file for you."""
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        hint = "convert it first, e.g. table.to_pandas()"
        if isinstance(df, str | os.PathLike):
            hint = f"read the file first, e.g. pd.read_csv(path); or run: loopline data {command}"
        raise InvalidInput(
            f"can only {doing} a pandas DataFrame, not a {type(df).__name__}",
            field="df",
            hint=hint,
        )
    dupes = duplicate_names(df.columns)
    if dupes:
        raise InvalidInput(
            f"the data has duplicate column names: {', '.join(dupes)}",
            field="df",
            hint="rename the columns so that each name is used once",
        )
    if all(isinstance(c, str) for c in df.columns):
        return df
    return df.rename(columns=str)


def _structure_error(src: Path, exc: ValidationError) -> InvalidInput:
    problems = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        msg = msg.removeprefix("Value error, ")
        problems.append(f"{key}: {msg}")
    first_key = ".".join(str(p) for p in exc.errors()[0]["loc"]) if exc.errors() else None
    return InvalidInput(
        f"{src} is not a valid contract: " + "; ".join(problems),
        field=first_key,
        hint="column keys are dtype, nullable, min, max, allowed, unique; "
        "top-level keys are contract, name, rows, columns",
    )


def _examples(failure_cases: Any) -> list[dict[str, Any]]:
    import pandas as pd

    if not isinstance(failure_cases, pd.DataFrame) or "failure_case" not in failure_cases:
        return []
    rows = failure_cases.head(MAX_EXAMPLES)
    index = rows["index"] if "index" in rows else [None] * len(rows)
    return [
        {"row": _py(i), "value": _py(v)} for i, v in zip(index, rows["failure_case"], strict=True)
    ]


def _violations(
    errors: Iterable[Any], frame: Any, contract: Contract, check_rules: dict[tuple[str, int], str]
) -> list[Violation]:
    from pandera.errors import SchemaErrorReason as Reason

    out: list[Violation] = []
    for err in errors:
        reason = err.reason_code
        column = err.column_name if isinstance(err.column_name, str) else None
        examples = _examples(err.failure_cases)
        if reason == Reason.COLUMN_NOT_IN_DATAFRAME:
            col = str(err.failure_cases)
            out.append(
                Violation(
                    col, "missing_column", f"column of dtype {_dtype(contract, col)}", "absent"
                )
            )
        elif reason == Reason.COLUMN_NOT_IN_SCHEMA:
            col = str(err.failure_cases)
            out.append(
                Violation(
                    col, "extra_column", "not present (not in the contract)", _actual(frame, col)
                )
            )
        elif reason == Reason.WRONG_DATATYPE and column is not None:
            out.append(
                Violation(
                    column,
                    "dtype",
                    contract.columns[column].dtype,
                    _actual(frame, column),
                    examples,
                )
            )
        elif reason == Reason.SERIES_CONTAINS_NULLS and column is not None:
            nulls = int(frame[column].isna().sum())
            out.append(Violation(column, "nullable", "no nulls", f"{nulls} null(s)", examples))
        elif getattr(err.check, "name", None) == "rows" and column is None:
            out.append(
                Violation(None, "rows", _range(contract.rows.min, contract.rows.max), len(frame))
            )
        elif column is not None and (column, err.check_index) in check_rules:
            rule_name = check_rules[(column, err.check_index)]
            out.append(
                _value_violation(column, rule_name, contract.columns[column], frame, examples)
            )
        else:
            out.append(Violation(column, str(reason.name).lower(), "pass", str(err), examples))
    return out


def _dtype(contract: Contract, column: str) -> str:
    rule = contract.columns.get(column)
    return rule.dtype if rule is not None else "?"


def _actual(frame: Any, column: str) -> str:
    return f"dtype {frame[column].dtype}" if column in frame.columns else "absent"


def _range(low: Any, high: Any) -> str:
    if low is not None and high is not None:
        return f"between {low} and {high}"
    return f">= {low}" if low is not None else f"<= {high}"


def _value_violation(
    column: str, rule_name: str, rule: ColumnRule, frame: Any, examples: list[dict[str, Any]]
) -> Violation:
    series = frame[column]
    if rule_name == "min":
        return Violation(column, "min", f">= {rule.min}", _py(series.min()), examples)
    if rule_name == "max":
        return Violation(column, "max", f"<= {rule.max}", _py(series.max()), examples)
    if rule_name == "allowed":
        allowed = rule.allowed or []
        bad = series[series.notna() & ~series.isin(allowed)]
        first = {_key(v): _py(v) for v in bad}  # a list is a value here too, not hashable
        unexpected = sorted(first.values(), key=str)[:10]
        return Violation(column, "allowed", f"one of {allowed}", unexpected, examples)
    dupes = int(series[series.notna()].duplicated(keep=False).sum())
    return Violation(column, "unique", "all values unique", f"{dupes} rows share values", examples)


def _is_float(series: Any) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_float_dtype(series.dtype))


def _plain(values: list[Any]) -> bool:
    """True when every value is a str, int, float or bool: what ``allowed`` can hold and
    YAML gives back as it was. Dates, decimals and bytes would come back as text and no
    longer equal the data they were inferred from."""
    return all(type(v) in (str, int, float, bool) for v in values)


def infer(df: Any, *, name: str | None = None, row_tolerance: float | None = None) -> Contract:
    """A contract that ``df`` meets, to be reviewed and edited by a person.

    For every column: its dtype; ``nullable`` when it has nulls; ``min``/``max`` for numbers
    (not booleans); ``allowed`` for strings and categoricals with at most 50 distinct values
    (for strings, only when some value repeats: a column of distinct names is an
    identifier, not a category; not for dates, decimals or bytes held as Python objects,
    which a YAML contract would give back as text); ``unique`` when every value differs
    and none is null (integers, strings and dates; not floating-point measurements,
    booleans or categoricals; at least two rows). A column of lists, arrays or dicts gets
    neither ``allowed`` nor ``unique`` (its values are not plain). Rows: at least 1, no
    upper bound, or ``n * (1 ± row_tolerance)`` when ``row_tolerance`` is given.

    Example:
        >>> import pandas as pd
        >>> infer(pd.DataFrame({"x": [1, 2]})).columns["x"].max
        2
    """
    import pandas as pd

    frame = _string_columns(df, "infer a contract from", "infer-contract PATH OUT.yaml")
    columns: dict[str, ColumnRule] = {}
    for col in frame.columns:
        series = frame[col]
        dtype = series.dtype
        non_null = series.dropna()
        # Lists, arrays and dicts (a list column) have no set of values to allow, and
        # pandas cannot tell whether they are unique.
        hashable = _all_hashable(non_null)
        rule = ColumnRule(dtype=str(dtype), nullable=bool(len(non_null) < len(series)))
        if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
            if len(non_null):
                rule.min, rule.max = _py(non_null.min()), _py(non_null.max())
        elif isinstance(dtype, pd.CategoricalDtype):
            levels = [_py(v) for v in dtype.categories]
            if len(levels) <= MAX_CATEGORIES and _plain(levels):
                rule.allowed = sorted(levels, key=str)
        elif (pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype)) and (
            hashable
        ):
            distinct = [_py(v) for v in non_null.unique()]
            if (
                len(distinct) <= MAX_CATEGORIES
                and len(distinct) < len(non_null)
                and _plain(distinct)
            ):
                rule.allowed = sorted(distinct, key=str)
        if (
            hashable
            and not _is_float(series)
            and not pd.api.types.is_bool_dtype(dtype)
            and not isinstance(dtype, pd.CategoricalDtype)
            and len(series) >= 2
            and len(non_null) == len(series)
            and series.is_unique
        ):
            rule.unique = True
        columns[col] = rule
    n = len(frame)
    if row_tolerance is None:
        rows = RowRule(min=1 if n else 0, max=None)
    else:
        rows = RowRule(
            min=max(0, math.floor(n * (1 - row_tolerance))), max=math.ceil(n * (1 + row_tolerance))
        )
    return Contract(columns, rows=rows, name=name)
