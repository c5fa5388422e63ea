"""Fault: the driver of a pipeline run killed with SIGKILL between two steps' writes.

The runner writes step bookkeeping behind (:mod:`loopline.training.step_journal`), so
steps that ended shortly before the kill may have run without being recorded. Afterwards
no step is recorded finished without its run and cache entry, the audit chain is whole, and
``loopline pipeline resume`` reuses exactly the steps recorded finished and runs every other
step again (outputs are content-addressed, so running one twice is harmless).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import sqlalchemy as sa

import loopline as ll
from loopline.core import audit
from loopline.core.context import Context
from loopline.training.pipeline import list_pipeline_runs
from loopline.training.pipeline_tables import step_cache

STEPS, KILL_AT = 40, 30

WORKLOAD = '''
"""A chain of steps; step KILL_AT kills its own driver while the file 'armed' exists."""
import os, signal
from pathlib import Path
from typing import Any

import loopline as ll


@ll.step
def link(workdir: str, i: int, prev: Any) -> int:
    with (Path(workdir) / f"link-{i}.count").open("a") as f:
        f.write("x\\n")
    if i == int(os.environ["KILL_AT"]) and (Path(workdir) / "armed").exists():
        os.kill(os.getpid(), signal.SIGKILL)  # the local executor runs steps in the driver
    return i


@ll.pipeline
def killchain(workdir: str, steps: int = 10) -> None:
    prev = None
    for i in range(steps):
        prev = link(workdir, i, prev)
'''


def _loopline(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("loopline")
    return subprocess.run(
        [str(exe), *args], cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


def _runs(wd: Path, i: int) -> int:
    path = wd / f"link-{i}.count"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_resume_after_sigkill_reruns_every_step_not_durably_recorded(tmp_path: Path) -> None:
    project, wd = tmp_path / "project", tmp_path / "work"
    project.mkdir()
    wd.mkdir()
    (project / "killmod.py").write_text(textwrap.dedent(WORKLOAD))
    env = {
        "LOOPLINE_URI": f"sqlite:///{tmp_path / 'meta.db'}",
        "LOOPLINE_ARTIFACTS": str(tmp_path / "artifacts"),
        "KILL_AT": str(KILL_AT),
    }
    (wd / "armed").touch()
    killed = _loopline(
        ["pipeline", "run", "killmod:killchain", "-p", f"workdir={wd}", "-p", f"steps={STEPS}"],
        project,
        env,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert [_runs(wd, i) for i in range(STEPS)] == [1] * (KILL_AT + 1) + [0] * (STEPS - KILL_AT - 1)

    ctx: Context = ll.init(uri=env["LOOPLINE_URI"], artifacts=env["LOOPLINE_ARTIFACTS"])
    try:
        (before,) = list_pipeline_runs("killchain")
        assert before.status == "running"
        names = list(before.steps)
        recorded = [n for n in names if before.steps[n].status == "finished"]
        # The chain's steps are recorded in order: what is durable is a prefix of it.
        assert recorded == names[: len(recorded)]
        assert len(recorded) <= KILL_AT
        assert all(before.steps[n].status in ("pending", "running") for n in names[len(recorded) :])
        with ctx.engine.connect() as conn:
            cached = {r.run_id for r in conn.execute(sa.select(step_cache.c.run_id)) if r.run_id}
        for name in recorded:
            rec = before.steps[name]
            run = ll.get_run(rec.run_id or "")
            assert (run.status, run.parent_run_id) == ("FINISHED", before.run_id)
            assert rec.run_id in cached
        assert len(cached) == len(recorded)  # no cache entry of a step not recorded
        assert audit.verify(ctx.engine).ok
    finally:
        ctx.close()

    (wd / "armed").unlink()
    resumed = _loopline(["pipeline", "resume", before.run_id, "--json"], project, env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads(resumed.stdout)
    assert summary["status"] == "finished"
    statuses = {name: s["status"] for name, s in summary["steps"].items()}
    assert statuses == {name: "cached" if name in recorded else "finished" for name in before.steps}
    n = len(recorded)
    assert [_runs(wd, i) for i in range(STEPS)] == [1] * n + [2] * (KILL_AT + 1 - n) + [1] * (
        STEPS - KILL_AT - 1
    )
