"""The ``ls`` commands' tables: word columns are never split, at any terminal width that
can hold them; free text folds."""

from __future__ import annotations

import pytest
from rich.console import Console

from loopline.cli._tables import list_table

RUNS = ("id", "name", "experiment", "status", "started (UTC)", "duration", "metrics")
WORDS = ("id", "status", "started (UTC)", "duration")
ROWS = [
    (
        "464109f463e440de8d1bf82a3cdca7b0",
        "baseline-model-with-a-long-name",
        "churn-prediction",
        "FINISHED",
        "2026-11-28 23:04:11",
        "0.0s",
        "accuracy=0.9, auc=0.81, f1=0.7, loss=0.3, ...",
    ),
    (
        "4eae1a1ff38c44c4b0023807da120572",
        "lgbm",
        "churn",
        "RUNNING",
        "2026-11-28 23:04:12",
        "running",
        "auc=0.81",
    ),
]


def _render(width: int) -> list[str]:
    table = list_table("runs (2)", RUNS, words=WORDS)
    for row in ROWS:
        table.add_row(*row)
    console = Console(width=width)
    with console.capture() as out:
        console.print(table)
    return out.get().splitlines()


def _word_column_words() -> set[str]:
    columns = [RUNS.index(name) for name in WORDS]
    words = {word for name in WORDS for word in name.split()}
    return words | {word for row in ROWS for i in columns for word in row[i].split()}


@pytest.mark.parametrize("width", [74, 80, 90, 100, 120, 160], ids=lambda w: f"{w}-columns")
def test_the_word_columns_keep_every_word_whole(width: int) -> None:
    lines = _render(width)
    assert max(len(line) for line in lines) <= width
    shown = {word for line in lines for word in line.split()}
    missing = _word_column_words() - shown
    assert not missing, "\n".join(["split:", *missing, *lines])


def test_a_table_that_fits_is_rich_s_own_boxed_table() -> None:
    lines = _render(200)
    assert lines[1].startswith("┏") and "│ 2026-11-28 23:04:11 │" in "\n".join(lines)
    assert "FINISHED" in lines[4] and len(lines) == 7  # title, 3 rules, a header and 2 rows


def test_a_narrow_terminal_drops_the_box_before_splitting_a_header() -> None:
    lines = _render(100)
    assert not any("┃" in line or "│" in line for line in lines)
    assert {"experiment", "metrics", "name"} <= {w for line in lines for w in line.split()}


def test_too_narrow_for_the_words_folds_rather_than_cuts_an_id() -> None:
    # 60 columns cannot hold a 32-character id, a date and five more columns: Rich cut the
    # id short (another id); folded, the first column still reads both ids in full.
    lines = _render(60)
    body = lines[lines.index(next(line for line in lines if line.startswith("─"))) + 1 :]
    first = len(body[0].split()[0])
    assert "".join(line[:first].strip() for line in body) == ROWS[0][0] + ROWS[1][0]


def test_a_word_column_must_be_one_of_the_columns() -> None:
    with pytest.raises(ValueError, match=r"\['state'\] are not among"):
        list_table(None, ("id", "status"), words=("state",))


def _render_ids(width: int) -> str:
    table = list_table("runs (2)", RUNS, words=WORDS[1:], run_ids=("id",))
    for row in (*ROWS, ("", "no id", "churn", "RUNNING", "2026-11-28 23:04:13", "", "")):
        table.add_row(*row)
    console = Console(width=width)
    with console.capture() as out:
        console.print(table)
    return out.get()


def test_run_ids_are_whole_when_the_table_fits_and_8_characters_when_not() -> None:
    wide = _render_ids(200)
    assert all(row[0] in wide for row in ROWS) and "(first 8)" not in wide
    narrow = _render_ids(80)
    words = set(narrow.split())
    assert {ROWS[0][0][:8], ROWS[1][0][:8], "(first", "8)", "FINISHED"} <= words, narrow
    assert not any(row[0][:9] in narrow for row in ROWS), narrow
    assert max(map(len, narrow.splitlines())) <= 80
    # The names get the room the ids gave up: 'baseline-model-with-a-long-name' folded into
    # 4-character pieces next to whole ids; next to 8-character ones into 8 or more.
    lines = narrow.splitlines()
    first = next(i for i, line in enumerate(lines) if ROWS[0][0][:8] in line)
    second = next(i for i, line in enumerate(lines) if ROWS[1][0][:8] in line)
    header = next(line for line in lines if " name " in line)  # boxed or not: by position
    name = slice(header.index(" name ") + 1, header.index(" experiment "))
    pieces = [p for line in lines[first:second] if (p := line[name].strip(" │"))]
    assert "".join(pieces) == ROWS[0][1] and len(pieces) <= 4, narrow


def test_a_run_id_column_must_be_one_of_the_columns() -> None:
    with pytest.raises(ValueError, match=r"\['run'\] are not among"):
        list_table(None, ("id", "status"), words=("status",), run_ids=("run",))


@pytest.mark.parametrize("width", [74, 80, 90], ids=lambda w: f"{w}-columns")
def test_free_text_headers_stay_whole_and_short_text_before_long(width: int) -> None:
    # Rich shrank every free-text column alike: 'experiment' read 'experime' / 'nt' at 80
    # columns, and a deployment named 'flights' read 'flig' / 'hts' beside a long status.
    shown = {word for line in _render_ids(width).splitlines() for word in line.split()}
    assert {"name", "experiment", "metrics", "(UTC)"} <= shown
    table = list_table(None, ("name", "strategy", "status"), words=("strategy",))
    table.add_row("flights", "canary", "promoted version 2 to 100% after passing 50% " * 3)
    console = Console(width=width // 2)
    with console.capture() as out:
        console.print(table)
    assert "flights" in out.get().split(), out.get()
