"""Request body shapes and their errors; the serving package's import cost."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopline.errors import InvalidInput
from loopline.serving.body_json import MalformedBody, loads
from loopline.serving.inputs import parse, parse_accepted
from loopline.serving.model_rejection import ModelRejected, rejected_by_model
from loopline.serving.model_rows import as_records


def test_three_shapes_give_the_same_records() -> None:
    names = ["a", "b"]
    records = as_records(*parse({"instances": [{"a": 1, "b": 2}]})[:2], names)
    lists = as_records(*parse({"instances": [[1, 2]]})[:2], names)
    split = as_records(
        *parse({"dataframe_split": {"columns": ["b", "a"], "data": [[2, 1]]}})[:2], names
    )
    assert records == lists == split == [{"a": 1, "b": 2}]
    assert parse({"dataframe_records": [{"a": 1}], "key": "7"})[2] == "7"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"instances": "x"}, "instances"),
        ({"instances": [{"a": 1}, [1]]}, "instances"),
        ({"instances": [[1], {"a": 1}]}, "instances"),
        ({"dataframe_split": {"columns": "a", "data": [[1]]}}, "dataframe_split.columns"),
        ({"dataframe_split": [1]}, "dataframe_split"),
        ({"instances": [{"a": 1}], "key": [1]}, "key"),
        ({"instances": [{"a": 1}], "key": 7}, "key"),
        ({"instances": [{"a": 1}], "key": True}, "key"),
        ({"instances": [{"a": 1}], "key": None}, "key"),
        ("rows", "body"),
    ],
    ids=[
        "not-a-list",
        "mixed-dict-first",
        "mixed-list-first",
        "columns",
        "split-not-object",
        "key",
        "key-number",
        "key-bool",
        "key-null",
        "string-body",
    ],
)
def test_bad_shapes_name_the_field(payload: object, field: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        parse(payload)
    assert exc.value.field == field


@pytest.mark.parametrize(
    ("payload", "field", "words"),
    [
        (
            {"dataframe_split": {"columns": ["a", "b", "a"], "data": [[1, 2, 3]]}},
            "dataframe_split.columns",
            "names column 'a' twice",
        ),
        (
            {"instances": [{"a": 1}], "dataframe_split": {"columns": ["x"], "data": [[1]]}},
            "dataframe_split",
            "both 'instances' and 'dataframe_split'",
        ),
        (
            {"instances": [{"a": 1}], "dataframe_records": [{"a": 2}]},
            "dataframe_records",
            "both 'instances' and 'dataframe_records'",
        ),
    ],
    ids=["duplicate-column", "instances-and-split", "instances-and-records"],
)
def test_ambiguous_bodies_are_refused_instead_of_one_part_winning(
    payload: object, field: str, words: str
) -> None:
    with pytest.raises(InvalidInput) as exc:
        parse(payload)
    assert exc.value.field == field and words in exc.value.message


def test_row_width_is_checked_against_the_signature() -> None:
    with pytest.raises(InvalidInput, match=r"instances\[1\] has 1 values.*a, b"):
        as_records("lists", [[1, 2], [3]], ["a", "b"])


def test_json_with_nan_parses_and_garbage_does_not() -> None:
    assert loads(b'{"x": Infinity}')["x"] == float("inf")
    with pytest.raises(MalformedBody, match="not valid JSON"):
        loads(b"{'x': 1}")


def test_the_model_server_imports_without_heavy_modules() -> None:
    code = (
        "import sys, loopline.serving.app\n"
        "heavy = ['pandas', 'sklearn', 'scipy', 'pyarrow', 'skops', 'fastapi', "
        "'loopline.server', 'loopline.training.registry', 'loopline.training.registry_reads', "
        "'loopline.training.registry_lineage', 'loopline.training.registry_model_version', "
        "'pandera', 'duckdb']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (rb'{"instances": [{"a": 1, "\udfff": 3}]}', "instances[0]", r"key '\udfff'"),
        (rb'{"instances": [[1, "x\ud800y"]]}', "instances[0][1]", r"lone surrogate (\ud800)"),
        (rb'{"instances": [[1, 2]], "key": "\uDBFF"}', "key", r"\udbff"),
        (rb'{"a": "\ude00\ud83d", "b": NaN}', "a", "lone surrogate"),  # a pair reversed
        (
            b'{"instances": [{"a": "\xed\xa0\x80"}]}',
            "body",
            "not valid UTF-8: byte 0xed at offset 22",
        ),
        (b'{"instances": [[1, 2]]}\xff', "body", "byte 0xff at offset 23"),
    ],
    ids=["key", "value", "key-field", "reversed-pair", "utf8-surrogate", "invalid-byte"],
)
def test_text_that_is_not_unicode_is_malformed_naming_where(
    body: bytes, field: str, words: str
) -> None:
    """The fallback parser (for NaN/Infinity) took lone surrogate escapes and surrogates
    encoded in UTF-8: strings no JSON answer can hold, so echoing one was a 500."""
    with pytest.raises(MalformedBody) as info:
        loads(body)
    assert info.value.field == field and words in str(info.value), str(info.value)


def test_escaped_pairs_byte_order_marks_and_nan_still_parse() -> None:
    assert loads(rb'{"x": "\ud83d\ude00", "y": NaN}')["x"] == "\U0001f600"
    assert loads(rb'{"x": "\\ud800", "y": NaN}')["x"] == "\\ud800"  # an escaped backslash
    assert loads(b'\xef\xbb\xbf{"x": 1}') == {"x": 1}


@pytest.mark.parametrize(
    ("payload", "field", "words"),
    [
        (
            {"instances": [[1, 2]], "params": {"a": 1}},
            "params",
            "params are not supported by Loopline's model server; remove the field",
        ),
        (
            {"dataframe_split": {"columns": ["a"], "data": [[1]]}, "Key": "u"},
            "Key",
            "unknown field 'Key'; the body takes instances, inputs, dataframe_records, "
            "dataframe_split and key",
        ),
        (
            {"dataframe_split": {"columns": ["a"], "data": [[1]], "foo": 1}},
            "dataframe_split.foo",
            "unknown field 'foo' in dataframe_split; it takes columns and data",
        ),
        (
            {"rows": [{"a": 1}]},
            "rows",
            "unknown field 'rows'",
        ),
    ],
    ids=["mlflow-params", "unknown", "unknown-in-split", "unknown-without-rows"],
)
def test_a_field_the_server_does_not_read_is_refused_not_ignored(
    payload: object, field: str, words: str
) -> None:
    """The OpenAPI description says additionalProperties: false; the field was ignored."""
    with pytest.raises(InvalidInput) as exc:
        parse(payload)
    assert exc.value.field == field and words in exc.value.message, exc.value.message


def test_mlflow_inputs_are_rows_or_columns_of_values() -> None:
    """MLflow's tensor input was "the body has no rows (keys: inputs)", field instances."""
    names = ["a", "b"]
    columns = parse({"inputs": {"b": [2, 4], "a": [1, 3]}, "key": "u"})
    assert columns == ("split", (["b", "a"], [[2, 1], [4, 3]]), "u")
    assert as_records(*columns[:2], names) == [{"b": 2, "a": 1}, {"b": 4, "a": 3}]
    assert parse({"inputs": [[1, 2]]})[:2] == ("lists", [[1, 2]])
    assert parse({"inputs": [{"a": 1, "b": 2}]})[:2] == ("records", [{"a": 1, "b": 2}])


@pytest.mark.parametrize(
    ("payload", "field", "words"),
    [
        ({"inputs": {}}, "inputs", "inputs is empty"),
        ({"inputs": {"a": 1}}, "inputs.a", "must be a list of values, one per row, got a number"),
        ({"inputs": {"a": [1, 2], "b": [3]}}, "inputs.b", "inputs.b has 1 values, inputs.a has 2"),
        ({"inputs": {"a": [], "b": []}}, "inputs.a", "inputs.a is empty"),
        ({"inputs": "x"}, "inputs", "inputs must be a list of rows, got a string"),
        ({"inputs": [[1]], "instances": [[1]]}, "inputs", "both 'instances' and 'inputs'"),
        ({"key": "u"}, "body", "the body has no rows: send them under instances, inputs, "),
        ({}, "body", "(keys given: none)"),
        ({"instances": [1]}, "instances", "instances[0] is a number; a row is"),
        ({"instances": ["x"]}, "instances", "instances[0] is a string; a row is"),
        ({"instances": [[1], {"a": 1}]}, "instances", "instances[1] is an object; every row"),
        ({"instances": {"a": 1}}, "instances", "must be a list of rows, got an object"),
        ([1], "body", "the body must be a JSON object, got an array"),
        (
            {"dataframe_split": {"columns": ["a"], "data": [None]}},
            "dataframe_split.data",
            "dataframe_split.data[0] is null; a row is a list of 1 values",
        ),
        (
            {"dataframe_split": {"columns": ["a"], "data": [[1]], "index": [0, 1]}},
            "dataframe_split.index",
            "dataframe_split.index has 2 labels for 1 rows",
        ),
        (
            {"dataframe_split": {"columns": ["a"], "data": [[1]], "index": 0}},
            "dataframe_split.index",
            "must be a list of row labels, got a number",
        ),
    ],
)
def test_bad_shapes_say_what_is_wrong_in_json_words(
    payload: object, field: str, words: str
) -> None:
    """Python's names leaked into messages: "instances[0] is a int", "got dict"."""
    with pytest.raises(InvalidInput) as exc:
        parse(payload)
    assert exc.value.field == field and words in exc.value.message, exc.value.message


def test_pandas_split_orient_with_its_index_is_taken() -> None:
    import pandas as pd

    split = pd.DataFrame({"a": [1, 2], "b": [3, 4]}, index=[7, 9]).to_dict(orient="split")
    assert set(split) == {"index", "columns", "data"}
    assert parse({"dataframe_split": split})[:2] == ("split", (["a", "b"], [[1, 3], [2, 4]]))


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (b'{"instances": [{"a": 1, "a": 2}]}', "a"),
        (b'{"instances": [{"a": 1}], "instances": [{"a": 2}]}', "instances"),
        (b'{"dataframe_split": {"columns": ["a"], "data": [[1]], "data": [[2]]}}', "data"),
        (b'{"inputs": {"a": [1], "a": [2]}}', "a"),
        (b'{"instances": [{"t": "10:00", "a": 1, "a": 2}]}', "a"),  # a colon in a string
        (b'{"instances": [{"n": {"x": 1, "x": 2}}]}', "x"),  # an object in a value
        (b'{"labels": [{"request_id": "r", "label": 1, "label": 0}]}', "label"),
        (b'{"instances": [{"a": NaN, "a": 1}]}', "a"),  # the parser that reads NaN
        (b'\xef\xbb\xbf{"a": 1, "a": 2}', "a"),  # after a byte order mark
        (b'{"k\\u003a": 1, "k:": 2}', "k:"),  # an escaped colon is the same key
    ],
)
def test_a_key_given_twice_is_refused_naming_it(body: bytes, key: str) -> None:
    """Was taken with the last value ("tenure": 3, "tenure": 50 predicted on 50)."""
    with pytest.raises(InvalidInput) as exc:
        loads(body)
    assert exc.value.field == key and "twice in one object" in exc.value.message


def test_bodies_with_colons_in_strings_or_deep_objects_still_parse() -> None:
    body = b'{"instances": [{"t": "10:00:00", "u": "a\\":b", "n": {"x": {"y": 1}}}], "key": ":"}'
    assert loads(body) == {
        "instances": [{"t": "10:00:00", "u": 'a":b', "n": {"x": {"y": 1}}}],
        "key": ":",
    }
    deep = b'{"a": ' * 500 + b"1" + b"}" * 500
    assert loads(deep) is not None


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=300, derandomize=True, deadline=None, database=None)
@given(_json_values)
def test_any_json_without_a_repeated_key_parses_as_orjson_parses_it(value: object) -> None:
    body = orjson.dumps(value)
    assert loads(body) == orjson.loads(body)


@pytest.mark.parametrize(
    ("body", "names", "field", "words"),
    [
        ({"instances": [{"a": 1.0, "b": "x"}]}, None, "b", "column 'b' (a string, 'x', row 0)"),
        ({"instances": [[1.0, 2.0], [[3], 4.0]]}, ["a", "b"], "a", "column 'a' (an array"),
        ({"instances": [[1.0, 2.0], [3.0, "y"]]}, None, "instances[1][1]", "column 1 (by"),
        ({"inputs": {"a": [1.0, 2.0], "b": [3.0, {"k": 1}]}}, None, "b", "(an object"),
        ({"instances": [{"a": "p", "b": "q"}]}, None, "a", "column 'b' (a string, 'q'"),
    ],
    ids=["records", "lists-named", "lists-by-position", "inputs-columns", "two-columns"],
)
def test_a_models_raise_on_values_that_are_not_numbers_names_the_column(
    body: dict[str, object], names: list[str] | None, field: str, words: str
) -> None:
    shape, rows, _ = parse(body)
    exc = ValueError("could not convert string to float")
    rejected = rejected_by_model(exc, shape, rows, names)
    assert isinstance(rejected, ModelRejected) and isinstance(rejected, InvalidInput)
    assert rejected.field == field and words in rejected.message, rejected.message
    assert "could not convert string to float" in rejected.message
    assert rejected.http_status == 422


def test_a_models_raise_on_numbers_or_of_another_kind_is_not_the_clients() -> None:
    """Numbers (null and booleans too) are what a numeric model takes: its raise on them,
    or an error other than a ValueError/TypeError, stays the model's failure."""
    numbers = parse({"instances": [{"a": 1.0, "b": None, "c": True}]})
    assert rejected_by_model(ValueError("Input X contains NaN"), *numbers[:2], None) is None
    text = parse({"instances": [{"a": "x"}]})
    assert rejected_by_model(KeyError("a"), *text[:2], None) is None
    assert rejected_by_model(RuntimeError("boom"), *text[:2], None) is None


def test_a_long_message_of_the_model_and_many_columns_are_cut_short() -> None:
    shape, rows, _ = parse({"instances": [{f"c{i}": "x" * 100 for i in range(8)}]})
    rejected = rejected_by_model(TypeError("e" * 5000), shape, rows, None)
    assert rejected is not None and len(rejected.message) < 1000
    assert "and 3 more columns" in rejected.message and "c5" not in rejected.message


ACCEPTED = [
    b'{"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2.5], [3, 4]]}}',
    b'{"dataframe_split": {"columns": ["a"], "data": [[1]], "index": [7]}, "key": "u-1"}',
    b'{"key": "u-2", "dataframe_split": {"columns": ["a"], "data": [[NaN]]}}',
    b'{"instances": [{"a": 1, "b": "x"}]}',
    b'{"instances": [[1, 2]], "key": "k"}',
    b'{"inputs": {"a": [1, 2], "b": [3, 4]}}',
    b'{"inputs": [[Infinity]]}',
    b'{"dataframe_records": [{"a": null}]}',
]


@pytest.mark.parametrize("body", ACCEPTED)
def test_an_accepted_body_parses_again_as_the_server_parsed_it(body: bytes) -> None:
    shape, rows, _ = parse(loads(body))
    assert repr(parse_accepted(body)) == repr((shape, rows))  # as text: NaN != NaN
