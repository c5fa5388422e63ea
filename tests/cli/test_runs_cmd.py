"""``loopline runs ls/show/compare`` in a real subprocess, on both backends."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

import loopline as ll
from loopline.core.calendar import utc_text_ms
from loopline.core.context import Context
from tests.cli_run import run_cli, run_loopline
from tests.tracking.backends import run_with_id


def _runs(
    ctx: Context, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return run_loopline(ctx, "runs", *args, env=env)


def _json(ctx: Context, *args: str) -> Any:
    done = _runs(ctx, *args, "--json")
    assert done.returncode == 0, done.stderr
    return orjson.loads(done.stdout)


@pytest.fixture
def three(ctx: Context) -> list[str]:
    ids = []
    for name, model, auc in [("a", "lgbm", 0.80), ("b", "xgb", 0.85), ("c", "lgbm", float("nan"))]:
        # Each run starts in a millisecond of its own: runs that start in the same one tie
        # on start time and then sort by their random ids (as MLflow's), and creating a run
        # now takes well under a millisecond.
        time.sleep(0.002)
        with ll.start_run(experiment="cli", name=name) as run:
            run.log_params({"model": model, "seed": 13})
            run.log_metrics({"auc": auc, "loss": 1 - auc}, step=1)
        ids.append(run.id)
    with ll.start_run(experiment="elsewhere", name="z") as run:
        run.log_metric("auc", 0.99)
    return ids


def test_ls_filters_orders_and_pages(ctx: Context, three: list[str]) -> None:
    listed = _json(ctx, "ls", "--experiment", "cli")
    assert [r["name"] for r in listed["runs"]] == ["c", "b", "a"]  # newest first
    assert listed["next_page_token"] is None
    best = _json(
        ctx, "ls", "-e", "cli", "--filter", "metrics.auc > 0.8", "--order-by", "metrics.auc DESC"
    )
    assert [r["name"] for r in best["runs"]] == ["b"]
    everywhere = _json(ctx, "ls", "--order-by", "metrics.auc DESC", "--max", "2")
    assert [r["name"] for r in everywhere["runs"]] == ["z", "b"]
    nxt = _json(
        ctx, "ls", "--order-by", "metrics.auc DESC", "--page-token", everywhere["next_page_token"]
    )
    assert [r["name"] for r in nxt["runs"]] == ["a", "c"]  # NaN sorts last
    nan_run = nxt["runs"][1]
    assert nan_run["metrics"]["auc"] == "NaN"
    table = _runs(ctx, "ls", "-e", "cli")
    assert table.returncode == 0 and three[0] in table.stdout and "FINISHED" in table.stdout


def test_ls_in_80_columns_splits_no_id_status_date_or_header(
    ctx: Context, three: list[str]
) -> None:
    # Rich folded every column to fit 80 columns: FINISHED read 'FINI' / 'SHED', and dates
    # and headers broke alike. Only free text (names, experiments, metrics) may fold now.
    # The whole ids took 32 of the 80 columns: they are cut to their first 8 characters,
    # which every runs command takes (the header says so).
    done = _runs(ctx, "ls", "-e", "cli", env={"COLUMNS": "80"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(map(len, lines)) <= 80, done.stdout
    shown = {word for line in lines for word in line.split()}
    runs = _json(ctx, "ls", "-e", "cli")["runs"]
    started = {w for r in runs for w in utc_text_ms(r["start_time"]).split()}
    short = {run_id[:8] for run_id in three}
    expected = {*short, "FINISHED", *started, "id", "(first", "8)", "status", "duration"}
    assert expected <= shown, (expected - shown, done.stdout)
    assert not set(three) & shown, done.stdout
    wide = _runs(ctx, "ls", "-e", "cli", env={"COLUMNS": "200"})
    assert set(three) <= {w for line in wide.stdout.splitlines() for w in line.split()}
    assert "(first" not in wide.stdout, wide.stdout
    listed = orjson.loads(_runs(ctx, "ls", "-e", "cli", "--json", env={"COLUMNS": "80"}).stdout)
    assert sorted(r["id"] for r in listed["runs"]) == sorted(three)  # JSON: whole ids


def test_ls_in_80_columns_leaves_names_room_to_read(ctx: Context) -> None:
    # With 32-character ids the name, experiment and metrics columns were 4 characters
    # wide: 'lgbm' / '-tun' / 'ed-d' / 'epth' / '8'. With 8-character ids they get twice that
    # and more: a name of 8 characters stays on one line, a longer one folds in few pieces.
    names = ["baseline", "lgbm-tuned-depth8", "xgb-extra"]
    for i, name in enumerate(names):
        with ll.start_run(experiment="churn-prediction", name=name) as run:
            run.log_metrics({"auc": 0.8 + i / 100, "logloss": 0.4})
    done = _runs(ctx, "ls", "-e", "churn-prediction", env={"COLUMNS": "80"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(map(len, lines)) <= 80, done.stdout
    cells = [word for line in lines for word in line.replace("│", " ").split()]
    assert "baseline" in cells, done.stdout
    width = max(len(cell) for cell in cells if cell and "lgbm-tuned-depth8".startswith(cell))
    assert width >= 8, done.stdout


def test_show_and_compare_take_a_run_id_prefix(ctx: Context, three: list[str]) -> None:
    shown = _json(ctx, "show", three[1][:8])
    assert shown["id"] == three[1] and shown["name"] == "b"
    result = _json(ctx, "compare", three[0][:8], three[1][:12], three[2])
    assert [r["id"] for r in result["runs"]] == three
    text = _runs(ctx, "show", three[0][:10])
    assert text.returncode == 0 and f"run {three[0]}" in text.stdout


def test_an_ambiguous_or_too_short_run_id_prefix_is_refused(ctx: Context) -> None:
    base = uuid.uuid4().hex[:10]
    twins = [run_with_id(ctx.engine, "twins", base + digit * 22) for digit in "ab"]
    done = _runs(ctx, "show", base)
    assert done.returncode == 2, done.stderr  # InvalidInput
    assert f"run id prefix '{base}' is ambiguous" in done.stderr
    assert twins[0] in done.stderr and twins[1] in done.stderr
    assert "give more characters" in done.stderr and "Traceback" not in done.stderr
    assert _json(ctx, "show", twins[1][:11])["id"] == twins[1]
    compared = _runs(ctx, "compare", twins[0], base)
    assert compared.returncode == 2 and "ambiguous" in compared.stderr
    short = _runs(ctx, "show", base[:7])
    assert short.returncode == 2 and "too short: give at least 8 characters" in short.stderr
    missing = _runs(ctx, "show", ("0" if base[0] != "0" else "1") + base[1:8])
    assert missing.returncode == 4 and "does not exist" in missing.stderr


def test_ls_reports_a_bad_filter_with_its_position(ctx: Context, three: list[str]) -> None:
    done = _runs(ctx, "ls", "--filter", "metrics.auc 0.8")
    assert done.returncode == 2
    assert "at position 12: expected a comparison operator" in done.stderr
    assert "Traceback" not in done.stderr


def test_show_prints_one_run(ctx: Context, three: list[str]) -> None:
    shown = _json(ctx, "show", three[1])
    assert shown["id"] == three[1] and shown["name"] == "b" and shown["status"] == "FINISHED"
    assert shown["params"] == {"model": "xgb", "seed": "13"}
    assert shown["metrics"]["auc"] == 0.85
    assert [a["path"] for a in shown["artifacts"]] == ["loopline/environment.json"]
    assert "loopline.python" in shown["tags"]
    text = _runs(ctx, "show", three[1])
    assert text.returncode == 0 and "xgb" in text.stdout and "0.85" in text.stdout
    missing = _runs(ctx, "show", "nope")
    assert missing.returncode == 4 and "run 'nope' does not exist" in missing.stderr


def test_compare_shows_differing_params_and_metric_deltas(ctx: Context, three: list[str]) -> None:
    result = _json(ctx, "compare", *three)
    assert [r["name"] for r in result["runs"]] == ["a", "b", "c"]
    assert result["params"] == {"model": ["lgbm", "xgb", "lgbm"]}  # 'seed' is the same: hidden
    auc = result["metrics"]["auc"]
    assert auc["values"] == [0.8, 0.85, "NaN"]
    assert auc["deltas"][0] is None and auc["deltas"][1] == pytest.approx(0.05)
    assert auc["deltas"][2] is None  # no delta to or from NaN, as the UI's compare page
    assert result["metrics"]["loss"]["deltas"][1] == pytest.approx(-0.05)
    text = _runs(ctx, "compare", three[0], three[1])
    assert text.returncode == 0 and "(+0.05)" in text.stdout and "(-0.05)" in text.stdout
    with_nan = _runs(ctx, "compare", three[0], three[2])
    assert with_nan.returncode == 0 and "NaN" in with_nan.stdout and "nan" not in with_nan.stdout
    one = _runs(ctx, "compare", three[0])
    assert one.returncode == 2 and "at least two run ids" in one.stderr


def test_an_infinite_metric_reads_inf_and_has_no_delta_as_in_the_ui(ctx: Context) -> None:
    # The store keeps +/-inf as +/- the largest float: show printed 1.79769e+308 where the
    # UI says inf, and compare printed a delta of -1.79769e+308 where the UI shows none.
    ids = []
    for value in (float("inf"), 3.0, float("-inf")):
        with ll.start_run(experiment="inf") as run:
            run.log_metrics({"m": value, "finite": 1.0})
        ids.append(run.id)
    shown = _runs(ctx, "show", ids[0])
    assert shown.returncode == 0, shown.stderr
    assert "1.79769e+308" not in shown.stdout and "│ inf " in shown.stdout
    result = _json(ctx, "compare", *ids)
    assert result["metrics"]["m"]["deltas"] == [None, None, None]
    assert result["metrics"]["finite"]["deltas"] == [None, 0.0, 0.0]
    text = _runs(ctx, "compare", *ids)
    assert text.returncode == 0 and "e+308" not in text.stdout and "-inf" in text.stdout


def test_every_runs_command_has_an_example(tmp_path: Path) -> None:
    for command in ("ls", "show", "compare"):
        done = run_cli(["runs", command, "--help"], env=os.environ, cwd=tmp_path, timeout=60)
        assert done.returncode == 0 and "Example" in done.stdout


def test_square_brackets_in_names_params_and_tags_print_verbatim(embedded_ctx: Context) -> None:
    """Rich reads '[...]' as markup: '[/x]' crashed the table and '[red]' vanished.
    Printing is the same on every backend: SQLite only."""
    ctx = embedded_ctx
    ids = []
    for value in ("[red]lgbm", "xgb[/x]"):
        with ll.start_run(experiment="brackets", name=f"run {value}") as run:
            run.log_params({"model[kind]": value})
            run.set_tag("note", f"see [{value}]")
            run.log_metric("auc[val]", 0.5)
        ids.append(run.id)
    for args in (("ls", "-e", "brackets"), ("show", ids[0]), ("compare", *ids)):
        done = _runs(ctx, *args)
        assert done.returncode == 0, (args, done.stderr)
        assert "auc[val]" in done.stdout, args
    shown = _runs(ctx, "show", ids[1]).stdout
    assert "run xgb[/x]" in shown and "model[kind]" in shown and "see [xgb[/x]]" in shown
    assert "[red]lgbm" in _runs(ctx, "compare", *ids).stdout


def test_a_time_outside_the_calendar_prints_as_its_number(embedded_ctx: Context) -> None:
    """MLflow takes any 64-bit time; one such run failed 'runs ls' for everyone (printing
    is the same on every backend: SQLite only)."""
    ctx = embedded_ctx
    from loopline.tracking import run_state

    with ll.start_run(experiment="far", name="far") as run:
        run.log_metric("m", 1.0)
    run_state.update_run(ctx.engine, run.id, end_time=10**16)
    for args in (("ls", "-e", "far"), ("show", run.id)):
        done = _runs(ctx, *args)
        assert done.returncode == 0, (args, done.stderr)
    assert "outside the calendar" in _runs(ctx, "show", run.id).stdout


def test_ls_and_show_print_control_characters_as_escapes(ctx: Context) -> None:
    # A name stored before names were checked (or by another tool) held ESC sequences that
    # `runs ls` wrote to the terminal as they were: recolouring or clearing it.

    from loopline.tracking.tables import runs

    with ll.start_run(experiment="escapes", name="plain") as run:
        run.log_param("note", "a\x1b[2Jb")
    with ctx.engine.begin() as conn:
        conn.execute(runs.update().where(runs.c.id == run.id).values(name="x\x1b[31mred\x07"))
    for args in (("ls", "-e", "escapes"), ("show", run.id)):
        done = _runs(ctx, *args)
        assert done.returncode == 0, done.stderr
        assert "\x1b" not in done.stdout and "\x07" not in done.stdout, done.stdout
        assert "\\x1b" in done.stdout, done.stdout
