"""``loopline loop once/status``: their exit codes, for cron and schedulers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from typer.testing import CliRunner

from loopline.cli.loop_cmd import FAILED_EXIT
from loopline.cli.main import app
from loopline.core.context import Context
from loopline.errors import NotFound
from tests.cli_run import run_loopline
from tests.loop.test_leader import toy_loop


def broken(data: Any) -> Any:
    """A retraining pipeline that fails (named by the policies below)."""
    raise RuntimeError("the training cluster is gone")


def _toy(root: Path, **policy: Any) -> None:
    """The toy loop of the leader tests (a latency ceiling the model breaks), its policy
    changed by ``policy`` and written under ``root``."""
    doc = {**toy_loop().model_dump(mode="json"), **policy}
    (root / "policies").mkdir()
    (root / "policies" / "toy.yaml").write_text(yaml.safe_dump(doc))


def _once(root: Path) -> Any:
    return CliRunner().invoke(app, ["loop", "once", "--root", str(root), "--json"])


@pytest.mark.parametrize(
    ("policy", "outcome"),
    [
        ({"retrain": {"pipeline": "tests.cli.test_loop_cli:broken"}}, "failed"),
        ({"reference": "no-such-dataset"}, "error"),
    ],
    ids=["retraining-failed", "error"],
)
def test_a_pass_that_failed_exits_non_zero(
    ctx: Context, tmp_path: Path, policy: dict[str, Any], outcome: str
) -> None:
    """It exited 0 whatever happened, so cron or Airflow never noticed."""
    _toy(tmp_path, **policy)
    done = _once(tmp_path)
    assert done.exit_code == FAILED_EXIT == 1, done.output
    [result] = orjson.loads(done.stdout)  # what it did is printed all the same
    assert result["outcome"] == outcome, result


def test_a_blocked_challenger_is_the_gate_working_and_exits_0(ctx: Context, tmp_path: Path) -> None:
    gate = {"label": "label", "metrics": {"accuracy": {"lower": 0.6}, "logloss": {"upper": 1e-9}}}
    _toy(tmp_path, gate={"dataset": "toy-holdout", "thresholds": gate})
    done = _once(tmp_path)
    assert done.exit_code == 0, done.output
    assert [r["outcome"] for r in orjson.loads(done.stdout)] == ["blocked"]
    again = _once(tmp_path)  # in cooldown now: nothing failed
    assert again.exit_code == 0 and orjson.loads(again.stdout)[0]["outcome"] == "cooldown"


@pytest.mark.parametrize("command", ["once", "status"])
@pytest.mark.parametrize("where", ["empty", "missing"])
def test_status_and_once_agree_on_a_root_without_policies(
    tmp_path: Path, command: str, where: str
) -> None:
    """`loop status` printed an empty table and exited 0 where `loop once` exited 4."""
    root = tmp_path / "nonexistent" if where == "missing" else tmp_path
    done = CliRunner().invoke(app, ["loop", command, "--root", str(root)])
    assert isinstance(done.exception, NotFound), done.output
    assert done.exception.exit_code == 4  # `loopline` exits 4 on it
    assert f"no loop policy in {root / 'policies'}" in done.exception.message
    assert ("there is no folder" in str(done.exception.hint)) == (where == "missing")


def test_status_says_what_the_deployment_serves_in_words(ctx: Context, tmp_path: Path) -> None:
    """The deployment column printed the status dict's repr ({'strategy': 'canary', 'phase':
    ..., 'candidate': None, ...}); it now reads as `loopline deploy` says it."""
    _toy(tmp_path)
    assert orjson.loads(_once(tmp_path).stdout)[0]["outcome"] == "deployed"
    done = run_loopline(ctx, "loop", "status", "--root", str(tmp_path))  # a wide terminal
    assert done.returncode == 0, done.stderr
    assert "serves v1; canary of v2 at 50% (canary)" in done.stdout, done.stdout
    assert "{" not in done.stdout and "None" not in done.stdout
