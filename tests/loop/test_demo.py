"""``loopline demo`` end to end: the closed loop on the NYC flights data, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_run import run_cli


@pytest.mark.slow
def test_loopline_demo_runs_the_whole_loop(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    # A process of its own, forked from the worker's fork server (tests.cli_run): the
    # imports of `python -m loopline.cli.main` are done once per worker, the rest is the
    # command as a user runs it, with only these variables (and the suite's OpenMP and
    # OpenBLAS thread settings, see tests/conftest.py: the demo and its model server train
    # and predict with gradient boosting on the suite's shared cores).
    env = {"PATH": "/usr/bin:/bin", "COLUMNS": "200", "HOME": str(tmp_path)}
    env.update({k: os.environ[k] for k in ("OMP_WAIT_POLICY", "OPENBLAS_NUM_THREADS")})
    out = run_cli(["demo", "--home", str(home), "--seed", "13"], env=env, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    assert "loop once #1" in text and "deployed: canary of version 2" in text
    assert "what drifted" in text and "temp" in text
    assert "loop once #2" in text and ("promoted" in text or "rolled_back" in text)
    assert "intact" in text
    # The commands it prints run as printed, from where it ran, with no venv activated.
    exe = Path(sys.executable).parent / "loopline"
    assert f"LOOPLINE_HOME=demo {exe} server --port 5000" in text
    [status_cmd] = [ln.split(": ", 1)[1] for ln in text.splitlines() if "loop's state" in ln]
    status = subprocess.run(
        ["bash", "-c", status_cmd], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert status.returncode == 0, status.stderr
    assert "flights" in status.stdout
    assert (home / "loopline.db").is_file()


def _printed_command(cwd: Path, path: str) -> str:
    code = "from loopline.loop.demo import loopline_command; print(loopline_command())"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PATH": path, "HOME": str(cwd)},
        cwd=cwd,
        check=True,
    )
    return out.stdout.strip()


def test_the_loopline_command_the_demo_prints_runs_without_an_activated_venv(
    tmp_path: Path,
) -> None:
    """After ``make demo`` the venv is not activated: a bare ``loopline`` is "command not
    found", so the demo names the venv's script, relative to the folder it ran in."""
    bin_dir = Path(sys.executable).parent
    venv_parent = bin_dir.parent.parent
    printed = _printed_command(venv_parent, "/usr/bin:/bin")
    assert printed == f"{bin_dir.parent.name}/bin/loopline"
    ran = subprocess.run(
        ["bash", "-c", f"{printed} --version"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        cwd=venv_parent,
    )
    assert ran.returncode == 0, ran.stderr
    # From another folder: the absolute path.
    assert _printed_command(tmp_path, "/usr/bin:/bin") == str(bin_dir / "loopline")
    # With the venv on PATH (activated), the bare name.
    assert _printed_command(tmp_path, f"{bin_dir}:/usr/bin:/bin") == "loopline"
