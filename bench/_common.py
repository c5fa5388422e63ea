"""Shared helpers for benchmarks: anchor virtual environments, timing, result files.

Each anchor (MLflow, Evidently, Feast, DVC) runs in its own virtual environment under
``bench/.envs/<name>`` (their pins clash with each other and with ours), made on first use.
Results go to ``bench/results/<name>.json`` with one row per measured ratio; ``report.py``
renders them into the README.
"""

from __future__ import annotations

import compileall
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ENVS = ROOT / "bench" / ".envs"
RESULTS = ROOT / "bench" / "results"
WORK = ROOT / "bench" / ".work"

# Loopline runs from the source tree (an editable install) in every benchmark: compile it
# now, as pip compiles an installed package (and the anchors' venvs), so that no measured
# process compiles a changed module itself - with PYTHONDONTWRITEBYTECODE set, as on this
# machine, Python would not keep what it compiled, and every CLI start would pay again.
compileall.compile_dir(ROOT / "src", quiet=1)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a server a bench starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def anchor_python(name: str, requirements: Sequence[str]) -> Path:
    """The python of the anchor venv ``name``, created with ``requirements`` on first use."""
    env = ENVS / name
    py = env / "bin" / "python"
    stamp = env / ".installed"
    wanted = "\n".join(requirements)
    if not stamp.exists() or stamp.read_text() != wanted:
        if not py.exists():
            subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
        _install(py, requirements)
        stamp.write_text(wanted)
    return py


def _install(py: Path, requirements: Sequence[str]) -> None:
    """Install ``requirements`` into the venv of ``py``: with the uv of the project's venv
    (``make setup`` installs it; minutes faster for MLflow's or Feast's ~150 packages),
    else, or when uv fails (it reads no pip.conf), with pip. Bytecode is compiled at
    install as pip does, so no anchor pays for it inside a timed run."""
    uv = Path(sys.executable).parent / "uv"
    if uv.exists():
        cmd = [str(uv), "pip", "install", "-q", "--compile-bytecode", "--python", str(py)]
        if subprocess.run([*cmd, *requirements], check=False).returncode == 0:
            return
        print(f"uv failed for {py.parent.parent.name}; installing with pip", file=sys.stderr)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", *requirements], check=True)


def run_json(
    python: Path | str,
    script: Path,
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 1800,
) -> Any:
    """Run ``script`` with ``python`` and parse the JSON it prints on its last line."""
    full_env = {**os.environ, **(env or {})}
    out = subprocess.run(
        [str(python), str(script), *args],
        check=True,
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def median_time(fn: Callable[[], object], repeat: int = 5) -> float:
    """Median wall time of ``fn`` over ``repeat`` calls, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def write_result(
    name: str, rows: list[dict[str, Any]], details: dict[str, Any] | None = None
) -> Path:
    """Write ``bench/results/<name>.json`` and return its path.

    Each row: case, loopline (value with unit), anchor (name), anchor_value, ratio, target.
    """
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {
        "name": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "rows": rows,
        "details": details or {},
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def fmt_ratio(x: float) -> str:
    """A ratio like ``123x``."""
    return f"{x:,.1f}x" if x < 100 else f"{x:,.0f}x"
