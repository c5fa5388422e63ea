from __future__ import annotations

import inspect
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main

from loopline.cli.main import COMMAND_SUMMARIES, LAZY_COMMANDS, app, load_command
from tests.cli_run import popen, run_cli
from tests.conftest import run_python
from tests.health import wait_healthy
from tests.server.conftest import free_port, stop_server


def _loopline(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return run_cli(args, env={**os.environ, **(env or {})}, cwd=cwd, timeout=120)


def _all_commands() -> list[tuple[str, Any]]:
    # Typer may bundle its own click, so walk by shape rather than by click's classes.
    root = typer.main.get_command(app)
    found: list[tuple[str, Any]] = []

    def walk(prefix: str, cmd: Any) -> None:
        found.append((prefix or "loopline", cmd))
        for name, sub in (getattr(cmd, "commands", None) or {}).items():
            walk(f"{prefix} {name}".strip(), sub)

    walk("", root)
    return found


COMMANDS = _all_commands()


def test_the_command_tree_is_walked() -> None:
    names = {name for name, _ in COMMANDS}
    assert {"loopline", "db upgrade", "audit verify", "doctor", "runs ls"} <= names


@pytest.mark.parametrize(("name", "cmd"), COMMANDS, ids=[name for name, _ in COMMANDS])
def test_every_command_has_help_with_an_example(name: str, cmd: Any) -> None:
    text = cmd.help or ""
    assert text.strip(), f"`loopline {name}` has no help"
    assert "Example" in text, f"`loopline {name}` help has no example"


def test_version() -> None:
    result = _loopline("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("loopline ")


def test_doctor_passes_on_the_embedded_default(tmp_path: Path) -> None:
    result = _loopline("doctor", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert '"ok": false' not in result.stdout


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"LOOPLINE_URI": "foo://x"}, "LOOPLINE_URI"),
        ({"LOOPLINE_URI": "postgresql://nobody@127.0.0.1:1/db"}, "LOOPLINE_URI"),
        ({"LOOPLINE_ARTIFACTS": "/proc/cannot-write"}, "LOOPLINE_ARTIFACTS"),
    ],
    ids=["unknown-scheme", "unreachable-postgres", "unwritable-folder"],
)
def test_bad_backend_is_one_line_exit_2_without_traceback(
    tmp_path: Path, env: dict[str, str], setting: str
) -> None:
    result = _loopline("db", "upgrade", env=env, cwd=tmp_path)
    if setting == "LOOPLINE_ARTIFACTS":
        result = _loopline("doctor", env=env, cwd=tmp_path)
        assert result.returncode == 2
        assert setting in result.stdout.replace("\n", " ") or setting in result.stdout
        return
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert setting in result.stderr
    assert len([ln for ln in result.stderr.splitlines() if ln.strip()]) <= 2


def test_a_database_another_process_holds_locked_is_one_line_saying_what_to_do(
    tmp_path: Path,
) -> None:
    assert _loopline("db", "upgrade", cwd=tmp_path).returncode == 0
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.txt").write_text("x")
    # Another process stopped in the middle of a write: here, this test's open transaction.
    holder = sqlite3.connect(tmp_path / ".loopline" / "loopline.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        result = _loopline(
            "data",
            "add",
            "x",
            "data",
            env={"LOOPLINE_SQLITE_BUSY_TIMEOUT_MS": "200"},
            cwd=tmp_path,
        )
    finally:
        holder.close()
    assert result.returncode == 2, result.stderr
    said = " ".join(result.stderr.split())
    assert "Traceback" not in said and "OperationalError" not in said
    assert "stayed locked by another process for longer than the busy timeout" in said
    assert "stopped (^Z) or hung in the middle of a write" in said and "fuser -v" in said


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = _loopline("--debug", "db", "upgrade", env={"LOOPLINE_URI": "foo://x"}, cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" in result.stderr


def test_the_debug_setting_shows_the_traceback_too(tmp_path: Path) -> None:
    quiet = _loopline("runs", "show", "no-such-run", cwd=tmp_path)
    loud = _loopline("runs", "show", "no-such-run", env={"LOOPLINE_DEBUG": "1"}, cwd=tmp_path)
    assert quiet.returncode == loud.returncode == 4
    assert "Traceback" not in quiet.stderr
    assert "Traceback" in loud.stderr and "no-such-run" in loud.stderr


def test_missing_bucket_fails_doctor_naming_the_setting(tmp_path: Path) -> None:
    endpoint = os.environ.get("LOOPLINE_TEST_S3_ENDPOINT")
    if not endpoint:
        pytest.skip("needs the S3 service (make test)")
    env = {
        "LOOPLINE_ARTIFACTS": "s3://no-such-bucket/x",
        "LOOPLINE_S3_ENDPOINT_URL": endpoint,
        "LOOPLINE_S3_ACCESS_KEY_ID": os.environ["LOOPLINE_TEST_S3_KEY"],
        "LOOPLINE_S3_SECRET_ACCESS_KEY": os.environ["LOOPLINE_TEST_S3_SECRET"],
    }
    result = _loopline("doctor", "--json", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "LOOPLINE_ARTIFACTS" in result.stdout


def test_audit_verify_on_a_fresh_store(tmp_path: Path) -> None:
    result = _loopline("audit", "verify", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert '"ok": true' in result.stdout


def test_audit_head_is_an_anchor_verify_checks(tmp_path: Path) -> None:
    empty = _loopline("audit", "head", "--json", cwd=tmp_path)
    assert empty.returncode == 0 and empty.stdout.strip() == "null", empty.stderr
    (tmp_path / "toy.csv").write_text("a,b\n1,x\n2,y\n")
    added = _loopline("data", "add", "toy", str(tmp_path / "toy.csv"), cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    head = _loopline("audit", "head", cwd=tmp_path)
    assert head.returncode == 0, head.stderr
    anchor = head.stdout.strip()
    assert re.fullmatch(r"[0-9]+:[0-9a-f]{64}", anchor), anchor
    ok = _loopline("audit", "verify", "--anchor", anchor, cwd=tmp_path)
    assert ok.returncode == 0 and "intact" in ok.stdout, ok.stderr
    seq = anchor.split(":")[0]
    wrong = _loopline("audit", "verify", "--anchor", f"{seq}:{'0' * 64}", cwd=tmp_path)
    assert wrong.returncode == 6 and f"row {seq}: its hash" in wrong.stderr, wrong.stderr
    bad = _loopline("audit", "verify", "--anchor", "nope", cwd=tmp_path)
    assert bad.returncode == 2 and "is not SEQ:HASH" in bad.stderr, bad.stderr


_IMPORTS_OF_DATA_ADD = """
import sys
from loopline.cli.main import app
app(["data", "add", "toy", sys.argv[1], "--json"], standalone_mode=False)
heavy = ["fastapi", "pandas", "pyarrow", "rich", "sqlalchemy.orm", "loopline.server"]
print(sorted(m for m in heavy if m in sys.modules))
print(sorted(m for m in sys.modules if m.startswith("loopline.cli.")))
"""


def test_a_command_loads_only_its_own_module_and_what_it_needs(tmp_path: Path) -> None:
    # The start-up of a quick command is its import time: `data add` of an unchanged folder
    # must not pay for the server, the UI, pandas or the other commands.
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("a")
    done = run_python(_IMPORTS_OF_DATA_ADD, str(tmp_path / "data"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[-2] == "[]", f"heavy modules loaded by `data add --json`: {lines[-2]}"
    assert lines[-1] == str(
        [
            "loopline.cli._common",
            "loopline.cli.data_add_summary",  # data add's own lines for people
            "loopline.cli.data_cmd",
            "loopline.cli.main",
        ]
    )


_IMPORTS_OF_HELP = """
import sys
from typer.testing import CliRunner
from loopline.cli.main import app
result = CliRunner().invoke(app, ["--help"], terminal_width=100)
assert result.exit_code == 0, result.output
assert "deployments" in result.output and "Versioned datasets" in result.output
print(sorted(m for m in sys.modules if m.startswith("loopline.cli.")))
print(sorted(m for m in sys.modules if m.split(".")[0] in ("sqlalchemy", "pandas")))
"""


def test_the_root_help_imports_no_command(tmp_path: Path) -> None:
    done = run_python(_IMPORTS_OF_HELP, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    commands, heavy = done.stdout.strip().splitlines()[-2:]
    assert commands == str(["loopline.cli._common", "loopline.cli.main"])
    assert heavy == "[]"


def test_each_command_summary_is_the_first_paragraph_of_its_help() -> None:
    assert list(COMMAND_SUMMARIES) == list(LAZY_COMMANDS)
    for name in LAZY_COMMANDS:
        cmd = load_command(name)
        first = inspect.cleandoc(cmd.short_help or cmd.help or "").split("\n\n")[0]
        assert COMMAND_SUMMARIES[name] == " ".join(first.split()), name


def test_the_root_help_reads_the_same_with_every_command_loaded(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "100")

    def root_help(load: bool) -> str:
        group: Any = typer.main.get_command(app)
        if load:
            for name in LAZY_COMMANDS:
                _ = group.commands[name]
        with group.make_context("loopline", [], resilient_parsing=True) as ctx:
            text = ctx.get_help()
        return str(text) + capsys.readouterr().out

    assert root_help(load=False) == root_help(load=True)


def test_loop_pause_refuses_a_model_it_does_not_know(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "churn.yaml").write_text(
        "model: churn\ndata: churn\nretrain: {pipeline: 'pkg.mod:train'}\n"
        "gate: {dataset: h, thresholds: {label: y, metrics: {auc: {lower: 0.6}}}}\n"
    )
    typo = _loopline("loop", "pause", "chrun", "--reason", "typo", cwd=tmp_path)
    assert typo.returncode == 4, typo.stderr
    assert "'chrun'" in typo.stderr and "churn" in typo.stderr and "Traceback" not in typo.stderr
    empty = _loopline("loop", "resume", "", cwd=tmp_path)
    assert empty.returncode == 2 and "model name is empty" in empty.stderr
    assert _loopline("loop", "pause", "churn", cwd=tmp_path).returncode == 0
    assert _loopline("loop", "resume", "*", cwd=tmp_path).returncode == 0
    audit = _loopline("audit", "ls", "--json", cwd=tmp_path)
    assert "chrun" not in audit.stdout and audit.stdout.count("loop.pause") == 1, audit.stderr


@pytest.mark.parametrize("command", ["server", "serve"])
def test_the_servers_startup_line_hides_the_database_password(
    pg_uri: str, tmp_path: Path, command: str
) -> None:
    password = "hunter2-do-not-log"
    scheme, rest = pg_uri.split("://", 1)
    user, host = rest.split("@", 1)  # the test server trusts loopback: the password goes unused
    env = {
        **os.environ,
        "LOOPLINE_URI": f"{scheme}://{user}:{password}@{host}",
        "LOOPLINE_ARTIFACTS": str(tmp_path / "art"),
    }
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = popen(
            [sys.executable, "-m", "loopline.cli.main", command, "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, log.read_text, what=command)
    finally:
        stop_server(proc)
    text = " ".join(log.read_text().split())
    assert f"metadata {scheme}://{user}:***@{host}" in text
    assert password not in text
