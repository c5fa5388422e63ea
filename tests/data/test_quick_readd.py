"""The quick re-add answers exactly as the full path does, and only when it can be sure."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loopline.data.quick_readd import unchanged_readd
from tests.cli_run import run_cli

# The `loopline` script's entry in a fresh interpreter; prints which heavy modules it loaded
# on stderr, so a test can tell the quick path from the full one.
_ENTRY = """
import gc, sys
from loopline.cli.entry import main
sys.argv = ["loopline", *sys.argv[1:]]
try:
    main()
finally:
    heavy = ("sqlalchemy", "typer", "pydantic_settings", "rich")
    print("collector on" if gc.isenabled() else "collector off", file=sys.stderr)
    print("frozen" if gc.get_freeze_count() else "not frozen", file=sys.stderr)
    print(sorted(m for m in heavy if m in sys.modules), file=sys.stderr)
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("LOOPLINE_")}
    env.update(extra)
    return env


def _run(cwd: Path, args: list[str], *, quick: bool, **env: str) -> tuple[str, str]:
    """(stdout, the heavy modules loaded) of ``loopline ARGS``: through the script's entry
    (``quick``) or straight through the Typer app."""
    stdout, stderr = _run_full(cwd, args, quick=quick, **env)
    return stdout, stderr[-1] if quick else ""


def _run_full(cwd: Path, args: list[str], *, quick: bool, **env: str) -> tuple[str, list[str]]:
    # The quick path's entry starts a fresh interpreter: what it imports is the point. The
    # full path is the Typer app, `python -m loopline.cli.main`, as a child forked from the
    # worker's fork server (tests.cli_run): the same program, environment, folder and pipes,
    # without ~0.5 s of imports per call.
    if quick:
        done = subprocess.run(
            [sys.executable, "-c", _ENTRY, *args],
            cwd=cwd,
            env=_env(**env),
            capture_output=True,
            text=True,
            timeout=120,
        )
    else:
        done = run_cli(args, env=_env(**env), cwd=cwd, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout, done.stderr.strip().splitlines()


def _folder(root: Path, n: int = 5) -> Path:
    root.mkdir(parents=True)
    for i in range(n):
        (root / f"f{i}.bin").write_bytes(os.urandom(100 + i))
    (root / "sub").mkdir()
    (root / "sub" / "g.txt").write_text("nested")
    time.sleep(0.05)  # older than the hash cache's racy window
    return root


@pytest.fixture
def added(tmp_path: Path) -> Path:
    """A folder added once as dataset ``imgs`` (full path) to the home ``tmp_path/home``."""
    folder = _folder(tmp_path / "imgs")
    out, _ = _run(
        tmp_path, ["data", "add", "imgs", "imgs", "--json"], quick=False, LOOPLINE_HOME="home"
    )
    assert '"created_now": true' in out
    return folder


def test_the_quick_answer_is_the_full_answer_byte_for_byte(tmp_path: Path, added: Path) -> None:
    full, _ = _run(
        tmp_path, ["data", "add", "imgs", "imgs", "--json"], quick=False, LOOPLINE_HOME="home"
    )
    quick, heavy = _run(
        tmp_path, ["data", "add", "imgs", "imgs", "--json"], quick=True, LOOPLINE_HOME="home"
    )
    assert quick == full
    assert heavy == "[]", f"the quick re-add imported {heavy}"
    assert '"created_now": false' in quick and '"cached": 6' in quick


@pytest.mark.parametrize(
    ("env", "styled"),
    # Each way to either side of Rich's test once (tests/cli/test_data_add_summary.py checks
    # that test against Rich's own for every setting).
    [
        ({}, False),
        ({"FORCE_COLOR": "1"}, True),
        ({"FORCE_COLOR": "1", "TTY_COMPATIBLE": "0"}, False),
    ],
    ids=["piped", "FORCE_COLOR", "not-TTY_COMPATIBLE"],
)
def test_the_quick_answer_for_people_is_the_full_one_byte_for_byte(
    tmp_path: Path, added: Path, env: dict[str, str], styled: bool
) -> None:
    # Without --json too: a person re-adding unchanged data waited ~0.65 s for Typer and
    # SQLAlchemy to import. Where Rich would style nothing the lines are written as plain
    # text, without importing Rich; else Rich's console prints them.
    env = {"LOOPLINE_HOME": "home", "COLUMNS": "60", **env}
    full, _ = _run(tmp_path, ["data", "add", "imgs", "imgs"], quick=False, **env)
    quick, heavy = _run(tmp_path, ["data", "add", "imgs", "imgs"], quick=True, **env)
    assert quick == full
    assert heavy == ("['rich']" if styled else "[]"), f"the quick re-add imported {heavy}"
    assert ("\x1b[" in quick) == styled
    text = re.sub(r"\x1b\[[0-9;]*m", "", quick)
    # Each line whole, even past the 60 columns: a log line is not broken in two.
    first, second = text.splitlines()
    assert first.startswith("imgs@1 (unchanged, same version) files hash ")
    assert second.startswith("6 file(s)") and second.endswith(" in 0.00 s"), second


def test_a_single_file_and_a_version_with_a_description(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(os.urandom(1000))
    time.sleep(0.05)
    first, _ = _run(
        tmp_path,
        ["data", "add", "m", "model.bin", "-d", "weights", "--json"],
        quick=False,
        LOOPLINE_HOME="h",
    )
    assert '"description": "weights"' in first
    full, _ = _run(
        tmp_path, ["data", "add", "m", "model.bin", "--json"], quick=False, LOOPLINE_HOME="h"
    )
    quick, heavy = _run(
        tmp_path, ["data", "add", "m", "model.bin", "--json"], quick=True, LOOPLINE_HOME="h"
    )
    assert (quick, heavy) == (full, "[]")
    # The version's own description, as the full path reads it once it was replaced.
    described, _ = _run(
        tmp_path,
        ["data", "add", "m", "model.bin", "-d", "new weights", "--json"],
        quick=False,
        LOOPLINE_HOME="h",
    )
    assert '"description_updated": true' in described
    full, _ = _run(
        tmp_path, ["data", "add", "m", "model.bin", "--json"], quick=False, LOOPLINE_HOME="h"
    )
    quick, heavy = _run(
        tmp_path, ["data", "add", "m", "model.bin", "--json"], quick=True, LOOPLINE_HOME="h"
    )
    assert (quick, heavy) == (full, "[]")
    assert '"description": "new weights"' in quick and '"description_updated": false' in quick


def test_an_explicit_sqlite_uri_and_artifact_folder(tmp_path: Path) -> None:
    _folder(tmp_path / "d")
    env = {
        "LOOPLINE_URI": f"sqlite:///{tmp_path / 'meta.db'}",
        "LOOPLINE_ARTIFACTS": str(tmp_path / "store"),
        "LOOPLINE_HOME": "hh",
    }
    _run(tmp_path, ["data", "add", "d", "d", "--json"], quick=False, **env)
    full, _ = _run(tmp_path, ["data", "add", "d", "d", "--json"], quick=False, **env)
    quick, heavy = _run(tmp_path, ["data", "add", "d", "d", "--json"], quick=True, **env)
    assert (quick, heavy) == (full, "[]")


def _home_env() -> dict[str, str]:
    return {"LOOPLINE_HOME": "home"}


def test_it_answers_in_process_for_the_unchanged_folder(tmp_path: Path, added: Path) -> None:
    answer = unchanged_readd("imgs", "imgs", environ=_home_env())
    assert answer is not None
    assert (answer["ref"], answer["created_now"], answer["file_count"]) == ("imgs@1", False, 6)


def test_a_changed_added_or_removed_file_is_left_to_the_full_path(
    tmp_path: Path, added: Path
) -> None:
    (added / "f0.bin").write_bytes(b"changed")
    assert unchanged_readd("imgs", "imgs", environ=_home_env()) is None
    out, heavy = _run(
        tmp_path, ["data", "add", "imgs", "imgs", "--json"], quick=True, LOOPLINE_HOME="home"
    )
    assert '"version": 2' in out and '"created_now": true' in out
    assert "sqlalchemy" in heavy
    # Version 2 is now known and unchanged: quick again.
    time.sleep(0.05)
    out, _ = _run(
        tmp_path, ["data", "add", "imgs", "imgs", "--json"], quick=False, LOOPLINE_HOME="home"
    )  # caches the changed file's digest
    assert unchanged_readd("imgs", "imgs", environ=_home_env()) is not None
    (added / "new.bin").write_bytes(b"new")
    assert unchanged_readd("imgs", "imgs", environ=_home_env()) is None
    (added / "new.bin").unlink()
    (added / "f1.bin").unlink()
    assert unchanged_readd("imgs", "imgs", environ=_home_env()) is None


def test_content_that_is_not_the_newest_version_is_left_to_the_full_path(
    tmp_path: Path, added: Path
) -> None:
    _folder(tmp_path / "other")
    _run(tmp_path, ["data", "add", "imgs", "other", "--json"], quick=False, LOOPLINE_HOME="home")
    # imgs@1's content again: the full path makes version 3, so no quick answer.
    assert unchanged_readd("imgs", "imgs", environ=_home_env()) is None
    assert unchanged_readd("ghost", "imgs", environ=_home_env()) is None


@pytest.mark.parametrize(
    "env",
    [
        {"LOOPLINE_HOME": "home", "LOOPLINE_SQLITE_BUSY_TIMEOUT_MS": "-1"},
        {"LOOPLINE_HOME": "home", "LOOPLINE_DEBUG": "maybe"},
        {"LOOPLINE_HOME": "home", "loopline_home": "home"},
        {"LOOPLINE_HOME": "home", "LOOPLINE_CONFIG": "x.toml"},
        {"LOOPLINE_HOME": "home", "LOOPLINE_URI": "sqlite://"},
        {"LOOPLINE_HOME": "home", "LOOPLINE_URI": "http://localhost:1"},
        {"LOOPLINE_HOME": "elsewhere"},
    ],
    ids=[
        "other-setting",
        "invalid-setting",
        "lower-case",
        "config-file",
        "memory-db",
        "remote",
        "other-home",
    ],
)
def test_settings_it_does_not_read_are_left_to_the_full_path(
    tmp_path: Path, added: Path, env: dict[str, str]
) -> None:
    assert unchanged_readd("imgs", "imgs", environ=env) is None


def test_a_loopline_toml_is_left_to_the_full_path(tmp_path: Path, added: Path) -> None:
    (tmp_path / "loopline.toml").write_text('home = "home"\n')
    assert unchanged_readd("imgs", "imgs", environ=_home_env()) is None


def test_a_schema_behind_the_newest_is_left_to_the_full_path(tmp_path: Path, added: Path) -> None:
    with sqlite3.connect(tmp_path / "home" / "loopline.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0010_monitoring_index'")
    assert unchanged_readd("imgs", "imgs", environ=_home_env()) is None


def test_tables_missing_sources_and_a_missing_store_are_left_to_the_full_path(
    tmp_path: Path, added: Path
) -> None:
    (tmp_path / "t.csv").write_text("a\n1\n")
    (tmp_path / "empty").mkdir()
    for source in ("t.csv", "empty", "nothing-here"):
        assert unchanged_readd("imgs", source, environ=_home_env()) is None
    (tmp_path / "home" / "hashcache.db").unlink()
    assert unchanged_readd("imgs", "imgs", environ=_home_env()) is None
    assert unchanged_readd("imgs", "imgs", environ={"LOOPLINE_HOME": "nowhere"}) is None


def test_the_entry_runs_the_full_app_for_a_first_add(tmp_path: Path) -> None:
    _folder(tmp_path / "d")
    out, err = _run_full(
        tmp_path, ["data", "add", "d", "d", "--json"], quick=True, LOOPLINE_HOME="home"
    )
    assert '"created_now": true' in out
    # The full app ran, without the collector's passes during its imports and at exit, for
    # `data add` only.
    assert "sqlalchemy" in err[-1] and err[-2] == "frozen" and err[-3] == "collector off"
    out, err = _run_full(tmp_path, ["data", "ls", "--json"], quick=True, LOOPLINE_HOME="home")
    assert '"name": "d"' in out and err[-2] == "not frozen" and err[-3] == "collector on"
