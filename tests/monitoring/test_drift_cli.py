"""``loopline drift`` on files and on ``NAME@VERSION`` datasets (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import loopline as ll
from loopline.core.context import Context
from tests.cli_run import run_cli
from tests.conftest import env_without_loopline


def _loopline(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return run_cli(args, env={**env_without_loopline(), **(env or {})}, cwd=cwd, timeout=180)


def _frames(n: int = 2000) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(9)
    ref = pd.DataFrame(
        {
            "age": rng.normal(40, 10, n),
            "income": rng.lognormal(10, 1, n),
            "plan": rng.choice(["basic", "pro", "team"], n, p=[0.6, 0.3, 0.1]),
        }
    )
    cur = pd.DataFrame(
        {
            "age": rng.normal(46, 10, n),  # drifted
            "income": rng.lognormal(10, 1, n),
            "plan": rng.choice(["basic", "pro", "team"], n, p=[0.2, 0.3, 0.5]),  # drifted
        }
    )
    return ref, cur


def _check_shape(data: dict[str, Any]) -> None:
    assert list(data) == ["drifted", "share_drifted", "columns", "not_tested"]
    assert isinstance(data["drifted"], bool) and isinstance(data["share_drifted"], float)
    for col in data["columns"].values():
        assert list(col) == [
            "test", "statistic", "p_value", "threshold", "drifted",
            "missing_reference", "missing_current", "missing_drifted",
        ]  # fmt: skip
        assert isinstance(col["test"], str) and isinstance(col["statistic"], float)
        assert col["p_value"] is None or isinstance(col["p_value"], float)
        assert isinstance(col["threshold"], float) and isinstance(col["drifted"], bool)
        assert 0 <= col["missing_reference"] <= 1 and 0 <= col["missing_current"] <= 1
        assert isinstance(col["missing_drifted"], bool)
    assert all(isinstance(why, str) for why in data["not_tested"].values())


@pytest.fixture
def files(tmp_path: Path) -> Path:
    ref, cur = _frames()
    ref.to_parquet(tmp_path / "ref.parquet")
    cur.to_csv(tmp_path / "cur.csv", index=False)
    ref.to_csv(tmp_path / "ref.csv", index=False)
    return tmp_path


def test_json_shape_exit_codes_and_html_on_files(files: Path) -> None:
    result = _loopline(files, "drift", "ref.parquet", "cur.csv", "--json", "--html", "out.html")
    assert result.returncode == 0, result.stderr  # drift found, but no --fail-on-drift
    data = json.loads(result.stdout)
    _check_shape(data)
    assert data["drifted"] is True and data["share_drifted"] == pytest.approx(2 / 3)
    cols = data["columns"]
    assert set(cols) == {"age", "income", "plan"}
    assert (cols["age"]["test"], cols["age"]["drifted"], cols["age"]["p_value"]) == (
        "wasserstein", True, None,
    )  # fmt: skip
    assert (cols["plan"]["test"], cols["plan"]["drifted"]) == ("jensenshannon", True)
    assert cols["income"]["drifted"] is False and cols["income"]["threshold"] == 0.1
    html = (files / "out.html").read_text()
    assert html.count("<svg") == 3

    failing = _loopline(files, "drift", "ref.parquet", "cur.csv", "--fail-on-drift")
    assert failing.returncode == 1, failing.stderr
    assert "DRIFT" in failing.stdout and "age" in failing.stdout
    same = _loopline(files, "drift", "ref.parquet", "ref.csv", "--json", "--fail-on-drift")
    assert same.returncode == 0, same.stderr
    assert json.loads(same.stdout)["drifted"] is False


def test_columns_option_and_column_mismatch_warnings(files: Path) -> None:
    result = _loopline(files, "drift", "ref.parquet", "cur.csv", "--json", "--columns", "income")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert list(data["columns"]) == ["income"] and data["drifted"] is False
    ref, cur = _frames(300)
    ref.assign(gone=1.0, note=[f"t{i}" for i in range(300)]).to_parquet(files / "ref2.parquet")
    cur.drop(columns=["income"]).assign(note=[f"u{i}" for i in range(300)]).to_parquet(
        files / "cur2.parquet"
    )
    mismatch = _loopline(files, "drift", "ref2.parquet", "cur2.parquet", "--json")
    assert mismatch.returncode == 0, mismatch.stderr
    got = json.loads(mismatch.stdout)
    _check_shape(got)
    assert set(got["columns"]) == {"age", "plan"}
    assert (
        got["not_tested"]["income"]
        == got["not_tested"]["gone"]
        == ("missing from the current data")
    )
    assert got["not_tested"]["note"].startswith("skipped: text")
    assert "missing from the current data: income, gone" in mismatch.stderr
    assert "note: skipped: text" in mismatch.stderr
    bad = _loopline(files, "drift", "ref.parquet", "cur.csv", "--columns", "nope")
    assert bad.returncode == 2 and "not in the reference data: nope" in bad.stderr


def test_column_names_with_square_brackets_print_verbatim(files: Path) -> None:
    # Rich took "[/x]" in a column name for markup: MarkupError instead of the warning.
    ref, cur = _frames(300)
    ref.assign(**{"gone[/x]": 1.0}).to_parquet(files / "ref3.parquet")
    cur.assign(**{"new[red]": 1.0}).to_parquet(files / "cur3.parquet")
    result = _loopline(files, "drift", "ref3.parquet", "cur3.parquet", "--json")
    assert result.returncode == 0, result.stderr
    assert "missing from the current data: gone[/x]" in result.stderr
    assert "only in the current data (not tested): new[red]" in result.stderr


def test_human_output_lists_every_column(files: Path) -> None:
    result = _loopline(files, "drift", "ref.parquet", "cur.csv", env={"COLUMNS": "160"})
    assert result.returncode == 0, result.stderr
    for word in ("age", "income", "plan", "wasserstein", "jensenshannon", "2 of 3"):
        assert word in result.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("missing.parquet", "cur.csv"), 4, "there is no file"),
        (("ref.parquet", "data/none.csv"), 4, "there is no file"),
        (("ref.parquet", "nosuch@1"), 4, "nosuch"),
        (("ref.parquet", "bad name!"), 4, "neither an existing file nor a dataset"),
    ],
    ids=["missing-file", "missing-file-in-folder", "missing-dataset", "not-a-ref"],
)
def test_missing_inputs_are_one_line_errors(
    files: Path, args: tuple[str, str], code: int, message: str
) -> None:
    result = _loopline(files, "drift", *args)
    assert result.returncode == code, (result.stdout, result.stderr)
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("/proc/x.html", "No such file or directory"),
        (".", "it is a folder"),
        ("no/such/folder/out.html", "the folder no/such/folder does not exist"),
        ("ref.csv/out.html", "ref.csv is a file, not a folder"),
    ],
    ids=["proc", "folder", "missing-folder", "under-a-file"],
)
def test_an_html_path_that_cannot_be_written_names_the_option(
    files: Path, target: str, why: str
) -> None:
    result = _loopline(files, "drift", "ref.parquet", "cur.csv", "--html", target)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert f"cannot write --html {target}: {why}" in result.stderr
    assert "Traceback" not in result.stderr and "--debug" not in result.stderr


def test_help_has_an_example(files: Path) -> None:
    result = _loopline(files, "drift", "--help")
    assert result.returncode == 0 and "Example" in result.stdout
    assert "--fail-on-drift" in result.stdout


def test_datasets_by_name_and_version(ctx: Context, tmp_path: Path) -> None:
    ref, cur = _frames(1500)
    v1 = ll.datasets.register("customers", ref)
    v2 = ll.datasets.register("customers", cur)
    assert (v1.version, v2.version) == (1, 2)
    # SDK: refs and versions are read from the store.
    report = ll.monitor.drift("customers@1", "customers@2")
    assert report.drifted_columns == ["age", "plan"]
    assert report.reference_label == "customers@1" and report.current_label == "customers@2"
    assert ll.monitor.drift(v1, "customers@1").drifted_columns == []
    # CLI in a fresh process, on the same store.
    env = {
        "LOOPLINE_URI": ctx.settings.metadata_uri,
        "LOOPLINE_ARTIFACTS": ctx.settings.artifacts_uri,
    }
    cur.to_parquet(tmp_path / "cur.parquet")
    result = _loopline(tmp_path, "drift", "customers@1", "cur.parquet", "--json", env=env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    _check_shape(data)
    assert sorted(n for n, c in data["columns"].items() if c["drifted"]) == ["age", "plan"]
    latest = _loopline(tmp_path, "drift", "customers@1", "customers", "--json", env=env)
    assert json.loads(latest.stdout) == data
    missing = _loopline(tmp_path, "drift", "customers@1", "customers@9", env=env)
    assert missing.returncode == 4 and "customers" in missing.stderr


@pytest.fixture
def spend_files(tmp_path: Path) -> Path:
    rng = np.random.default_rng(12)
    ref = pd.DataFrame({"spend": rng.normal(50, 10, 500), "tenure": rng.normal(size=500)})
    ref.to_csv(tmp_path / "ref.csv", index=False)
    cur = pd.DataFrame({"spend": rng.normal(50, 10, 300), "tenure": rng.normal(size=300)})
    cur.assign(spend=np.nan).to_csv(tmp_path / "cur_nan.csv", index=False)
    cur.assign(spend="fifty").to_csv(tmp_path / "cur_text.csv", index=False)
    cur.iloc[:0].to_csv(tmp_path / "cur_empty.csv", index=False)
    cur.drop(columns=["spend"]).to_csv(tmp_path / "cur_gone.csv", index=False)
    sixty = cur["spend"].to_numpy().copy()
    sixty[:180] = np.nan
    cur.assign(spend=sixty).to_csv(tmp_path / "cur_60.csv", index=False)
    return tmp_path


@pytest.mark.parametrize(
    ("current", "why"),
    [
        ("cur_nan.csv", "broken: all null in current"),
        ("cur_text.csv", "broken: current column is string, reference is numeric"),
    ],
    ids=["all-null", "text"],
)
def test_a_broken_column_fails_the_check_and_is_in_the_json(
    spend_files: Path, current: str, why: str
) -> None:
    # It printed "0 of 0 tested columns drifted", exited 0 and left spend out of --json.
    args = ("drift", "ref.csv", current, "--fail-on-drift", "--columns", "spend")
    human = _loopline(spend_files, *args, env={"COLUMNS": "200"})
    assert human.returncode == 1, (human.stdout, human.stderr)
    assert why in human.stdout and f"spend: {why}" in human.stderr
    assert f"Not tested, counts as drift: spend ({why.removeprefix('broken: ')})" in human.stdout
    data = _loopline(spend_files, *args, "--json")
    assert data.returncode == 1, data.stderr
    got = json.loads(data.stdout)
    _check_shape(got)
    assert got["columns"] == {} and got["not_tested"] == {"spend": why}
    # Without --columns too: tenure is tested, spend still fails the check.
    every = _loopline(spend_files, "drift", "ref.csv", current, "--json", "--fail-on-drift")
    assert every.returncode == 1 and json.loads(every.stdout)["not_tested"] == {"spend": why}


def test_a_missing_column_fails_the_check_only_when_named(spend_files: Path) -> None:
    # A column only the reference has (a label, an id) is a warning; one asked for is not.
    named = ("drift", "ref.csv", "cur_gone.csv", "--fail-on-drift", "--columns", "spend")
    assert _loopline(spend_files, *named).returncode == 1
    every = _loopline(spend_files, "drift", "ref.csv", "cur_gone.csv", "--fail-on-drift")
    assert every.returncode == 0, every.stderr
    assert "missing from the current data: spend" in every.stderr


def test_a_rise_of_missing_values_is_shown_and_counts_as_a_drifted_column(
    spend_files: Path,
) -> None:
    result = _loopline(spend_files, "drift", "ref.csv", "cur_60.csv", "--json")
    assert result.returncode == 0, result.stderr
    spend = json.loads(result.stdout)["columns"]["spend"]
    assert spend["drifted"] is False  # the values left are as before
    assert (spend["missing_reference"], spend["missing_current"]) == (0.0, 0.6)
    assert spend["missing_drifted"] is True
    human = _loopline(spend_files, "drift", "ref.csv", "cur_60.csv", env={"COLUMNS": "200"})
    assert "0.0% -> 60.0%" in human.stdout
    assert "Missing values rose (counts as a drifted column): spend" in human.stdout
    # One of two tested columns drifted, counting missing values: half, so the check fails.
    fails = _loopline(spend_files, "drift", "ref.csv", "cur_60.csv", "--fail-on-drift")
    assert fails.returncode == 1, fails.stdout


def test_an_empty_current_file_tests_nothing_and_says_so(spend_files: Path) -> None:
    args = ("drift", "ref.csv", "cur_empty.csv", "--fail-on-drift", "--json")
    result = _loopline(spend_files, *args)
    assert result.returncode == 0, result.stderr  # not enough data is not drift
    got = json.loads(result.stdout)
    assert got["not_tested"] == dict.fromkeys(["spend", "tenure"], "skipped: no current rows")
    assert "the current data has no rows: no column was tested" in result.stderr
