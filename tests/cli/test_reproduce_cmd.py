"""``loopline reproduce`` in a real subprocess: --json document, exit codes, bad input."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from loopline.core.context import Context
from loopline.data import datasets
from loopline.tracking.api import get_run
from loopline.training import reproduce_record
from tests.cli_run import run_loopline
from tests.training import reproduce_project as rp

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = rp.make_project(tmp_path)
    monkeypatch.chdir(path)
    yield path
    rp.forget_pipes(path)


def _cli(ctx: Context, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    return run_loopline(ctx, *args, env={"PYTHONPATH": path}, cwd=cwd, timeout=300)


def _train(repo: Path, pipeline: str) -> str:
    datasets.register(rp.DATASET, rp.data(seed=1))
    rp.set_c(repo, 0.5)  # uncommitted: the stored diff must be applied
    uri = rp.train_and_register(repo, pipeline)
    datasets.register(rp.DATASET, rp.data(seed=2))
    rp.set_c(repo, 3.0)
    return uri


def test_json_reports_every_metric_and_exits_0_when_reproduced(
    embedded_ctx: Context, repo: Path
) -> None:
    uri = _train(repo, "train")
    done = _cli(embedded_ctx, repo, "reproduce", uri, "--env", "current", "--json")
    assert done.returncode == 0, done.stderr
    out: dict[str, Any] = orjson.loads(done.stdout)
    assert set(out) >= {
        "model",
        "original_run_id",
        "reproduced_run_id",
        "environment",
        "package_mismatches",
        "metrics",
        "match",
    }
    assert out["model"] == "models:/repro/1"
    assert out["environment"] == "current"
    assert out["match"] is True
    assert out["package_mismatches"] == []
    assert out["datasets"] == {rp.DATASET: 1}
    assert set(out["metrics"]) == {"accuracy", "coef0"}
    for m in out["metrics"].values():
        assert set(m) == {"recorded", "reproduced", "abs_diff", "rel_diff", "match"}
        assert m["match"] is True and m["abs_diff"] <= 1e-6 * abs(m["recorded"])
    new = get_run(out["reproduced_run_id"])
    assert new.tags[reproduce_record.REPRODUCTION_OF_TAG] == out["original_run_id"]


def test_a_mismatch_exits_1_and_the_table_says_not_reproduced(
    embedded_ctx: Context, repo: Path
) -> None:
    uri = _train(repo, "noisy")
    done = _cli(embedded_ctx, repo, "reproduce", uri, "--env", "current", "--tolerance", "1e-9")
    assert done.returncode == 1, done.stderr
    assert "NOT reproduced" in done.stdout
    assert re.search(r"coef0 .*│ no ", done.stdout), done.stdout


def test_bad_input_is_a_clear_error_with_its_exit_code(embedded_ctx: Context, repo: Path) -> None:
    done = _cli(embedded_ctx, repo, "reproduce", "models:/ghost/1", "--env", "current")
    assert done.returncode == 4
    assert "error:" in done.stderr and "ghost" in done.stderr
    done = _cli(embedded_ctx, repo, "reproduce", "models:/ghost/1", "--env", "docker")
    assert done.returncode == 2
    assert "env must be 'fresh' or 'current'" in done.stderr
    done = _cli(embedded_ctx, repo, "reproduce", "--help")
    assert done.returncode == 0 and "Example: loopline reproduce" in done.stdout
    assert "--tolerance" in done.stdout and "--abs-tolerance" in done.stdout
