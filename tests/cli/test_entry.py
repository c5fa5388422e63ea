"""The script's entry takes only the plain `data add NAME PATH [--json]` to the quick re-add."""

from __future__ import annotations

import pytest

from loopline.cli.entry import quick_add_request


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["data", "add", "n", "p", "--json"], ("n", "p", True)),
        (["data", "add", "--json", "n", "p"], ("n", "p", True)),
        (["data", "add", "n", "--json", "p"], ("n", "p", True)),
        (["data", "add", "n", "p"], ("n", "p", False)),
        (["data", "add", "n"], None),
        (["data", "add", "n", "p", "q"], None),
        (["data", "add", "n", "p", "--json", "--json"], None),
        (["data", "add", "n", "p", "-d", "x", "--json"], None),
        (["data", "add", "n", "--description=x", "--json"], None),
        (["data", "add", "n", "p", "--help"], None),
        (["--debug", "data", "add", "n", "p", "--json"], None),
        (["data", "add", "-", "p", "--json"], None),
        (["data", "add", "", "p", "--json"], None),
        (["data", "ls", "n", "p", "--json"], None),
        ([], None),
    ],
    ids=[
        "plain",
        "json-first",
        "json-between",
        "human-output",
        "one-argument",
        "three-arguments",
        "json-twice",
        "description",
        "option-with-value",
        "help",
        "root-option",
        "dash-argument",
        "empty-argument",
        "other-command",
        "nothing",
    ],
)
def test_quick_add_request(args: list[str], expected: tuple[str, str, bool] | None) -> None:
    assert quick_add_request(args) == expected
