"""Request body shapes and their errors; the serving package's import cost."""

from __future__ import annotations

import subprocess
import sys

import pytest

from loopline.errors import InvalidInput
from loopline.serving.inputs import MalformedBody, as_records, loads, parse


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
        "'loopline.server', 'loopline.training.registry', 'pandera', 'duckdb']\n"
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
            "unknown field 'Key'; the body takes instances, dataframe_records, "
            "dataframe_split and key",
        ),
    ],
    ids=["mlflow-params", "unknown"],
)
def test_a_field_the_server_does_not_read_is_refused_not_ignored(
    payload: object, field: str, words: str
) -> None:
    """The OpenAPI description says additionalProperties: false; the field was ignored."""
    with pytest.raises(InvalidInput) as exc:
        parse(payload)
    assert exc.value.field == field and words in exc.value.message, exc.value.message
