"""Helpers of the step cache key tests: a key computed in fresh interpreters, and a
project's flow run as a user runs it.

Example:
    >>> # outputs_under_hash_seeds(tmp_path, "print(1)", ("1", "2"))  -> [1, 1]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from loopline.core.context import Context
from loopline.training.pipeline import get_pipeline_run
from tests.cli_run import run_loopline


def outputs_under_hash_seeds(folder: Path, script: str, seeds: tuple[str, ...]) -> list[Any]:
    """What ``script`` prints as JSON in a fresh interpreter per PYTHONHASHSEED of
    ``seeds``, with ``folder`` on PYTHONPATH: a digest must not depend on the seed (set
    and dict iteration orders do)."""
    outputs = []
    for seed in seeds:
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(folder)}
        done = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        outputs.append(json.loads(done.stdout))
    return outputs


def forget_bytecode(proj: Path) -> None:
    """Drop ``proj``'s compiled modules: a rewrite within the same second and of the same
    size would otherwise be imported from the old bytecode."""
    shutil.rmtree(proj / "__pycache__", ignore_errors=True)


def run_flow(ctx: Context, proj: Path, wd: Path) -> tuple[str, Any, str | None]:
    """Run ``flow:pipe`` of ``proj`` in a new process; the step ``decide``'s status, its
    stored output and its cache key."""
    done = run_loopline(
        ctx, "pipeline", "run", "flow:pipe", "-p", f"workdir={wd}", "--json", cwd=proj
    )
    assert done.returncode == 0, done.stderr
    summary = orjson.loads(done.stdout)
    result = get_pipeline_run(summary["run_id"])
    step = result.steps["decide"]
    return summary["steps"]["decide"]["status"], result.output("decide"), step.cache_key


def executions(wd: Path) -> int:
    """How many times the step ``decide`` ran (it appends a line to ``decide.count``)."""
    return len((wd / "decide.count").read_text().splitlines())
