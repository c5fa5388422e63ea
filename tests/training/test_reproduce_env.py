"""``reproduce_env.build_venv`` with each installer, on a local wheel (no index needed)."""

from __future__ import annotations

import base64
import hashlib
import stat
import subprocess
import zipfile
from pathlib import Path

import pytest

from loopline.errors import InvalidInput, LooplineError
from loopline.training import reproduce_env


def _wheel(folder: Path, version: str = "1.0") -> Path:
    """A pure-Python wheel of ``tinypkg`` (``tinypkg.VALUE == 42``) with a true RECORD."""
    files = {
        "tinypkg/__init__.py": b"VALUE = 42\n",
        f"tinypkg-{version}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: tinypkg\nVersion: {version}\n".encode()
        ),
        f"tinypkg-{version}.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: loopline-tests\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n"
        ),
    }
    record = ""
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record += f"{name},sha256={digest},{len(data)}\n"
    record += f"tinypkg-{version}.dist-info/RECORD,,\n"
    path = folder / f"tinypkg-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr(f"tinypkg-{version}.dist-info/RECORD", record)
    return path


def _value(python: Path) -> str:
    done = subprocess.run(
        [str(python), "-c", "import tinypkg; print(tinypkg.VALUE)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize("installer", ["pip", "uv"])
def test_each_installer_builds_a_venv_with_the_constraints(tmp_path: Path, installer: str) -> None:
    if installer == "uv" and reproduce_env.find_uv() is None:
        pytest.fail("uv is not installed: make setup installs it into .venv")
    lines: list[str] = []
    python = reproduce_env.build_venv(
        tmp_path / "venv",
        [str(_wheel(tmp_path))],
        {"tinypkg": "1.0", "pip": "1.0"},  # the installer's own pin is never written
        on_line=lines.append,
        installer=installer,
    )
    assert _value(python) == "42"
    assert (tmp_path / "venv" / "constraints.txt").read_text() == "tinypkg==1.0\n"
    assert reproduce_env.installed_in(python)["tinypkg"] == "1.0"


def test_a_failing_uv_falls_back_to_pip_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A uv that cannot reach its index fails like this one; pip (which reads pip.conf) goes on.
    broken = tmp_path / "uv"
    broken.write_text(
        "#!/bin/sh\necho 'error: Failed to fetch: https://pypi.org/simple/' >&2\nexit 2\n"
    )
    broken.chmod(broken.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(reproduce_env, "find_uv", lambda: str(broken))
    lines: list[str] = []
    python = reproduce_env.build_venv(
        tmp_path / "venv", [str(_wheel(tmp_path))], {}, on_line=lines.append
    )
    assert _value(python) == "42"
    assert any(
        line.startswith("uv failed, installing with pip instead: uv venv failed") for line in lines
    )
    with pytest.raises(LooplineError, match=r"uv venv failed \(exit 2\)"):
        reproduce_env.build_venv(tmp_path / "v2", [], {}, installer="uv")


def test_an_unknown_or_missing_installer_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(InvalidInput, match="installer must be one of auto, uv, pip, not 'conda'"):
        reproduce_env.build_venv(tmp_path / "v", [], {}, installer="conda")
    monkeypatch.setattr(reproduce_env, "find_uv", lambda: None)
    with pytest.raises(LooplineError, match="uv is not installed") as err:
        reproduce_env.build_venv(tmp_path / "v", [], {}, installer="uv")
    assert "pip install uv" in (err.value.hint or "")
    assert not (tmp_path / "v").exists()
