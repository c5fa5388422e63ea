"""Loop policies: YAML and loopline.toml, checked, with errors that name file and key."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from loopline.errors import ConfigError
from loopline.loop.policy import load_policies

GOOD = """
model: flights
data: flights
retrain: {pipeline: "loopline.loop.flights:train"}
gate: {dataset: flights-holdout, thresholds: {label: late, metrics: {auc: {lower: 0.6}}}}
"""


def test_a_yaml_policy_and_a_toml_one_load_with_defaults(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "flights.yaml").write_text(GOOD)
    (tmp_path / "loopline.toml").write_text(
        '[loopline.loop.churn]\ndata = "churn"\ncooldown_seconds = 60\n'
        '[loopline.loop.churn.retrain]\npipeline = "pkg.train:main"\n'
        '[loopline.loop.churn.gate]\ndataset = "churn-holdout"\n'
        '[loopline.loop.churn.gate.thresholds]\nlabel = "churned"\n'
    )
    flights, churn = load_policies(tmp_path)
    assert flights.model == "flights" and flights.monitor.drift.share is None
    assert flights.rollout.strategy == "canary" and flights.pipeline_function().__name__ == "train"
    assert churn.model == "churn" and churn.cooldown_seconds == 60


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD + "cooldown: 5\n", "flights.yaml: cooldown: unknown key"),
        (GOOD.replace("pipeline:", "pipline:"), "retrain.pipline: unknown key"),
        (GOOD + "monitor: {drift: {share: 2}}\n", "monitor.drift.share: Input should be less"),
        (GOOD.replace('"loopline.loop.flights:train"', "train"), "retrain.pipeline: write it as"),
        ("- a list\n", "a loop policy is a mapping"),
        ("model: [unclosed\n", "not valid YAML"),
        (GOOD + "monitor: {floors: {acuracy: 0.9}}\n", "monitor.floors: unknown metric 'acuracy'"),
        (
            GOOD + "monitor: {ceilings: {latency_p99_ms: .nan}}\n",
            "monitor.ceilings: the threshold of 'latency_p99_ms' is nan",
        ),
        (
            GOOD + "alerts: [{metric: acuracy, threshold: 1}]\n",
            "alerts.0: AlertRule metric: unknown metric",
        ),
        (
            GOOD + "rollout: {strategy: direct, options: {split: 20}}\n",
            "rollout: options.split: split is only used with strategy ab, not direct",
        ),
        (
            GOOD + "rollout: {strategy: ab, options: {steps: [5, 50]}}\n",
            "rollout: options.steps: steps is only used with strategy canary, not ab",
        ),
        (
            GOOD + "rollout: {options: {window_reqests: 50}}\n",
            "rollout: options.window_reqests: window_reqests: unknown policy option",
        ),
    ],
    ids=[
        "unknown-key",
        "nested-typo",
        "bad-value",
        "bad-target",
        "not-a-mapping",
        "bad-yaml",
        "floor-on-unknown-metric",
        "nan-ceiling",
        "alert-on-unknown-metric",
        "rollout-option-the-strategy-ignores",
        "canary-option-for-ab",
        "unknown-rollout-option",
    ],
)
def test_a_bad_policy_file_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "flights.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_policies(tmp_path)


def test_a_pipeline_that_cannot_be_imported_is_named(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "f.yaml").write_text(GOOD.replace("flights:train", "flights:nope"))
    [policy] = load_policies(tmp_path)
    with pytest.raises(ConfigError, match=re.escape("cannot import 'loopline.loop.flights:nope'")):
        policy.pipeline_function()


def test_a_model_with_two_policies_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "a.yaml").write_text(GOOD)
    (tmp_path / "policies" / "b.yaml").write_text(GOOD)
    with pytest.raises(ConfigError, match="two loop policies"):
        load_policies(tmp_path)


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('[loopline]\nloop = "x"\n', "loopline.loop: is str 'x', not a table"),
        ("loopline = 5\n", "loopline: is int 5, not a table"),
        ("loop = [1, 2]\n", "loop: is list [1, 2], not a table"),
    ],
    ids=["loop-is-text", "loopline-is-number", "top-level-loop-is-list"],
)
def test_a_toml_whose_loop_is_not_a_table_names_file_and_key(
    tmp_path: Path, toml: str, key: str
) -> None:
    (tmp_path / "loopline.toml").write_text(toml)
    with pytest.raises(ConfigError, match=re.escape(f"loopline.toml: {key}")):
        load_policies(tmp_path)


def test_loop_once_on_such_a_toml_exits_2_without_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "loopline.toml").write_text('[loopline]\nloop = "x"\n')
    result = subprocess.run(
        [sys.executable, "-m", "loopline.cli.main", "loop", "once", "--root", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "loopline.toml: loopline.loop" in result.stderr and "Traceback" not in result.stderr


def test_a_gate_contract_is_relative_to_the_policy_file(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "flights.yaml").write_text(
        GOOD.replace("{label: late,", "{label: late, data: {contract: flights.contract.yaml},")
    )
    (tmp_path / "loopline.toml").write_text(
        '[loopline.loop.churn]\ndata = "churn"\n'
        '[loopline.loop.churn.retrain]\npipeline = "pkg.train:main"\n'
        '[loopline.loop.churn.gate]\ndataset = "churn-holdout"\n'
        '[loopline.loop.churn.gate.thresholds]\nlabel = "churned"\n'
        '[loopline.loop.churn.gate.thresholds.data]\ncontract = "contracts/churn.yaml"\n'
    )
    flights, churn = load_policies(tmp_path)
    contract = flights.gate.thresholds["data"]["contract"]
    assert contract == str(tmp_path / "policies" / "flights.contract.yaml")
    assert churn.gate.thresholds["data"]["contract"] == str(tmp_path / "contracts" / "churn.yaml")
