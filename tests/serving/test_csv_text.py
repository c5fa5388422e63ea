"""A CSV file's text parsed by the model's signature (``loopline score``): features only."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from loopline.errors import InvalidInput
from loopline.serving.csv_text import parse_features
from loopline.training.signature import ModelSignature
from loopline.training.signature_columns import ColumnSpec


def _signature(*columns: ColumnSpec) -> ModelSignature:
    return ModelSignature(columns)


def _parse(sig: ModelSignature, **columns: list[str]) -> tuple[pa.Table, Any]:
    return parse_features(pa.table({k: pa.array(v, pa.string()) for k, v in columns.items()}), sig)


def test_each_type_is_read_as_the_csv_reader_spells_it() -> None:
    sig = _signature(
        ColumnSpec("f", "float", nullable=True),
        ColumnSpec("n", "int", nullable=True),
        ColumnSpec("ok", "bool", nullable=True),
        ColumnSpec("s", "string"),
    )
    table, frame = _parse(
        sig,
        f=[" 1.5", "1e3", "NA", "-0.5 "],
        n=["007", "12", "-3", "9223372036854775807"],
        ok=["true", "False", "0", "null"],
        s=["NA", "", " x ", "007"],
        id=["1", "2", "3", "4"],
    )
    assert table.column("f").to_pylist() == [1.5, 1000.0, None, -0.5]
    assert table.column("n").to_pylist() == [7, 12, -3, 2**63 - 1]  # exact, as int64
    assert table.column("ok").to_pylist() == [True, False, False, None]
    assert table.column("s").to_pylist() == ["NA", "", " x ", "007"]  # text stays text
    assert table.column("id").to_pylist() == ["1", "2", "3", "4"]  # not a feature: as is
    assert list(frame.columns) == ["f", "n", "ok", "s"]
    sig.validate(frame)  # what the model is given passes its signature


def test_an_int_column_written_as_floats_is_ints_when_whole_and_exact() -> None:
    sig = _signature(ColumnSpec("n", "int"))
    table, _ = _parse(sig, n=["3.0", "4", "1e2"])
    assert table.column("n").type == pa.int64() and table.column("n").to_pylist() == [3, 4, 100]
    _, frame = _parse(sig, n=["3.0", "4.5"])
    assert frame["n"].tolist() == [3.0, 4.5]  # the signature's to judge: a fraction
    with pytest.raises(InvalidInput, match=r"4\.5") as e:
        sig.validate(frame)
    assert e.value.field == "n" and "row 1" in e.value.message
    # Past 2**53 a float no longer stands for one integer: not made an int here.
    table, _ = _parse(sig, n=["1", "9007199254740993.0"])
    assert table.column("n").type == pa.float64()


@pytest.mark.parametrize(
    ("spec", "values", "bad", "row"),
    [
        (ColumnSpec("c", "float"), ["1", "2", "3", "x", "4", "y"], "'x'", 3),
        (ColumnSpec("c", "float"), ["abc"], "'abc'", 0),
        (ColumnSpec("c", "int"), ["1", "2", "3.5e", "4"], "'3.5e'", 2),
        (ColumnSpec("c", "bool"), ["true", "yes", "false"], "'yes'", 1),
    ],
    ids=["float-word-late", "float-word-first", "int-word", "bool-word"],
)
def test_a_value_that_does_not_parse_is_named_with_its_row_by_the_signature(
    spec: ColumnSpec, values: list[str], bad: str, row: int
) -> None:
    sig = _signature(spec)
    _, frame = _parse(sig, c=values)
    with pytest.raises(InvalidInput) as e:
        sig.validate(frame)
    assert e.value.field == "c"
    assert f"got str {bad} (row {row})" in e.value.message, e.value.message


def test_a_null_spelling_is_a_null_the_signature_refuses_where_it_allows_none() -> None:
    sig = _signature(ColumnSpec("f", "float"))
    _, frame = _parse(sig, f=["1", "NA"])
    with pytest.raises(InvalidInput, match="is NaN/null in row 1"):
        sig.validate(frame)


def test_category_values_are_the_scalars_they_spell_unless_every_category_is_text() -> None:
    numbers = _signature(ColumnSpec("c", "category", categories=(1, 2.5, True)))
    _, frame = _parse(numbers, c=["1", "2.5", "true"])
    assert frame["c"].tolist() == [1, 2.5, True]
    numbers.validate(frame)
    words = _signature(ColumnSpec("c", "category", categories=("007", "7")))
    _, frame = _parse(words, c=["007", "7"])
    assert frame["c"].tolist() == ["007", "7"]
    words.validate(frame)
