from __future__ import annotations

import datetime as dt
import decimal
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from tests.cli_run import run_cli
from tests.conftest import env_without_loopline


def _loopline(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(args, env=env_without_loopline(), cwd=cwd, timeout=120)


def _json(cwd: Path, *args: str) -> Any:
    result = _loopline(cwd, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A working folder with a CSV, a newer CSV and a folder of files."""
    pd.DataFrame({"id": range(1, 21), "plan": ["basic", "pro"] * 10, "x": range(20)}).to_csv(
        tmp_path / "v1.csv", index=False
    )
    pd.DataFrame(
        {"id": range(1, 26), "plan": ["basic", "pro"] * 12 + ["team"], "x": range(25)}
    ).to_csv(tmp_path / "v2.csv", index=False)
    images = tmp_path / "images"
    images.mkdir()
    for i in range(4):
        (images / f"{i}.jpg").write_bytes(os.urandom(300))
    return tmp_path


def test_add_ls_show_diff_checkout(project: Path) -> None:
    added = _json(project, "data", "add", "churn", "v1.csv", "--description", "first export")
    assert (added["ref"], added["kind"], added["row_count"], added["created_now"]) == (
        "churn@1",
        "table",
        20,
        True,
    )
    assert added["ingest"]["stored"] == 1
    again = _json(project, "data", "add", "churn", "v1.csv")
    assert (again["version"], again["created_now"]) == (1, False)
    assert _json(project, "data", "add", "churn", "v2.csv")["version"] == 2
    images = _json(project, "data", "add", "images", "images")
    assert images["kind"] == "files" and images["file_count"] == 4

    listed = _json(project, "data", "ls")
    assert [(d["name"], d["latest_version"], d["versions"]) for d in listed] == [
        ("churn", 2, 2),
        ("images", 1, 1),
    ]
    shown = _json(project, "data", "show", "churn@1")
    assert shown["schema"] == {"id": "int64", "plan": "string", "x": "int64"}
    assert shown["stats"]["x"]["max"] == 19 and shown["description"] == "first export"
    assert [f["path"] for f in _json(project, "data", "show", "images")["files"]] == [
        "0.jpg",
        "1.jpg",
        "2.jpg",
        "3.jpg",
    ]

    d = _json(project, "data", "diff", "churn@1", "churn@2")
    assert (d["rows_before"], d["rows_after"], d["rows_added"], d["rows_removed"]) == (20, 25, 5, 0)

    out = _json(project, "data", "checkout", "images@1", "restored")
    assert out["files"] == 4
    for i in range(4):
        name = f"{i}.jpg"
        assert (project / "restored" / name).read_bytes() == (
            project / "images" / name
        ).read_bytes()


def test_checkout_over_local_changes_is_refused_unless_forced(project: Path) -> None:
    # Was rc 0: the local edit overwritten, v1's removed.txt kept beside v2's files.
    versions = {"m1": {"a.txt": "old", "removed.txt": "gone"}, "m2": {"a.txt": "new"}}
    for folder, files in versions.items():
        (project / folder).mkdir()
        for name, text in files.items():
            (project / folder / name).write_text(text)
        assert _loopline(project, "data", "add", "mixds", folder).returncode == 0
    assert _loopline(project, "data", "checkout", "mixds@1", "mix").returncode == 0
    (project / "mix" / "a.txt").write_text("my local edit")
    refused = _loopline(project, "data", "checkout", "mixds@2", "mix")
    assert refused.returncode == 2, refused.stderr
    assert "(a.txt)" in refused.stderr and "(removed.txt)" in refused.stderr
    assert "--force" in refused.stderr and "Traceback" not in refused.stderr
    assert (project / "mix" / "a.txt").read_text() == "my local edit"
    forced = _json(project, "data", "checkout", "mixds@2", "mix", "--force")
    assert (forced["ref"], forced["files"]) == ("mixds@2", 1)
    assert sorted(p.name for p in (project / "mix").iterdir()) == ["a.txt"]
    assert (project / "mix" / "a.txt").read_text() == "new"
    again = _json(project, "data", "add", "mixds", "mix")
    assert (again["ref"], again["created_now"]) == ("mixds@2", False)


def test_re_adding_unchanged_data_with_a_description_describes_that_version(
    project: Path,
) -> None:
    # Was: "(unchanged, same version)" while every version's description changed.
    assert _json(project, "data", "add", "q", "v1.csv", "-d", "March")["version"] == 1
    assert _json(project, "data", "add", "q", "v2.csv", "-d", "April")["version"] == 2
    result = _loopline(project, "data", "add", "q", "v2.csv", "--description", "April, fixed")
    assert result.returncode == 0, result.stderr
    assert "q@2 (unchanged, same version, description updated)" in result.stdout
    assert _json(project, "data", "show", "q@1")["description"] == "March"
    assert _json(project, "data", "show", "q@2")["description"] == "April, fixed"
    assert [d["description"] for d in _json(project, "data", "ls")] == ["April, fixed"]


def test_human_output_and_errors(project: Path) -> None:
    result = _loopline(project, "data", "add", "images", "images")
    assert result.returncode == 0, result.stderr
    assert "images@1 (new version)" in result.stdout
    result = _loopline(project, "data", "show", "images@9")
    assert result.returncode == 4
    assert "no version 9 (versions: 1)" in result.stderr and "Traceback" not in result.stderr
    result = _loopline(project, "data", "add", "../evil", "images")
    assert result.returncode == 2 and "not a valid dataset name" in result.stderr


def test_infer_contract_then_validate(project: Path) -> None:
    _json(project, "data", "add", "churn", "v1.csv")
    inferred = _json(project, "data", "infer-contract", "churn@1", "churn.yaml")
    assert inferred["contract"]["name"] == "churn"
    contract = yaml.safe_load((project / "churn.yaml").read_text())
    assert contract["columns"]["plan"]["allowed"] == ["basic", "pro"]

    ok = _json(project, "data", "validate", "v1.csv", "--contract", "churn.yaml")
    assert ok["ok"] is True and ok["violations"] == []

    result = _loopline(project, "data", "validate", "v2.csv", "--contract", "churn.yaml", "--json")
    assert result.returncode == 3, result.stderr
    report = json.loads(result.stdout)
    rules = {(v["column"], v["rule"]) for v in report["violations"]}
    assert rules == {("id", "max"), ("x", "max"), ("plan", "allowed")}

    result = _loopline(project, "data", "validate", "v2.csv", "--contract", "churn.yaml")
    assert result.returncode == 3
    assert "plan: allowed: expected one of ['basic', 'pro'], actual ['team']" in result.stderr


def test_square_brackets_in_data_and_paths_print_verbatim(project: Path) -> None:
    # Rich reads "[...]" as markup: "[/quote]" crashed the error printer (MarkupError) and
    # "[ns]" vanished from "datetime64[ns]".
    (project / "train.csv").write_text("comment,price[usd]\nok,1\nok,2\n")
    (project / "batch.csv").write_text("comment,price[usd]\nok,1\nquoted text[/quote],2\n")
    assert _loopline(project, "data", "infer-contract", "train.csv", "c.yaml").returncode == 0
    result = _loopline(project, "data", "validate", "batch.csv", "--contract", "c.yaml")
    assert result.returncode == 3, result.stderr
    assert "actual ['quoted text[/quote]']" in result.stderr
    assert "MarkupError" not in result.stderr and "Traceback" not in result.stderr

    (project / "dt.yaml").write_text('columns:\n  t: {dtype: "datetime64[ns]"}\n')
    result = _loopline(project, "data", "validate", "train.csv", "--contract", "dt.yaml")
    assert result.returncode == 3
    assert "expected column of dtype datetime64[ns]" in result.stderr

    result = _loopline(project, "data", "add", "x", "nope[/y]/z.csv")
    assert result.returncode == 2
    assert "there is no file or folder at nope[/y]/z.csv" in result.stderr

    assert _loopline(project, "data", "add", "prices", "train.csv").returncode == 0
    result = _loopline(project, "data", "show", "prices@1")
    assert result.returncode == 0, result.stderr
    assert "price[usd]" in result.stdout


def test_infer_contract_then_validate_the_same_parquet(project: Path) -> None:
    # Parquet dates, decimals and binary arrive as Python objects; the inferred contract
    # refused them once written and read back.
    day = dt.date(2024, 1, 1)
    table = pa.table(
        {
            "day": [day, day, day + dt.timedelta(days=1)],
            "price": pa.array([decimal.Decimal("1.10")] * 3, pa.decimal128(5, 2)),
            "blob": [b"a", b"a", b"\xff"],
            "when": pa.array([dt.datetime(2024, 1, 1)] * 3, pa.timestamp("us", tz="UTC")),
            "flag": [True, False, True],
            "n": [1, 2, 3],
            "x": [0.5, 0.25, 0.5],
            "plan": ["a", "a", "b"],
        }
    )
    pq.write_table(table, project / "kinds.parquet")
    result = _loopline(project, "data", "infer-contract", "kinds.parquet", "kinds.yaml")
    assert result.returncode == 0, result.stderr
    result = _loopline(project, "data", "validate", "kinds.parquet", "--contract", "kinds.yaml")
    assert result.returncode == 0, result.stderr
    assert "meets the contract" in result.stdout


def test_every_data_command_has_an_example_in_its_help(project: Path) -> None:
    for command in ("add", "ls", "show", "diff", "checkout", "validate", "infer-contract"):
        result = _loopline(project, "data", command, "--help")
        assert result.returncode == 0 and "Example" in result.stdout, command


def test_infinities_in_json_output_are_text(project: Path) -> None:
    # orjson writes an infinity as null: the contract's bound and the offending value
    # looked absent.
    (project / "train.csv").write_text("x\n1.5\ninf\n")
    (project / "batch.csv").write_text("x\n1.5\n-inf\n")
    inferred = _json(project, "data", "infer-contract", "train.csv", "c.yaml")
    assert inferred["contract"]["columns"]["x"] == {
        "dtype": "float64",
        "nullable": False,
        "min": 1.5,
        "max": "inf",
    }
    assert "max: .inf" in (project / "c.yaml").read_text()
    result = _loopline(project, "data", "validate", "batch.csv", "--contract", "c.yaml", "--json")
    assert result.returncode == 3, result.stderr
    (violation,) = json.loads(result.stdout)["violations"]
    assert (violation["rule"], violation["actual"]) == ("min", "-inf")
    assert violation["examples"] == [{"row": 1, "value": "-inf"}]


def test_float16_and_list_columns_from_parquet(project: Path) -> None:
    # "data add" of a float16 Parquet file and "infer-contract" of a list column failed
    # with a raw Arrow/TypeError message and exit code 1.
    pq.write_table(pa.table({"f": pa.array([1.5, 2.5], pa.float16())}), project / "half.parquet")
    added = _json(project, "data", "add", "half", "half.parquet")
    assert added["schema"] == {"f": "halffloat"} and added["stats"]["f"]["max"] == 2.5
    lists = pa.table({"tags": [["a"], ["b"], ["a"]], "vec": [[1.0], [2.0], [1.0]], "n": [1, 2, 3]})
    pq.write_table(lists, project / "lst.parquet")
    _json(project, "data", "add", "lst", "lst.parquet")
    inferred = _json(project, "data", "infer-contract", "lst@1", "lst.yaml")
    assert inferred["contract"]["columns"]["tags"] == {"dtype": "object", "nullable": False}
    ok = _json(project, "data", "validate", "lst@1", "--contract", "lst.yaml")
    assert ok["ok"] is True


def test_contract_paths_that_are_not_files(project: Path) -> None:
    # Raw FileNotFoundError / IsADirectoryError / UnicodeDecodeError, exit 1.
    (project / "bin.yaml").write_bytes(b"\x89PNG\r\n\x1a\n\xff")
    for args, message in [
        (("infer-contract", "v1.csv", "nope/c.yaml"), "cannot write nope/c.yaml"),
        (("infer-contract", "v1.csv", "images"), "cannot write images: it is a folder"),
        (("validate", "v1.csv", "--contract", "images"), "images is a folder"),
        (("validate", "v1.csv", "--contract", "bin.yaml"), "bin.yaml is not a text file"),
    ]:
        result = _loopline(project, "data", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr


def test_csv_zip_codes_keep_their_leading_zeros(project: Path) -> None:
    # loopline data add stored the zip column as [501, 2134].
    (project / "zip.csv").write_text("id,zip\n1,00501\n2,02134\n")
    added = _json(project, "data", "add", "zips", "zip.csv")
    assert added["schema"] == {"id": "int64", "zip": "string"}
    assert [t["value"] for t in added["stats"]["zip"]["top"]] == ["00501", "02134"]
    inferred = _json(project, "data", "infer-contract", "zips@1", "zips.yaml")
    assert inferred["contract"]["columns"]["zip"]["dtype"] == "str"


def _columns_row(table: str, column: str) -> list[str]:
    """The cells of ``column``'s row in ``data show``'s columns table."""
    for line in table.splitlines():
        cells = [c.strip() for c in line.replace("┃", "│").strip("│ ").split("│")]
        if cells[0] == column:
            return cells
    raise AssertionError(f"no row {column!r} in\n{table}")


def test_show_counts_infinities_and_diff_shows_their_change(project: Path) -> None:
    # --json had the count of inf/-inf per float column, the table not: its mean (of the
    # finite values) and its max 'inf' were all a reader saw.
    (project / "a.csv").write_text("x,y,s\n1.5,1,a\ninf,2,b\n-inf,3,c\n2.5,4,d\n")
    (project / "b.csv").write_text("x,y,s\n1.5,1,a\n2.0,2,b\n2.2,3,c\n2.5,4,d\n")
    for csv in ("a.csv", "b.csv"):
        assert _loopline(project, "data", "add", "inf", csv).returncode == 0
    shown = _loopline(project, "data", "show", "inf@1")
    assert shown.returncode == 0, shown.stderr
    header = _columns_row(shown.stdout, "column")
    assert header[:5] == ["column", "type", "count", "nulls", "±inf"]
    x, y = _columns_row(shown.stdout, "x"), _columns_row(shown.stdout, "y")
    assert (x[4], x[5], x[6]) == ("2", "-inf", "inf")
    assert y[4] == ""  # an integer column has no infinities to count
    # A version without infinities has no such column.
    shown = _loopline(project, "data", "show", "inf@2")
    assert "±inf" not in shown.stdout and _columns_row(shown.stdout, "x")[4] == "1.5"
    diff = _loopline(project, "data", "diff", "inf@1", "inf@2")
    assert diff.returncode == 0, diff.stderr
    assert "x: infinite 2 -> 0" in diff.stdout
    assert [
        (s["column"], s["before"], s["after"])
        for s in _json(project, "data", "diff", "inf@1", "inf@2")["stat_changes"]
        if s["statistic"] == "infinite"
    ] == [("x", 2, 0)]


def test_diff_of_a_table_and_a_files_version_says_the_kinds_differ(project: Path) -> None:
    # A dataset may go from a table to a folder of files; the diff listed the files and
    # nothing else, as if the rows and columns had not changed.
    assert _loopline(project, "data", "add", "mixed", "v1.csv").returncode == 0
    assert _loopline(project, "data", "add", "mixed", "images").returncode == 0
    diff = _loopline(project, "data", "diff", "mixed@1", "mixed@2")
    assert diff.returncode == 0, diff.stderr
    assert "kind: table -> files (rows and columns are compared between two tables only)" in (
        diff.stdout
    )
    assert "  - data.parquet" in diff.stdout and "  + 0.jpg" in diff.stdout
    d = _json(project, "data", "diff", "mixed@2", "mixed@1")
    assert (d["kind_before"], d["kind_after"], d["rows_after"]) == ("files", "table", None)
    same_kind = _json(project, "data", "diff", "mixed@1", "mixed@1")
    assert (same_kind["kind_before"], same_kind["kind_after"]) == ("table", "table")
    assert _loopline(project, "data", "add", "other", "v2.csv").returncode == 0
    assert "kind:" not in _loopline(project, "data", "diff", "mixed@1", "other@1").stdout


def test_ls_in_a_narrow_terminal_folds_a_long_name_instead_of_cutting_it(project: Path) -> None:
    """In 80 columns `data ls` showed 'custome…', no name to pass to `data show`."""
    name = "customer-churn-export-2024-emea-weekly"
    added = _loopline(project, "data", "add", name, "v1.csv", "--description", "weekly export")
    assert added.returncode == 0, added.stderr
    listed = run_cli(["data", "ls"], env={**env_without_loopline(), "COLUMNS": "80"}, cwd=project)
    assert listed.returncode == 0, listed.stderr
    assert "…" not in listed.stdout, listed.stdout
    # The name column's cells, top to bottom, spell the whole name (boxed or not: the
    # column is found by the header's position).
    lines = listed.stdout.splitlines()
    header = next(i for i, ln in enumerate(lines) if " latest " in ln)
    column = slice(0, lines[header].index(" latest ") + 1)
    body = [ln for ln in lines[header + 1 :] if ln.strip(" ─━┡╇┩└┴┘")]
    cells = [ln[column].strip(" │") for ln in body]
    assert name in "".join(cells), listed.stdout
