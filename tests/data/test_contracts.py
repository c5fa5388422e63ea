from __future__ import annotations

import datetime as dt
import decimal
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import loopline as ll
from loopline.data.contract_inference import infer
from loopline.data.contract_report import Violation
from loopline.data.contract_rules import ColumnRule, RowRule
from loopline.data.contract_validation import Contract
from loopline.errors import ContractViolation, InvalidInput


def _train(n: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    score = rng.normal(size=n)
    score[::17] = np.nan
    return pd.DataFrame(
        {
            "customer_id": np.arange(1, n + 1),
            "age": rng.integers(18, 80, n),
            "plan": rng.choice(["basic", "pro", "team"], n),
            "email": [f"user{i}@example.com" for i in range(n)],
            "score": score,
            "tier": pd.Categorical(rng.choice(["gold", "silver"], n)),
            "active": rng.random(n) > 0.5,
        }
    )


def test_infer_describes_each_column() -> None:
    df = _train()
    c = ll.contracts.infer(df, name="churn")
    assert c.name == "churn" and list(c.columns) == list(df.columns)
    cid = c.columns["customer_id"]
    assert (cid.dtype, cid.nullable, cid.unique, cid.min, cid.max) == ("int64", False, True, 1, 200)
    assert c.columns["age"].min == int(df.age.min()) and not c.columns["age"].unique
    assert (
        c.columns["plan"].allowed == ["basic", "pro", "team"] and c.columns["plan"].dtype == "str"
    )
    # 200 distinct e-mails: an identifier, not a category.
    assert c.columns["email"].allowed is None and c.columns["email"].unique
    score = c.columns["score"]
    assert score.nullable and not score.unique and score.min == pytest.approx(np.nanmin(df.score))
    assert c.columns["tier"].allowed == ["gold", "silver"] and c.columns["tier"].dtype == "category"
    assert c.columns["active"].dtype == "bool" and c.columns["active"].min is None
    assert (c.rows.min, c.rows.max) == (1, None)
    assert (infer(df, row_tolerance=0.5).rows.min, infer(df, row_tolerance=0.5).rows.max) == (
        100,
        300,
    )
    assert c.validate(df).ok


def test_more_than_fifty_levels_are_not_a_category() -> None:
    df = pd.DataFrame({"city": [f"c{i % 60}" for i in range(600)]})
    assert infer(df).columns["city"].allowed is None
    df = pd.DataFrame({"city": [f"c{i % 50}" for i in range(600)]})
    assert len(infer(df).columns["city"].allowed or []) == 50


def test_yaml_round_trip_is_readable_and_equal(tmp_path: Path) -> None:
    c = infer(_train(), name="churn")
    path = c.to_yaml(tmp_path / "churn.contract.yaml")
    text = path.read_text()
    assert text.startswith("# Loopline data contract")
    assert "  plan:\n    dtype: str\n    nullable: false\n    allowed:\n    - basic\n" in text
    assert "unique: false" not in text  # unset rules are left out
    back = Contract.from_yaml(path)
    assert back == c
    assert back.validate(_train()).ok


def _every_kind_of_column() -> pd.DataFrame:
    day, t = dt.date(2024, 1, 1), pd.Timestamp("2024-01-01T00:00:00Z")
    return pd.DataFrame(
        {
            "day": [day, day + dt.timedelta(days=1)] * 2,
            "day_id": [day + dt.timedelta(days=i) for i in range(4)],
            "when": [t, t + pd.Timedelta(hours=1)] * 2,
            "naive": [dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 2)] * 2,
            "price": [decimal.Decimal("1.10"), decimal.Decimal("2.25")] * 2,
            "blob": [b"a", b"\xff"] * 2,
            "flag": [True, False] * 2,
            "maybe": [True, None, False, True],
            "n": [1, 2, 3, 4],
            "x": [0.1, 0.2, 0.1, 1e300],
            "plan": ["a", "b"] * 2,
            "level": pd.Categorical([day, day + dt.timedelta(days=1)] * 2),
            "mixed": [1, "a", 1, "a"],
        }
    )


def test_an_inferred_contract_accepts_its_own_data_after_a_yaml_round_trip(
    tmp_path: Path,
) -> None:
    # Dates, decimals and bytes went into ``allowed`` as objects, were written as text
    # (with a pydantic serializer warning; bytes that are not UTF-8 raised), and the
    # contract read back refused the very data it was inferred from.
    df = _every_kind_of_column()
    contract = infer(df, name="kinds")
    back = Contract.from_yaml(contract.to_yaml(tmp_path / "kinds.yaml"))  # warnings: errors
    report = back.validate(df)
    assert report.violations == []
    assert back.columns["plan"].allowed == ["a", "b"]
    assert back.columns["mixed"].allowed == [1, "a"]
    assert back.columns["maybe"].allowed == [False, True]
    assert back.columns["day"].allowed is None and back.columns["day_id"].unique


@pytest.mark.parametrize(
    ("yaml_text", "key"),
    [
        ("columns:\n  age:\n    dtype: int64\n    mni: 3\n", "columns.age.mni"),
        ("columns:\n  age:\n    dtype: int64\n    nullable: perhaps\n", "columns.age.nullable"),
        ("columns:\n  age:\n    dtype: whole-number\n", "columns.age.dtype"),
        ("columns:\n  age:\n    nullable: true\n", "columns.age.dtype"),
        ("rows:\n  min: -1\ncolumns: {}\n", "rows.min"),
        ("colums:\n  age:\n    dtype: int64\n", "colums"),
    ],
    ids=["typo", "bad-bool", "bad-dtype", "no-dtype", "negative-rows", "top-level-typo"],
)
def test_a_bad_contract_file_names_the_bad_key(tmp_path: Path, yaml_text: str, key: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml_text)
    with pytest.raises(InvalidInput, match=key.replace(".", r"\.")) as info:
        Contract.from_yaml(path)
    assert "c.yaml" in str(info.value)


@pytest.mark.parametrize(
    ("yaml_text", "key", "message"),
    [
        ("columns:\n  a: {dtype: object, min: 3}\n", "columns.a", "min applies to numbers"),
        ("columns:\n  a: {dtype: str, max: 3}\n", "columns.a", "max applies to numbers"),
        ("columns:\n  a: {dtype: bool, min: 0}\n", "columns.a", "min applies to numbers"),
        ("columns:\n  a: {dtype: int64, min: 10, max: 1}\n", "columns.a", "min 10 is greater"),
        ("rows: {min: 10, max: 1}\ncolumns: {}\n", "rows", "min 10 is greater than max 1"),
        # NaN compares false with everything: every row failed the rule.
        ("columns:\n  a: {dtype: float64, max: .nan}\n", "columns.a.max", "NaN is not a bound"),
        ("columns:\n  a: {dtype: float64, min: yes}\n", "columns.a.min", "True is not a number"),
        ("columns:\n  a: {dtype: int64, min: '3'}\n", "columns.a.min", "'3' is not a number"),
        # An allowed value of the wrong type failed only at validation, on every row.
        (
            "columns:\n  n: {dtype: int64, allowed: ['1', '2']}\n",
            "columns.n",
            "allowed holds '1' (str), and dtype int64 holds integers: it can never match",
        ),
        (
            "columns:\n  zip: {dtype: str, allowed: [501, 2134]}\n",
            "columns.zip",
            "allowed holds 501 (int), and dtype str holds text",
        ),
        (
            "columns:\n  n: {dtype: Int64, allowed: [1, 1.5]}\n",
            "columns.n",
            "allowed holds 1.5 (float), and dtype Int64 holds integers",
        ),
        (
            "columns:\n  b: {dtype: bool, allowed: [0, 1]}\n",
            "columns.b",
            "allowed holds 0 (int), and dtype bool holds booleans",
        ),
    ],
    ids=[
        "min-on-object",
        "max-on-str",
        "min-on-bool",
        "column-min-over-max",
        "rows-min-over-max",
        "nan-bound",
        "bool-bound",
        "text-bound",
        "text-allowed-on-int",
        "int-allowed-on-str",
        "fraction-allowed-on-int",
        "int-allowed-on-bool",
    ],
)
def test_rules_that_cannot_hold_are_refused_when_loading(
    tmp_path: Path, yaml_text: str, key: str, message: str
) -> None:
    # "min: 3" on an object column of mixed values raised a raw TypeError from validate;
    # "min > max" was accepted and refused every value.
    path = tmp_path / "c.yaml"
    path.write_text(yaml_text)
    with pytest.raises(InvalidInput, match=re.escape(message)) as info:
        Contract.from_yaml(path)
    assert info.value.field == key
    assert f"{key}: {message}" in str(info.value)


def test_rules_that_cannot_hold_are_refused_when_built() -> None:
    with pytest.raises(ValueError, match="min applies to numbers"):  # ValidationError
        ColumnRule(dtype="object", min=3)
    with pytest.raises(ValueError, match="min 10 is greater than max 1"):
        ColumnRule(dtype="float64", min=10, max=1)
    with pytest.raises(ValueError, match="min 10 is greater than max 1"):
        RowRule(min=10, max=1)
    assert ColumnRule(dtype="Int64", min=1, max=1).min == 1
    # Values the dtype can hold stay allowed; object and category columns hold anything.
    assert ColumnRule(dtype="float64", allowed=[1, 2.5]).allowed == [1, 2.5]
    assert ColumnRule(dtype="int64", allowed=[1, 2.0]).allowed == [1, 2.0]
    assert ColumnRule(dtype="object", allowed=[1, "a", True]).allowed == [1, "a", True]
    assert ColumnRule(dtype="category", allowed=["a", 1]).allowed == ["a", 1]


def test_infer_of_something_else_says_what_it_needs() -> None:
    # It said "can only validate a pandas DataFrame".
    with pytest.raises(InvalidInput, match="can only infer a contract from a pandas DataFrame"):
        ll.contracts.infer("x.csv")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="not a PosixPath") as info:
        ll.contracts.infer(Path("x.csv"))  # type: ignore[arg-type]
    assert "pd.read_csv(path)" in (info.value.hint or "")
    assert "loopline data infer-contract" in (info.value.hint or "")


def test_unreadable_contract_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no contract file"):
        Contract.from_yaml(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(InvalidInput, match="does not hold a contract"):
        Contract.from_yaml(tmp_path / "list.yaml")
    (tmp_path / "bad.yaml").write_text("columns: [\n")
    with pytest.raises(InvalidInput, match="not valid YAML"):
        Contract.from_yaml(tmp_path / "bad.yaml")
    # A folder and a binary file raised IsADirectoryError and UnicodeDecodeError.
    with pytest.raises(InvalidInput, match="is a folder, not a contract file") as info:
        Contract.from_yaml(tmp_path)
    assert info.value.field == "contract"
    (tmp_path / "bin.yaml").write_bytes(b"\x89PNG\r\n\x1a\n\xff")
    with pytest.raises(InvalidInput, match=r"bin\.yaml is not a text file"):
        Contract.from_yaml(tmp_path / "bin.yaml")


def test_writing_a_contract_where_it_cannot_go(tmp_path: Path) -> None:
    # Raw FileNotFoundError and IsADirectoryError.
    c = infer(pd.DataFrame({"x": [1, 2]}))
    with pytest.raises(InvalidInput, match=r"the folder .*nope does not exist") as info:
        c.to_yaml(tmp_path / "nope" / "c.yaml")
    assert info.value.field == "path" and "create the folder" in (info.value.hint or "")
    with pytest.raises(InvalidInput, match="it is a folder"):
        c.to_yaml(tmp_path)


@pytest.mark.parametrize(
    ("yaml_text", "key", "line"),
    [
        ("columns:\n  age: {dtype: int64}\n  age: {dtype: str}\n", "age", 3),
        ("columns:\n  a: {dtype: int64, min: 1, min: 5}\n", "min", 2),
        ("columns: {}\nname: a\nname: b\n", "name", 3),
    ],
    ids=["column", "rule", "top-level"],
)
def test_a_key_written_twice_is_refused(
    tmp_path: Path, yaml_text: str, key: str, line: int
) -> None:
    # YAML kept the last silently: a second "age:" replaced the first column's rules.
    path = tmp_path / "c.yaml"
    path.write_text(yaml_text)
    with pytest.raises(InvalidInput, match=f"line {line}: the key '{key}' is written twice"):
        Contract.from_yaml(path)


def _contract() -> Contract:
    return Contract(
        {
            "id": ColumnRule(dtype="int64", nullable=False, unique=True),
            "age": ColumnRule(dtype="int64", nullable=False, min=18, max=99),
            "plan": ColumnRule(dtype="str", nullable=False, allowed=["basic", "pro"]),
            "score": ColumnRule(dtype="float64", nullable=True),
        },
        rows=RowRule(min=2, max=5),
        name="churn",
    )


def _good() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [1, 2, 3],
            "age": [20, 30, 40],
            "plan": ["basic", "pro", "pro"],
            "score": [0.1, None, 0.3],
        }
    )


def _by_rule(violations: list[Violation]) -> dict[tuple[str | None, str], Violation]:
    return {(v.column, v.rule): v for v in violations}


def test_validate_passes_good_data() -> None:
    report = _contract().validate(_good())
    assert report.ok and report.violations == [] and report.rows == 3
    report.raise_for_violations()


@pytest.mark.parametrize(
    ("change", "column", "rule", "expected", "actual", "rows"),
    [
        (lambda d: d.assign(age=[20, 7, 40]), "age", "min", ">= 18", 7, [1]),
        (lambda d: d.assign(age=[20, 30, 120]), "age", "max", "<= 99", 120, [2]),
        (
            lambda d: d.assign(plan=["basic", "gold", "pro"]),
            "plan",
            "allowed",
            "one of ['basic', 'pro']",
            ["gold"],
            [1],
        ),
        (lambda d: d.assign(id=[1, 1, 3]), "id", "unique", "all values unique", None, [0, 1]),
        (
            lambda d: d.assign(plan=["basic", None, "pro"]),
            "plan",
            "nullable",
            "no nulls",
            None,
            [1],
        ),
        (
            lambda d: d.assign(age=["20", "thirty", "40"]),
            "age",
            "dtype",
            "int64",
            "dtype str",
            [1],
        ),
        (lambda d: d.drop(columns=["score"]), "score", "missing_column", None, "absent", []),
        (lambda d: d.assign(extra=1), "extra", "extra_column", None, "dtype int64", []),
        (lambda d: d.iloc[:1], None, "rows", "between 2 and 5", 1, []),
    ],
    ids=["min", "max", "allowed", "unique", "nullable", "dtype", "missing", "extra", "rows"],
)
def test_each_rule_is_reported_with_expected_actual_and_examples(
    change: object,
    column: str | None,
    rule: str,
    expected: str | None,
    actual: object,
    rows: list[int],
) -> None:
    bad = change(_good())  # type: ignore[operator]
    report = _contract().validate(bad)
    assert not report.ok
    found = _by_rule(report.violations)
    assert (column, rule) in found, report.violations
    v = found[(column, rule)]
    if expected is not None:
        assert v.expected == expected
    if actual is not None:
        assert v.actual == actual
    assert [e["row"] for e in v.examples] == rows


def test_all_violations_are_collected_not_just_the_first() -> None:
    bad = pd.DataFrame(
        {
            "id": [1, 1, 3, 4, 5, 6],
            "age": [5, 30, 400, 30, 30, 30],
            "plan": ["basic", "gold", "pro", "pro", "pro", "pro"],
            "extra": [0] * 6,
        }
    )
    report = _contract().validate(bad)
    assert set(_by_rule(report.violations)) == {
        ("id", "unique"),
        ("age", "min"),
        ("age", "max"),
        ("plan", "allowed"),
        ("score", "missing_column"),
        ("extra", "extra_column"),
        (None, "rows"),
    }
    with pytest.raises(ContractViolation) as info:
        report.raise_for_violations()
    message = str(info.value)
    assert "7 violation(s)" in message and "score: missing_column" in message
    assert "age: min: expected >= 18, actual 5 (e.g. row 0=5)" in message
    assert info.value.exit_code == 3
    assert len(info.value.violations) == 7  # type: ignore[attr-defined]


def test_fifty_features_never_silently_become_forty_eight() -> None:
    train = pd.DataFrame({f"f{i}": np.arange(10.0) for i in range(50)})
    contract = infer(train)
    report = contract.validate(train.drop(columns=["f7", "f31"]))
    assert {(v.column, v.rule) for v in report.violations} == {
        ("f7", "missing_column"),
        ("f31", "missing_column"),
    }


def test_nulls_do_not_count_as_duplicates_and_bad_input_is_refused() -> None:
    c = Contract({"k": ColumnRule(dtype="float64", unique=True)})
    assert c.validate(pd.DataFrame({"k": [1.0, None, None, 2.0]})).ok
    with pytest.raises(InvalidInput, match="DataFrame"):
        c.validate([1, 2])
    with pytest.raises(InvalidInput, match="duplicate column"):
        c.validate(pd.DataFrame([[1.0, 2.0]], columns=["k", "k"]))


def test_report_as_json_data() -> None:
    report = _contract().validate(_good().assign(age=[20, 7, 40]))
    data = report.to_dict()
    assert data["ok"] is False and data["contract"] == "churn"
    assert data["violations"][0]["examples"] == [{"row": 1, "value": 7}]


def test_infinite_values_are_reported_as_infinite() -> None:
    # They were reported as None: "max: expected <= 3.0, actual None (e.g. row 1=None)".
    c = infer(pd.DataFrame({"x": [1.0, 2.0, 3.0]}), name="x")
    report = c.validate(pd.DataFrame({"x": [1.0, np.inf, -np.inf]}))
    found = _by_rule(report.violations)
    assert (found[("x", "max")].actual, found[("x", "max")].examples) == (
        np.inf,
        [{"row": 1, "value": np.inf}],
    )
    assert found[("x", "min")].actual == -np.inf
    assert "actual inf (e.g. row 1=inf)" in str(found[("x", "max")])
    as_json = {v["rule"]: v for v in report.to_dict()["violations"]}  # JSON has no infinity
    assert as_json["max"]["actual"] == "inf" and as_json["min"]["examples"][0]["value"] == "-inf"


def test_infer_keeps_infinite_bounds_through_yaml(tmp_path: Path) -> None:
    df = pd.DataFrame({"x": [1.0, np.inf, -np.inf]})
    c = infer(df)
    assert (c.columns["x"].min, c.columns["x"].max) == (-np.inf, np.inf)
    back = Contract.from_yaml(c.to_yaml(tmp_path / "c.yaml"))
    assert back == c and back.validate(df).ok


def test_list_and_dict_columns_infer_and_validate() -> None:
    # infer raised TypeError "unhashable type: 'list'" (and 'numpy.ndarray' for a list
    # column read from Parquet); an allowed or unique rule on such a column crashed validate.
    df = pd.DataFrame(
        {
            "tags": [["a"], ["b"], ["a"]],
            "vec": [np.array([1.0]), np.array([2.0]), np.array([1.0])],
            "meta": [{"k": 1}, {"k": 2}, {"k": 1}],
            "n": [1, 2, 3],
        }
    )
    c = infer(df)
    for name in ("tags", "vec", "meta"):
        rule = c.columns[name]
        assert (rule.dtype, rule.allowed, rule.unique) == ("object", None, False), name
    assert c.columns["n"].unique
    assert c.validate(df).ok
    strict = Contract(
        {
            "tags": ColumnRule(dtype="object", unique=True),
            "vec": ColumnRule(dtype="object", unique=True),
            "meta": ColumnRule(dtype="object", allowed=["x"]),
            "n": ColumnRule(dtype="int64"),
        }
    )
    found = _by_rule(strict.validate(df).violations)
    assert set(found) == {("tags", "unique"), ("vec", "unique"), ("meta", "allowed")}
    assert [e["row"] for e in found[("vec", "unique")].examples] == [0, 2]
    assert found[("meta", "allowed")].actual == [{"k": 1}, {"k": 2}]
    assert found[("vec", "unique")].examples[0]["value"] == [1.0]
