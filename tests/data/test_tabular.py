"""Statistics of table columns (``loopline.data.tabular``) for every Arrow type."""

from __future__ import annotations

import datetime as dt
import decimal
import json
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pytest

import loopline as ll
from loopline.core.context import Context
from loopline.data import tabular
from loopline.errors import InvalidInput


def test_integers_past_2_53_keep_exact_min_and_max() -> None:
    # A safe cast to float64 refused 2**53 + 1 (ArrowInvalid), so such ids could not be
    # registered.
    big = 2**53 + 1
    stats = tabular.column_stats(pa.chunked_array([[big, 1, None]]))
    assert (stats["min"], stats["max"], stats["count"], stats["nulls"]) == (1, big, 2, 1)
    assert stats["mean"] == pytest.approx(big / 2)
    top = 2**64 - 1
    stats = tabular.column_stats(pa.chunked_array([pa.array([top, 0], pa.uint64())]))
    assert (stats["min"], stats["max"]) == (0, top)
    assert isinstance(stats["mean"], float)


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        (
            pa.array([dt.timedelta(seconds=1), None, dt.timedelta(days=-1)], pa.duration("us")),
            {"count": 2, "nulls": 1, "min": "-PT86400S", "max": "PT1S"},
        ),
        (
            pa.array([1, 2_500_000_001], pa.duration("ns")),
            {"count": 2, "nulls": 0, "min": "PT0.000000001S", "max": "PT2.500000001S"},
        ),
        (pa.array([None, None], pa.duration("s")), {"count": 0, "nulls": 2}),
        (pa.array([b"a", None, b"bc"]), {"count": 2, "nulls": 1}),
        (pa.array([[1, 2], None, []]), {"count": 2, "nulls": 1}),
        (pa.array([{"a": 1}, {"a": 2}]), {"count": 2, "nulls": 0}),
        (pa.array([[("k", 1)]], pa.map_(pa.string(), pa.int64())), {"count": 1, "nulls": 0}),
        (
            pa.array([pa.MonthDayNano([1, 2, 3])], pa.month_day_nano_interval()),
            {"count": 1, "nulls": 0},
        ),
    ],
    ids=[
        "duration-us",
        "duration-ns",
        "duration-null",
        "binary",
        "list",
        "struct",
        "map",
        "interval",
    ],
)
def test_columns_without_numbers_get_what_can_be_computed(
    column: pa.Array, expected: dict[str, object]
) -> None:
    stats = tabular.column_stats(pa.chunked_array([column]))
    assert {k: v for k, v in stats.items() if k in expected} == expected
    assert "mean" not in stats
    orjson.dumps(stats)  # stored as JSON with the version


def test_decimal_min_and_max_are_exact_text() -> None:
    values = [decimal.Decimal("1.10"), decimal.Decimal("12345678901234567890.01"), None]
    stats = tabular.column_stats(pa.chunked_array([pa.array(values)]))
    assert (stats["min"], stats["max"]) == ("1.10", "12345678901234567890.01")
    assert stats["mean"] == pytest.approx(12345678901234567890.01 / 2)
    orjson.dumps(stats)


def test_infinities_are_counted_and_shown_not_dropped() -> None:
    # min, max and mean were None for a column holding one infinity: it looked like an
    # empty column, and the diff of a column that gained infinities said nothing.
    col = pa.chunked_array([[1.0, float("inf"), float("-inf"), float("nan"), None, 3.0]])
    stats = tabular.column_stats(col)
    assert stats == {
        "count": 4,
        "nulls": 2,
        "min": "-inf",
        "max": "inf",
        "mean": 2.0,
        "std": pytest.approx(2.0**0.5),
        "infinite": 2,
    }
    assert orjson.loads(orjson.dumps(stats))["max"] == "inf"
    only = tabular.column_stats(pa.chunked_array([[float("inf")]]))
    assert (only["min"], only["max"], only["mean"], only["std"]) == ("inf", "inf", None, None)
    finite = tabular.column_stats(pa.chunked_array([[1.0, 2.0]]))
    assert finite["infinite"] == 0 and finite["max"] == 2.0
    assert "infinite" not in tabular.column_stats(pa.chunked_array([[1, 2]]))


def test_float16_columns_get_statistics_in_float32() -> None:
    # Arrow has no min_max kernel for half floats: registering one raised
    # ArrowNotImplementedError.
    col = pa.chunked_array([pa.array([1.5, None, float("inf"), -2.0], pa.float16())])
    stats = tabular.column_stats(col)
    assert (stats["min"], stats["max"], stats["mean"], stats["infinite"]) == (-2.0, "inf", -0.25, 1)
    assert col.type == pa.float16()  # the column itself is not changed


def test_register_float16_keeps_the_stored_type(ctx: Context) -> None:
    df = pd.DataFrame({"f": np.array([1.5, 2.5], dtype="float16")})
    v = ll.datasets.register("half", df)
    assert v.schema == {"f": "halffloat"} and v.stats["f"]["mean"] == 2.0
    assert v.to_pandas()["f"].dtype == np.float16


@pytest.mark.parametrize(
    "column",
    [np.array([1 + 2j, 3j]), pd.Series([1 + 2j, 3j], dtype=object)],
    ids=["complex128", "object"],
)
def test_complex_columns_are_refused_naming_the_column(column: object) -> None:
    # A complex128 column raised ArrowNotImplementedError 'Unsupported numpy type 15'.
    df = pd.DataFrame({"ok": [1, 2], "z": column})
    with pytest.raises(InvalidInput, match="column 'z' holds complex numbers") as info:
        tabular.from_pandas(df)
    assert info.value.field == "source" and "df['z'].real" in (info.value.hint or "")


def test_a_column_arrow_refuses_is_named() -> None:
    df = pd.DataFrame({"ok": [1, 2], "mixed": pd.Series([1, "a"], dtype=object)})
    with pytest.raises(InvalidInput, match="column 'mixed' cannot be stored") as info:
        tabular.from_pandas(df)
    assert "df['mixed'].astype(str)" in (info.value.hint or "")


@pytest.mark.parametrize(
    ("text", "kind", "values"),
    [
        ("00501\n02134\n", "string", ["00501", "02134"]),  # zip codes
        ("+4930123\n4940\n", "string", ["+4930123", "4940"]),  # phone numbers
        ("-007\n5\n", "string", ["-007", "5"]),
        (" 007\n5\n", "string", [" 007", "5"]),  # Arrow trims spaces around numbers
        ("01.5\n2\n", "string", ["01.5", "2"]),
        ("99999999999999999999\n1\n", "string", ["99999999999999999999", "1"]),  # past int64
        ("9007199254740993\n1.5\n", "string", ["9007199254740993", "1.5"]),  # a double rounds
        ("\nNA\nnull\n", "string", [None, None, None]),  # no value at all: not Arrow's null
        # Numbers that keep everything they say stay numbers.
        ("0\n-0.25\n0.5\n1e3\n 12\n1.50\n", "double", [0.0, -0.25, 0.5, 1000.0, 12.0, 1.5]),
        ("9007199254740992\n1e20\ninf\n", "double", [2.0**53, 1e20, float("inf")]),
        ("0\n-3\n9223372036854775807\n\n", "int64", [0, -3, 2**63 - 1, None]),
    ],
    ids=[
        "zip",
        "plus",
        "negative-zero-padded",
        "space-then-zero",
        "zero-padded-float",
        "past-int64",
        "past-2-53-in-doubles",
        "no-values",
        "floats",
        "big-doubles",
        "ints",
    ],
)
def test_csv_numbers_keep_the_text_they_would_lose(
    tmp_path: Path, text: str, kind: str, values: list[object]
) -> None:
    # "00501" was read as 501, "+4930123" as 4930123.0, a 20-digit id as 1e20, and a column
    # with no value typed null.
    path = tmp_path / "t.csv"
    path.write_text("id,x\n" + "".join(f"{i},{v}\n" for i, v in enumerate(text.split("\n")[:-1])))
    table = tabular.read_csv(path)
    assert str(table.schema.field("x").type) == kind
    assert table.column("x").to_pylist() == values
    assert table.schema.field("id").type == pa.int64()


@pytest.mark.parametrize(
    ("values", "row", "back"),
    [
        ([{"a": 1}, {"b": 2}], 0, "{'a': 1, 'b': None}"),  # other keys: filled with null
        ([{"a": 1}, {"a": 1.5}], 0, "{'a': 1.0}"),  # an int among floats: a float
        ([{"a": {"x": 1}}, {"a": {"y": 2}}], 0, "{'a': {'x': 1, 'y': None}}"),
        ([[{"a": 1}], [{"b": 1}]], 0, "[{'a': 1, 'b': None}]"),  # lists of dicts
    ],
    ids=["keys", "int-to-float", "nested-keys", "list-of-dicts"],
)
def test_dicts_a_table_would_change_are_refused(values: list[object], row: int, back: str) -> None:
    # They were stored as a struct with every key: {'a': 1} read back as {'a': 1.0, 'b': None}.
    df = pd.DataFrame({"id": range(len(values)), "d": values})
    with pytest.raises(InvalidInput, match="column 'd' holds dicts a table would change") as info:
        tabular.from_pandas(df)
    assert f"row {row} " in info.value.message and info.value.message.endswith(back)
    assert "df['d'].map(json.dumps)" in (info.value.hint or "")


def test_dicts_of_one_shape_round_trip(ctx: Context) -> None:
    values = [{"a": 1, "t": "x", "v": [1.5]}, None, {"a": None, "t": "y", "v": []}]
    v = ll.datasets.register("dicts", pd.DataFrame({"d": values}))
    assert v.to_arrow().column("d").to_pylist() == values
    # JSON text, as the hint says, keeps any dict.
    mixed = pd.DataFrame({"d": [{"a": 1}, {"b": 2.5}]})
    text = ll.datasets.register("json", mixed.assign(d=mixed.d.map(json.dumps)))
    assert [json.loads(t) for t in text.to_pandas().d] == list(mixed.d)


def test_a_dict_column_arrow_refuses_gets_the_json_hint() -> None:
    with pytest.raises(InvalidInput, match="column 'd' cannot be stored") as info:
        tabular.from_pandas(pd.DataFrame({"d": [{"a": True}, {"a": 1}]}))
    assert "json.dumps" in (info.value.hint or "")
