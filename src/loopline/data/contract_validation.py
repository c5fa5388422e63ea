"""The :class:`Contract`: a table's rules, kept as YAML, checked against a DataFrame.

:meth:`Contract.validate` builds a ``pandera.DataFrameSchema`` from the rules of
:mod:`loopline.data.contract_rules`, runs it with ``lazy=True`` so that every violation is
collected, and turns pandera's failure cases into the :class:`Violation` objects of
:mod:`loopline.data.contract_report` (with example rows). :meth:`Contract.to_yaml` and
:meth:`Contract.from_yaml` write and read the file a person edits. Inference
(:mod:`loopline.data.contract_inference`) builds a :class:`Contract` with the helpers
here that read a frame's values. The public face is :mod:`loopline.data.contracts`
(``ll.contracts``).

Example:
    >>> # report = ll.contracts.Contract.from_yaml("churn.contract.yaml").validate(df)
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from loopline.core.columns import duplicate_names
from loopline.core.yaml_files import read_yaml, write_text
from loopline.data.contract_report import ValidationReport, Violation
from loopline.data.contract_rules import FORMAT, ColumnRule, RowRule, _ContractFile
from loopline.errors import InvalidInput

MAX_EXAMPLES = 5


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
