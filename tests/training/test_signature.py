"""Signature validation at the edges of the column types: +-inf, int64's range, the row named."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from loopline.errors import InvalidInput
from loopline.training.signature import ModelSignature, infer_signature
from loopline.training.signature_checks import INT_MAX, INT_MIN

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
        # orjson reads an integer past 64 bits as the nearest float: -2**63 - 1 became -2**63.
        (SIG, [{**GOOD, "age": float(INT_MIN)}], "age", "out of range in row 0: -9.2"),
        (NUMERIC, [{"age": 2.0**53, "income": 1.0}], "age", "only below 2**53"),
        (SIG, [GOOD, {**GOOD, "age": 2.0**62}], "age", "out of range in row 1"),
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
        "float-int64-min-for-int",
        "float-2**53-for-int",
        "float-2**62-for-int",
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
    assert NUMERIC.validate([{"age": 2**62, "income": 1e308}]).shape == (1, 2)
    # A float stands for one integer up to 2**53 only: from there on it is refused (above).
    assert SIG.validate([{**GOOD, "age": 1 - 2.0**53}])[0][0] == 1 - 2**53


def test_accepted_values_come_back_as_their_columns_type() -> None:
    """The model server logs the rows the signature accepted; an int of 2**63 accepted for a
    float column stayed an int, which the log could not store (no int64 holds it)."""
    rows = SIG.validate([{**GOOD, "income": 2**63}, {**GOOD, "age": 31.0, "income": 2}])
    assert [[type(v) for v in row[:2]] for row in rows.tolist()] == [[int, float]] * 2
    assert rows[0][1] == float(2**63) and rows[1].tolist()[:2] == [31, 2.0]
    frame = SIG.to_frame([{**GOOD, "income": 10**300}])
    assert frame["income"].dtype == np.float64 and frame["income"][0] == 1e300


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


# -- category columns (pandas categoricals: LightGBM, XGBoost enable_categorical) --------------

PLANS = ("free", "pro", "team")
CATEGORIES = pd.DataFrame(
    {
        "plan": pd.Categorical(["pro", "free"], categories=PLANS),
        "code": pd.Categorical([20, 10], categories=[10, 20, 30]),
        "age": [30, 40],
    }
)


def test_a_categorical_column_is_a_category_column_with_its_categories_in_order() -> None:
    sig = infer_signature(CATEGORIES)
    plan, code, age = sig.inputs
    assert (plan.type, plan.categories, code.categories) == ("category", PLANS, (10, 20, 30))
    assert (age.type, age.categories, sig.numeric) == ("int", None, False)
    data = sig.to_dict()["inputs"]
    assert data[0]["categories"] == list(PLANS) and "categories" not in data[2]
    assert ModelSignature.from_json(sig.to_json()) == sig
    # A category not in the example's rows is kept: the dtype, not the values, says them.
    assert "team" in (sig.inputs[0].categories or ())


def test_category_input_is_given_back_as_a_categorical_of_exactly_the_categories() -> None:
    sig = infer_signature(CATEGORIES)
    reordered = CATEGORIES.assign(plan=CATEGORIES.plan.cat.reorder_categories(["team", *PLANS[:2]]))
    as_text = CATEGORIES.astype({"plan": str, "code": int})
    for given in (
        CATEGORIES,
        reordered,
        as_text,
        as_text.to_dict("records"),
        [{"plan": "pro", "code": 20.0, "age": 30}, {"plan": "free", "code": 10, "age": 40}],
        np.array([["pro", 20, 30], ["free", 10, 40]], dtype=object),
    ):
        frame = sig.to_frame(given)
        for name, cats in (("plan", PLANS), ("code", (10, 20, 30))):
            assert list(frame[name].cat.categories) == list(cats), (given, name)
        assert frame["plan"].tolist() == ["pro", "free"] and frame["code"].tolist() == [20, 10]
    one = sig.to_frame([{"plan": "team", "code": 30, "age": 1}])  # the one-row fast path
    assert one["plan"].cat.codes.tolist() == [2] and one["code"].cat.codes.tolist() == [2]


@pytest.mark.parametrize(
    ("rows", "field", "words"),
    [
        ([{"plan": "gold", "code": 10, "age": 1}], "plan", "got str 'gold' (row 0)"),
        ([{"plan": "pro", "code": "10", "age": 1}], "code", "got str '10' (row 0)"),
        ([{"plan": "pro", "code": True, "age": 1}], "code", "got bool True (row 0)"),
        ([{"plan": "pro", "code": 10.5, "age": 1}], "code", "got float 10.5 (row 0)"),
        ([{"plan": None, "code": 10, "age": 1}], "plan", "is NaN/null in row 0"),
        (CATEGORIES.assign(plan=["pro", "Pro"]), "plan", "got str 'Pro' (row 1)"),
        (np.array([[0, 10, 1]]), "plan", "got int 0 (row 0)"),
    ],
    ids=["unknown", "number-as-text", "bool-for-number", "fraction", "null", "frame", "array"],
)
def test_a_value_that_is_not_a_category_is_invalid_input_listing_the_categories(
    rows: Any, field: str, words: str
) -> None:
    sig = infer_signature(CATEGORIES)
    with pytest.raises(InvalidInput) as info:
        sig.to_frame(rows)
    assert info.value.field == field and words in info.value.message, info.value.message
    if "null" not in words:
        assert "expects one of its categories" in info.value.message


def test_a_category_column_with_nulls_in_the_example_takes_nulls() -> None:
    sig = infer_signature(CATEGORIES.assign(plan=pd.Categorical(["pro", None], categories=PLANS)))
    assert sig.inputs[0].nullable
    frame = sig.to_frame(
        [{"plan": None, "code": 10, "age": 1}, {"plan": "pro", "code": 10, "age": 2}]
    )
    assert frame["plan"].isna().tolist() == [True, False]


@pytest.mark.parametrize(
    ("column", "words"),
    [
        ({"name": "c", "type": "category"}, "without categories"),
        ({"name": "c", "type": "category", "categories": []}, "without categories"),
        ({"name": "c", "type": "category", "categories": ["a", "a"]}, "'a' twice"),
        ({"name": "c", "type": "category", "categories": [1, 1.0]}, "1.0 twice"),
        ({"name": "c", "type": "category", "categories": [None]}, "not a string"),
        ({"name": "c", "type": "category", "categories": [[1]]}, "not a string"),
        ({"name": "c", "type": "string", "categories": ["a"]}, "cannot have categories"),
    ],
    ids=["missing", "empty", "twice", "int-and-float", "null", "list", "not-category"],
)
def test_malformed_categories_are_refused_naming_the_column(
    column: dict[str, Any], words: str
) -> None:
    with pytest.raises(InvalidInput, match=words) as info:
        ModelSignature.from_dict({"inputs": [column]})
    assert info.value.field in ("c", "signature")


def test_categories_a_signature_cannot_hold_are_refused_at_inference() -> None:
    dates = pd.DataFrame({"d": pd.Categorical(pd.to_datetime(["2024-01-01"]))})
    with pytest.raises(InvalidInput, match="column 'd' has the category") as info:
        infer_signature(dates)
    assert info.value.field == "d"
