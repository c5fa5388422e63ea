"""``loopline demo`` end to end: the closed loop on the NYC flights data, as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_loopline_demo_runs_the_whole_loop(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    out = subprocess.run(
        [sys.executable, "-m", "loopline.cli.main", "demo", "--home", str(home), "--seed", "13"],
        capture_output=True,
        text=True,
        timeout=600,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "HOME": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    assert "loop once #1" in text and "deployed: canary of version 2" in text
    assert "what drifted" in text and "temp" in text
    assert "loop once #2" in text and ("promoted" in text or "rolled_back" in text)
    assert "intact" in text
    assert f"LOOPLINE_HOME={home.resolve()} loopline server" in text
    assert (home / "loopline.db").is_file()
