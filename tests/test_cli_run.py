"""The fork server's processes behave as ``subprocess.Popen``'s do where the tests rely on it:
exit status (a signal's negative), output, ``stderr=STDOUT``, timeouts, the script's own
``sys.path`` and ``sys.argv``, and a real Popen where the fork server cannot serve."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.cli_run import ForkedProcess, popen

SCRIPT = """
import os, sys, time
print("argv", sys.argv[1:], flush=True)
print("path0", sys.path[0], flush=True)
print("cwd", os.getcwd(), flush=True)
print("env", os.environ.get("CLI_RUN_PROBE"), flush=True)
print("to stderr", file=sys.stderr, flush=True)
if sys.argv[1] == "sleep":
    time.sleep(60)
sys.exit(int(sys.argv[2]))
"""


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "probe" / "probe.py"
    path.parent.mkdir()
    path.write_text(textwrap.dedent(SCRIPT))
    return path


def test_a_script_gets_its_arguments_folder_environment_and_exit_status(
    script: Path, tmp_path: Path
) -> None:
    proc = popen(
        [sys.executable, str(script), "exit", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "CLI_RUN_PROBE": "yes"},
        cwd=tmp_path,
        text=True,
    )
    assert isinstance(proc, ForkedProcess)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3
    assert out.splitlines() == [
        "argv ['exit', '3']",
        f"path0 {script.parent}",  # as `python SCRIPT`: the script's folder, not the cwd
        f"cwd {tmp_path}",
        "env yes",
    ]
    assert err == "to stderr\n"


def test_readline_then_communicate_loses_nothing_and_stderr_can_join_stdout(
    script: Path,
) -> None:
    proc = popen(
        [sys.executable, str(script), "exit", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().startswith("argv")
    out, err = proc.communicate(timeout=60)
    assert err is None and proc.returncode == 0
    assert out.splitlines()[-1] == "to stderr" and len(out.splitlines()) == 4


def test_a_killed_process_reports_the_signal_and_wait_times_out_while_it_runs(
    script: Path,
) -> None:
    proc = popen([sys.executable, str(script), "sleep", "0"], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().startswith(b"argv")
    assert proc.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=0.2)
    with pytest.raises(subprocess.TimeoutExpired):
        proc.communicate(timeout=0.2)
    proc.terminate()
    out, _ = proc.communicate(timeout=30)  # goes on where the timed-out call stopped
    assert out.splitlines() == [
        f"path0 {script.parent}".encode(),
        f"cwd {Path.cwd()}".encode(),
        b"env None",
    ]
    assert proc.returncode == -signal.SIGTERM
    proc.kill()  # after the end: nothing to signal, no error


def test_a_module_runs_as_python_dash_m(tmp_path: Path) -> None:
    proc = popen(
        [sys.executable, "-m", "loopline.cli.main", "--version"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.startswith("loopline ")


def test_what_the_fork_server_cannot_serve_starts_from_scratch(script: Path) -> None:
    # PYTHONHASHSEED is read as Python starts: a fork would not honour it.
    env = {**os.environ, "PYTHONHASHSEED": "7"}
    proc = popen([sys.executable, str(script), "exit", "5"], env=env, stdout=subprocess.DEVNULL)
    assert isinstance(proc, subprocess.Popen)
    assert proc.wait(timeout=60) == 5
    other = popen([sys.executable, "-c", "raise SystemExit(4)"])
    assert isinstance(other, subprocess.Popen) and other.wait(timeout=60) == 4
