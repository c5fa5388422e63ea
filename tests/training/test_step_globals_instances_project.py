"""A user's project run again and again by the real pipeline runner, each run a fresh
process on the same store: the step's cache key follows an instance of the user's own
dataclass held in a global (``CFG = Cfg(threshold=0.5)``), an Enum member held in a global
(``MODE = Mode.FAST``), and, for a flow run as ``python -m proj.flow``, the modules of its
package (``from proj import config``).

Before, all three were left out of the key: an edited value was answered with the output
the old value made (a stale cache hit).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from loopline.core.context import Context
from loopline.training.pipeline import get_pipeline_run
from tests.cli_run import popen
from tests.training.step_keys import executions, forget_bytecode, run_flow

_FLOW = """
import enum
from dataclasses import dataclass
from pathlib import Path

import loopline as ll


@dataclass(frozen=True)
class Cfg:
    threshold: float
    label: str = "churn"


class Mode(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


CFG = Cfg(threshold={threshold})
MODE = Mode.{mode}


@ll.step
def decide(workdir: str, score: float) -> dict:
    with (Path(workdir) / "decide.count").open("a") as f:
        f.write("x\\n")
    return {{"above": score > CFG.threshold, "threshold": CFG.threshold, "mode": MODE.value}}


@ll.pipeline
def pipe(workdir: str, score: float = 0.6) -> None:
    decide(workdir, score)
"""


def _write_flow(proj: Path, threshold: str = "0.5", mode: str = "FAST") -> None:
    (proj / "flow.py").write_text(_FLOW.format(threshold=threshold, mode=mode))
    forget_bytecode(proj)


def test_a_step_reruns_when_a_dataclass_instance_or_enum_global_changes(
    ctx: Context, tmp_path: Path
) -> None:
    proj, wd = tmp_path / "proj", tmp_path / "work"
    proj.mkdir()
    wd.mkdir()
    _write_flow(proj)
    first = run_flow(ctx, proj, wd)
    assert first[:2] == ("finished", {"above": True, "threshold": 0.5, "mode": "fast"})
    # Another process computes the same key.
    assert run_flow(ctx, proj, wd) == ("cached", first[1], first[2])

    # A field of the dataclass instance.
    _write_flow(proj, threshold="0.7")
    status, output, key = run_flow(ctx, proj, wd)
    assert (status, output) == ("finished", {"above": False, "threshold": 0.7, "mode": "fast"})
    assert key != first[2]

    # Back to 0.5: the first output is a hit again.
    _write_flow(proj)
    assert run_flow(ctx, proj, wd) == ("cached", first[1], first[2])
    assert executions(wd) == 2

    # The Enum member the global holds.
    _write_flow(proj, mode="SLOW")
    status, output, key = run_flow(ctx, proj, wd)
    assert (status, output) == ("finished", {"above": True, "threshold": 0.5, "mode": "slow"})
    assert key != first[2]
    assert executions(wd) == 3


_PKG_FLOW = """
import sys
from pathlib import Path

import orjson

import loopline as ll
from proj import config


@ll.step
def decide(workdir: str, score: float) -> dict:
    with (Path(workdir) / "decide.count").open("a") as f:
        f.write("x\\n")
    return {"above": score > config.THRESHOLD, "threshold": config.THRESHOLD}


@ll.pipeline
def pipe(workdir: str, score: float = 0.6) -> None:
    decide(workdir, score)


if __name__ == "__main__":
    result = pipe.run({"workdir": sys.argv[1]})
    step = result.steps["decide"]
    print(orjson.dumps({"run_id": result.run_id, "status": step.status}).decode())
"""


def _run_module(ctx: Context, root: Path, wd: Path) -> tuple[str, Any, str | None]:
    """``python -m proj.flow WORKDIR`` in ``root``, in a new process."""
    env = {
        "LOOPLINE_URI": ctx.settings.metadata_uri,
        "LOOPLINE_ARTIFACTS": ctx.settings.artifacts_uri,
    }
    proc = popen(
        [sys.executable, "-m", "proj.flow", str(wd)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **env},
        cwd=root,
        text=True,
    )
    out, err = proc.communicate(timeout=120)
    assert proc.wait() == 0, err
    summary = orjson.loads(out.strip().splitlines()[-1])
    result = get_pipeline_run(summary["run_id"])
    return summary["status"], result.output("decide"), result.steps["decide"].cache_key


def test_a_flow_run_with_python_m_counts_the_modules_of_its_package(
    ctx: Context, tmp_path: Path
) -> None:
    root, wd = tmp_path / "root", tmp_path / "work"
    pkg = root / "proj"
    pkg.mkdir(parents=True)
    wd.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "flow.py").write_text(_PKG_FLOW)

    def write_config(threshold: str) -> None:
        (pkg / "config.py").write_text(f"THRESHOLD = {threshold}\n")
        forget_bytecode(pkg)

    write_config("0.5")
    first = _run_module(ctx, root, wd)
    assert first[:2] == ("finished", {"above": True, "threshold": 0.5})
    assert _run_module(ctx, root, wd) == ("cached", first[1], first[2])

    # proj.config is the flow's own package: an edited constant runs the step again.
    write_config("0.75")
    status, output, key = _run_module(ctx, root, wd)
    assert (status, output) == ("finished", {"above": False, "threshold": 0.75})
    assert key != first[2]
    write_config("0.5")
    assert _run_module(ctx, root, wd) == ("cached", first[1], first[2])
    assert executions(wd) == 2
