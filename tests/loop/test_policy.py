"""Loop policies: YAML and loopline.toml, checked, with errors that name file and key."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from loopline.cli.main import app
from loopline.errors import ConfigError
from loopline.loop.policy import LoopPolicy, load_policies
from tests.cli_run import run_cli

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
        "[loopline.loop.churn.gate.thresholds.metrics.accuracy]\nlower = 0.6\n"
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
            "flights.yaml: rollout.options.split is only used with strategy ab, not direct",
        ),
        (
            GOOD + "rollout: {strategy: ab, options: {steps: [5, 50]}}\n",
            "flights.yaml: rollout.options.steps is only used with strategy canary, not ab",
        ),
        (
            GOOD + "rollout: {options: {window_reqests: 50}}\n",
            "flights.yaml: rollout.options.window_reqests: unknown policy option",
        ),
        (
            GOOD.replace("{auc: {lower", "{acuracy: {lower"),
            "flights.yaml: gate.thresholds: metrics.acuracy: unknown metric",
        ),
        (
            GOOD.replace("{lower: 0.6}", "{lowr: 0.6}"),
            "flights.yaml: gate.thresholds is not a valid thresholds file: "
            "metrics.auc.lowr: unknown key",
        ),
        (
            GOOD.replace("label: late, ", ""),
            "flights.yaml: gate.thresholds is not a valid thresholds file: label: required",
        ),
        (
            GOOD + "rollout: {strategy: canary, options: {stepz: [25, 100]}}\n",
            "flights.yaml: rollout.options.stepz: unknown policy option",
        ),
        (
            GOOD + "rollout: {options: {steps: [50, 25]}}\n",
            "flights.yaml: rollout.options.steps: steps must increase",
        ),
        (
            GOOD + "rollout: {options: {reason: mine}}\n",
            "flights.yaml: rollout.options.reason: unknown policy option",
        ),
        (
            GOOD + "rollout: {options: {fallback: latest}}\n",
            "flights.yaml: rollout.options.fallback 'latest' is not a version number",
        ),
        (
            GOOD + 'webhook: "not a url"\n',
            "flights.yaml: webhook: 'not a url' is not an http(s) URL",
        ),
        (
            GOOD + "webhook: ftp://hooks.example.com/x\n",
            "flights.yaml: webhook: 'ftp://hooks.example.com/x' is not an http(s) URL",
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
        "gate-on-unknown-metric",
        "gate-bound-typo",
        "gate-without-label",
        "rollout-option-typo",
        "rollout-steps-decrease",
        "rollout-option-deploy-sets",
        "rollout-fallback-not-a-version",
        "webhook-not-a-url",
        "webhook-not-http",
    ],
)
def test_a_bad_policy_file_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "flights.yaml").write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
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
    result = run_cli(
        ["loop", "once", "--root", str(tmp_path)], env=os.environ, cwd=tmp_path, timeout=120
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
        "[loopline.loop.churn.gate.thresholds.metrics.accuracy]\nlower = 0.6\n"
        '[loopline.loop.churn.gate.thresholds.data]\ncontract = "contracts/churn.yaml"\n'
    )
    flights, churn = load_policies(tmp_path)
    contract = flights.gate.thresholds["data"]["contract"]
    assert contract == str(tmp_path / "policies" / "flights.contract.yaml")
    assert churn.gate.thresholds["data"]["contract"] == str(tmp_path / "contracts" / "churn.yaml")


#: The tester's policy: the gate names a metric that does not exist.
CHURN = """
model: churn
data: churn
reference: churn
monitor: {window_requests: 300, min_rows: 200}
retrain: {pipeline: "churn_loop:retrain"}
gate: {dataset: churn-holdout, thresholds: {label: churned, metrics: {acuracy: {lower: 0.6}}}}
rollout: {strategy: canary, options: {steps: [25, 100]}}
"""


@pytest.mark.parametrize("command", ["once", "status"])
def test_a_gate_or_rollout_the_pass_would_refuse_is_refused_before_it_runs(
    tmp_path: Path, command: str
) -> None:
    """The gate's thresholds and the rollout's options were checked only when the pass
    reached them: after retraining (an orphan version, then an hour of cooldown), or after
    the gate blessed a challenger that then never deployed."""
    (tmp_path / "policies").mkdir()
    path = tmp_path / "policies" / "churn.yaml"
    path.write_text(CHURN)
    result = CliRunner().invoke(app, ["loop", command, "--root", str(tmp_path)])
    assert isinstance(result.exception, ConfigError), result.output
    assert f"{path}: gate.thresholds: metrics.acuracy: unknown metric" in str(result.exception)
    path.write_text(CHURN.replace("acuracy", "accuracy").replace("steps:", "stepz:"))
    result = CliRunner().invoke(app, ["loop", command, "--root", str(tmp_path)])
    assert isinstance(result.exception, ConfigError), result.output
    assert f"{path}: rollout.options.stepz: unknown policy option" in str(result.exception)
    assert "steps, split" in str(result.exception)  # the hint lists the options


def test_a_policy_made_in_python_is_checked_as_a_file_is() -> None:
    data = yaml.safe_load(CHURN)
    with pytest.raises(ValidationError, match=r"metrics\.acuracy: unknown metric"):
        LoopPolicy.model_validate(data)
    with pytest.raises(ValidationError, match="is not an http"):
        LoopPolicy.model_validate({**yaml.safe_load(GOOD), "webhook": "hooks.example.com"})


def test_the_deploy_options_a_rollout_takes_are_accepted(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "f.yaml").write_text(
        GOOD + "rollout: {strategy: ab, options: {split: 20, fallback: 1, timeout_ms: 50}}\n"
        "webhook: https://hooks.example.com/loopline\n"
    )
    [policy] = load_policies(tmp_path)
    assert policy.rollout.options == {"split": 20, "fallback": 1, "timeout_ms": 50}
    assert policy.webhook == "https://hooks.example.com/loopline"


@pytest.mark.parametrize(
    ("monitor", "message"),
    [
        (
            "{window_requests: 100, min_rows: 500}",
            "monitor: min_rows (500) is above window_requests (100)",
        ),
        (
            "{window_requests: 100, min_rows: 50, min_labels: 5000}",
            "monitor: min_labels (5000) is above window_requests (100)",
        ),
        (
            "{min_rows: 2000}",  # window_requests is 1000 by default
            "monitor: min_rows (2000) is above window_requests (1000)",
        ),
        (
            "{window_requests: 500, min_labels: 600, floors: {auc: 0.6}}",
            "monitor: min_labels (600) is above window_requests (500)",
        ),
    ],
    ids=["rows", "labels", "rows-over-the-default-window", "labels-for-floors"],
)
def test_a_monitor_that_could_never_fire_is_refused(
    tmp_path: Path, monitor: str, message: str
) -> None:
    """The newest window_requests rows never hold more rows, nor labels: "not enough
    traffic yet" forever."""
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "flights.yaml").write_text(GOOD + f"monitor: {monitor}\n")
    with pytest.raises(ConfigError, match=re.escape(f"flights.yaml: {message}")):
        load_policies(tmp_path)


def test_the_default_minimums_fit_a_small_window(tmp_path: Path) -> None:
    """min_rows (200) and min_labels (100) left out are at most window_requests: a window of
    30 requests held 200 rows never. The policy read back as written loads again."""
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "f.yaml").write_text(
        GOOD + "monitor: {window_requests: 30, floors: {auc: 0.6}}\n"
    )
    [policy] = load_policies(tmp_path)
    assert (policy.monitor.min_rows, policy.monitor.min_labels) == (30, 30)
    (tmp_path / "policies" / "f.yaml").write_text(yaml.safe_dump(policy.model_dump(mode="json")))
    assert load_policies(tmp_path)[0].monitor == policy.monitor
    assert LoopPolicy.model_validate(yaml.safe_load(GOOD)).monitor.min_rows == 200


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            GOOD + 'monitor: {floors: {auc: "0.6"}}\n',
            "monitor.floors.auc: Input should be a valid number, got str '0.6'",
        ),
        (
            GOOD + "monitor: {floors: {auc: true}}\n",
            "monitor.floors.auc: Input should be a valid number, got bool True",
        ),
        (
            GOOD + "monitor: {ceilings: {latency_p99_ms: yes}}\n",
            "monitor.ceilings.latency_p99_ms: Input should be a valid number",
        ),
        (
            GOOD + 'cooldown_seconds: "60"\n',
            "cooldown_seconds: Input should be a valid number, got str '60'",
        ),
        (
            GOOD + 'monitor: {window_requests: "500"}\n',
            "monitor.window_requests: Input should be a valid integer",
        ),
        (GOOD + "monitor: {min_rows: 20.5}\n", "monitor.min_rows: Input should be a valid integer"),
        (
            GOOD + 'monitor: {drift: {share: "0.3"}}\n',
            "monitor.drift.share: Input should be a valid number",
        ),
        (
            GOOD + 'monitor: {drift: {enabled: "no"}}\n',
            "monitor.drift.enabled: Input should be a valid boolean",
        ),
        (
            GOOD + 'alerts: [{metric: auc, threshold: "0.6"}]\n',
            "alerts.0: AlertRule threshold: Input should be a valid number",
        ),
        (
            GOOD + 'rollout: {options: {window_requests: "100"}}\n',
            "rollout.options.window_requests: Input should be a valid integer",
        ),
        (
            GOOD + "rollout: {options: {steps: [25, true]}}\n",
            "rollout.options.steps.1: Input should be a valid number",
        ),
    ],
    ids=[
        "floor-text",
        "floor-bool",
        "ceiling-yes",
        "cooldown-text",
        "window-text",
        "min-rows-fraction",
        "share-text",
        "drift-enabled-text",
        "alert-threshold-text",
        "rollout-window-text",
        "rollout-step-bool",
    ],
)
def test_a_value_is_taken_as_written(tmp_path: Path, text: str, message: str) -> None:
    """Text or a bool where a number goes was read as one ("0.6" as 0.6, true as 1.0)."""
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "flights.yaml").write_text(text)
    with pytest.raises(ConfigError, match=re.escape(f"flights.yaml: {message}")) as err:
        load_policies(tmp_path)
    assert "taken as written" in str(err.value) or "rollout" in message or "alerts" in message


def test_a_toml_value_is_taken_as_written_too(tmp_path: Path) -> None:
    (tmp_path / "loopline.toml").write_text(
        '[loopline.loop.churn]\ndata = "churn"\ncooldown_seconds = "60"\n'
        '[loopline.loop.churn.retrain]\npipeline = "pkg.train:main"\n'
        '[loopline.loop.churn.gate]\ndataset = "churn-holdout"\n'
        '[loopline.loop.churn.gate.thresholds]\nlabel = "churned"\n'
        "[loopline.loop.churn.gate.thresholds.metrics.accuracy]\nlower = 0.6\n"
    )
    with pytest.raises(ConfigError, match=re.escape("[loopline.loop.churn]: cooldown_seconds")):
        load_policies(tmp_path)
