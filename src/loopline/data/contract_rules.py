"""The rules of a data contract: :class:`ColumnRule`, :class:`RowRule`, the file's structure.

Pydantic models that refuse a rule that could never be met when it is made or read from
YAML: an unknown dtype, a bound that is no number or NaN, ``min`` above ``max``, a
``min``/``max`` on a column that holds no numbers, an ``allowed`` value the column's
dtype cannot hold. Kept apart from checking data against the rules
(:mod:`loopline.data.contract_validation`) and inferring them
(:mod:`loopline.data.contract_inference`), which both build on these models. The public
face is :mod:`loopline.data.contracts` (``ll.contracts``).

Example:
    >>> ColumnRule(dtype="int64", min=0, max=120).max
    120
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

FORMAT = 1
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
