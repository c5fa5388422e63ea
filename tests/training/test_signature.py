"""Signature validation at the edges of the column types: +-inf, int64's range, the row named."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from loopline.errors import InvalidInput
from loopline.training.signature import INT_MAX, INT_MIN, infer_signature

SIG = infer_signature([{"age": 30, "income": 1.5, "plan": "pro"}])  # object rows
NUMERIC = infer_signature([{"age": 30, "income": 1.5}])  # float64 rows
GOOD = {"age": 30, "income": 1.5, "plan": "pro"}


def _frame(**columns: Any) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    return pd.DataFrame({**{k: [v] * n for k, v in GOOD.items()}, **columns})


@pytest.mark.parametrize(
    ("sig", "rows", "field", "words"),
    [
        (SIG, [{**GOOD, "income": math.inf}], "income", "is inf in row 0"),
        (SIG, [GOOD, {**GOOD, "income": -math.inf}], "income", "is -inf in row 1"),
        (NUMERIC, [{"age": 1, "income": math.inf}], "income", "is inf in row 0"),
        (SIG, [{**GOOD, "age": math.inf}], "age", "is inf in row 0"),
        (SIG, [{**GOOD, "income": 10**400}], "income", "out of range in row 0"),
        (SIG, [{**GOOD, "age": 1e30}], "age", "out of range in row 0: 1e+30"),
        (SIG, [GOOD, {**GOOD, "age": 2**70}], "age", "out of range in row 1"),
        (SIG, [{**GOOD, "age": INT_MIN - 1}], "age", "out of range"),
        (NUMERIC, [{"age": 2**63, "income": 1.0}], "age", "out of range"),
        (NUMERIC, np.array([[1.0, 2.0], [3.0, np.inf]]), "income", "is inf in row 1"),
        (NUMERIC, np.array([[1.0, 2.0], [1e30, 1.0]]), "age", "out of range in row 1"),
        (NUMERIC, np.array([[1, 2], [2**64 - 1, 1]], dtype=np.uint64), "age", "in row 1"),
        (SIG, _frame(income=[1.0, 2.0, np.inf]), "income", "is inf in row 2"),
        (SIG, _frame(age=[1.0, 1e30]), "age", "out of range in row 1"),
        (SIG, _frame(age=pd.Series([1, 2**70], dtype=object)), "age", "out of range in row 1"),
    ],
    ids=[
        "inf-float",
        "minus-inf-second-row",
        "inf-numeric-model",
        "inf-int",
        "huge-int-for-float",
        "1e30-for-int",
        "2**70-for-int",
        "below-int64",
        "2**63-numeric-model",
        "array-inf",
        "array-1e30-for-int",
        "array-uint64",
        "frame-inf",
        "frame-1e30-for-int",
        "frame-2**70-for-int",
    ],
)
def test_values_a_column_cannot_hold_are_invalid_input_naming_column_and_row(
    sig: Any, rows: Any, field: str, words: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        sig.validate(rows)
    assert info.value.field == field and words in info.value.message, info.value.message
    with pytest.raises(InvalidInput):  # not OverflowError from the int64 conversion
        sig.to_frame(rows)


def test_a_column_given_twice_is_named() -> None:
    """df[name] of a duplicated name is a frame: numpy's 'truth value is ambiguous' leaked."""
    sig = infer_signature(pd.DataFrame({"a": [1.0], "b": [2.0]}))
    frame = pd.DataFrame([[1.0, 2.0, 3.0]], columns=["a", "b", "a"])
    with pytest.raises(InvalidInput, match="column 'a' appears more than once") as info:
        sig.validate(frame)
    assert info.value.field == "a"


def test_the_ends_of_int64_are_accepted() -> None:
    frame = SIG.to_frame([{**GOOD, "age": INT_MAX}, {**GOOD, "age": INT_MIN}])
    assert frame["age"].tolist() == [INT_MAX, INT_MIN]
    numeric = NUMERIC.to_frame([{"age": INT_MAX, "income": 1.0}])  # float64 rows: rounded
    assert numeric["age"].dtype == np.int64 and numeric["age"][0] > 2**62
    assert NUMERIC.validate([{"age": 2.0**62, "income": 1e308}]).shape == (1, 2)


def test_a_type_error_names_the_first_offending_value_and_its_row() -> None:
    # As `pd.read_csv` reads a column with one word in it: text throughout.
    text = ["48.0", "12.5", "3", "7.25", "1", "abc", "2"]
    with pytest.raises(InvalidInput, match=r"got str 'abc' \(row 5\)"):
        SIG.validate(_frame(income=text))
    mixed = pd.Series([48.0, 12.5, None, "abc"], dtype=object)
    nullable = infer_signature([{"age": 1, "income": None, "plan": "x"}, GOOD])
    with pytest.raises(InvalidInput, match=r"got str 'abc' \(row 3\)"):
        nullable.validate(_frame(income=mixed))
    ints = infer_signature([{"age": None, "income": 1.0, "plan": "x"}, GOOD])
    with pytest.raises(InvalidInput, match=r"expects int, got float 2.5 \(row 3\)"):
        ints.validate(_frame(age=[np.nan, 1.0, np.nan, 2.5]))  # row 3, not 1 of the non-nulls
    chunk = _frame(income=[1.0, 2.0, np.inf]).set_axis(pd.RangeIndex(100, 103))
    with pytest.raises(InvalidInput, match="in row 102"):  # a chunk numbered from its file row
        SIG.validate(chunk)
