"""The filter and order strings of MLflow's registry and experiment searches."""

from __future__ import annotations

import itertools
import re
import time

import pytest

from loopline.errors import InvalidInput
from loopline.server.registry_filter import compile_filter, parse, parse_order_by, sort

_FIELDS = {"name": "str", "run_id": "str", "version_number": "int"}


def _match(text: str, attrs: dict[str, object], tags: dict[str, str] | None = None) -> bool:
    return compile_filter(text, _FIELDS).matches(attrs, tags or {})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version_number = 2", True),
        ("version_number = '2'", True),
        ("version_number != 2", False),
        ("version_number > 1 AND version_number <= 2", True),
        ("version_number < 2", False),
        ("version_number >= -1", True),
        ("name = 'churn'", True),
        ("name LIKE 'ch%'", True),
        ("name LIKE 'CH%'", False),  # LIKE is case-sensitive, as in MLflow
        ("name ILIKE 'CH%'", True),
        ("name NOT LIKE 'ch%'", False),
        ("name IN ('fraud', 'churn')", True),
        ("name NOT IN ('fraud', 'churn')", False),
        ("name = 'it''s'", False),
        ("run_id IS NULL", True),
        ("run_id IS NOT NULL", False),
        ("run_id = 'r1'", False),  # a missing value matches no comparison
        ("tags.team = 'growth'", True),
        ("tag.`team` LIKE 'gr%'", True),
        ("tags.missing != 'x'", False),  # nor does a missing tag, even !=
        ("tags.`mlflow.prompt.is_prompt` != 'true'", True),  # MLflow's special case
        ("name LIKE 'a_b'", False),
    ],
)
def test_each_operator_on_strings_numbers_and_tags(text: str, expected: bool) -> None:
    attrs = {"name": "churn", "run_id": None, "version_number": 2}
    assert _match(text, attrs, {"team": "growth"}) is expected


def test_like_takes_time_linear_in_the_pattern_and_name() -> None:
    """A regular expression with one ``.*`` per ``%`` took 2 s for six ``%a`` on 60 ``a``
    (Python backtracks), and each more multiplied it: one request could hold a core."""
    started = time.perf_counter()
    assert not _match("name LIKE '" + "%a" * 200 + "%b'", {"name": "a" * 5000})
    assert _match("name LIKE '" + "%a" * 200 + "%'", {"name": "a" * 5000})
    assert time.perf_counter() - started < 1.0


def test_like_agrees_with_a_regular_expression_on_every_small_case() -> None:
    def expected(pattern: str, value: str, ignore_case: bool) -> bool:
        regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
        flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
        return re.fullmatch(regex, value, flags) is not None

    for pattern in ("".join(p) for n in range(5) for p in itertools.product("a%_B", repeat=n)):
        for value in ("".join(v) for n in range(5) for v in itertools.product("aBb", repeat=n)):
            for op, ignore_case in (("LIKE", False), ("ILIKE", True)):
                text = f"name {op} '{pattern}'"
                assert _match(text, {"name": value}) is expected(pattern, value, ignore_case)


def test_like_wildcards_and_quotes() -> None:
    assert _match("name LIKE 'a_b%'", {"name": "axb-1"})
    assert _match("name LIKE '%'", {"name": "line\nbreak"})
    assert parse("name IN ('a', \"b\")")[0].value == ("a", "b")
    assert parse("name = 'a AND b'")[0].value == "a AND b"  # AND inside quotes stays


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("name ~ 'x'", "at position 0: cannot read"),
        ("name = 'a' AND bogus", "at position 15: cannot read 'bogus'"),
        ("name IN 'a'", "IN takes a list"),
        ("name = ('a')", "= takes one value"),
        ("name IN ()", "the list is empty"),
        ("name IN ('a' 'b')", "cannot read the list"),
        ("version_number LIKE '2'", "does not apply to 'version_number'"),
        ("version_number = 'two'", "'two' for 'version_number' is not a whole number"),
        ("name > 'a'", "does not apply to 'name'"),
        ("name = 3", "must be quoted"),
        ("color = 'red'", "filter key 'color' is not supported"),
        ("name LIKE '" + "x" * 10_001 + "'", "at most 10,000 bytes"),
    ],
)
def test_a_bad_filter_is_refused_before_any_entity_is_read(text: str, said: str) -> None:
    with pytest.raises(InvalidInput, match=said) as info:
        compile_filter(text, _FIELDS)  # type: ignore[arg-type]
    assert info.value.field == "filter"


def test_order_by_parses_directions_and_refuses_unknown_or_repeated_fields() -> None:
    fields = ["name", "creation_time"]
    assert parse_order_by(["name DESC", "`creation_time`"], fields) == [
        ("name", False),
        ("creation_time", True),
    ]
    assert parse_order_by(["attribute.name asc"], fields) == [("name", True)]
    for bad, said in [(["color"], "not supported"), (["name", "name DESC"], "twice")]:
        with pytest.raises(InvalidInput, match=said) as info:
            parse_order_by(bad, fields)
        assert info.value.field == "order_by"


def test_sort_is_stable_across_keys_and_puts_missing_values_last() -> None:
    rows = [
        {"name": "b", "t": 1},
        {"name": "a", "t": None},
        {"name": "a", "t": 2},
        {"name": "b", "t": 3},
    ]
    ordered = sort(rows, [("name", True), ("t", False)], lambda r, k: r[k])
    assert ordered == [
        {"name": "a", "t": 2},
        {"name": "a", "t": None},
        {"name": "b", "t": 3},
        {"name": "b", "t": 1},
    ]
    ascending = sort(rows, [("t", True)], lambda r, k: r[k])
    assert [r["t"] for r in ascending] == [1, 2, 3, None]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("params.lr = '0.1'", True),
        ("param.`lr` != '0.1'", False),
        ("params.missing != 'x'", False),  # an absent param matches no comparison
        ("params.missing IS NULL", True),
        ("params.lr IN ('0.1', '0.2') AND metrics.acc > 0.5", True),
        ("metrics.acc > 0.9", True),  # one of the values is enough
        ("metrics.acc >= 9.5e-1", False),
        ("metrics.acc < '0.5'", True),  # a quoted number is the same number
        ("metrics.acc = 1", False),
        ("metrics.loss > -1", False),  # NaN satisfies no comparison
        ("metrics.loss != 0", False),
        ("metrics.missing < 1", False),
    ],
)
def test_params_and_metrics_where_a_search_allows_them(text: str, expected: bool) -> None:
    where = compile_filter(text, _FIELDS, extra=["param", "metric"])  # type: ignore[arg-type]
    params = {"lr": "0.1"}
    metrics = {"acc": [0.4, 0.93], "loss": [float("nan")]}
    assert where.matches({}, {}, params, metrics) is expected


@pytest.mark.parametrize(
    ("text", "extra", "said"),
    [
        ("params.lr = '1'", [], "filter key 'params.lr' is not supported"),
        ("metrics.acc > 0.5", ["param"], "filter key 'metrics.acc' is not supported"),
        ("metrics.acc LIKE '1%'", ["metric"], "operator LIKE does not apply to 'metrics.acc'"),
        ("metrics.acc > 'high'", ["metric"], "'high' for 'metrics.acc' is not a number"),
        ("params.lr = 0.5", ["param"], "0.5 for 'params.lr' must be quoted"),
        ("version_number = 2.5", [], "2.5 for 'version_number' is not a whole number"),
        ("version_number = 1e3", [], "is not a whole number"),
    ],
)
def test_params_and_metrics_are_refused_where_they_do_not_apply(
    text: str, extra: list[str], said: str
) -> None:
    with pytest.raises(InvalidInput, match=said) as info:
        compile_filter(text, _FIELDS, extra=extra)  # type: ignore[arg-type]
    assert info.value.field == "filter"


@pytest.mark.parametrize(
    "text",
    ["version_number = " + "1" * 5000, "version_number = '" + "1" * 5000 + "'"],
    ids=["unquoted", "quoted"],
)
def test_a_number_python_will_not_read_is_refused_not_a_crash(text: str) -> None:
    # int() refuses more than 4,300 digits (ValueError): that was a 500
    with pytest.raises(InvalidInput, match="a number of 5000 digits") as info:
        compile_filter(text, _FIELDS)  # type: ignore[arg-type]
    assert info.value.field == "filter"


def test_a_metric_past_the_largest_float_compares_as_infinity() -> None:
    # float() of such an int raises OverflowError (a 500); its text reads as inf
    for number in ("9" * 400, "1e400"):
        where = compile_filter(f"metrics.acc < {number}", {}, extra=["metric"])
        assert where.matches({}, {}, metrics={"acc": [1e308]})
