"""The thresholds file: every bound kind parses, and a mistake names its key."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from loopline.delivery.thresholds import load_thresholds, parse_thresholds
from loopline.errors import InvalidInput

GOOD = """
label: churned
data: {validate: true, serving_sample: live@2}
metrics:
  accuracy: {lower: 0.8, upper: 0.99}
  auc: {change: {absolute: -0.01}}
  logloss: {upper: 0.6, change: {relative: 0.05}}
  f1: {change: {direction: lower, absolute: 0.1}}
bootstrap: {samples: 500, seed: 7}
"""


def test_a_full_file_parses_with_directions(tmp_path: Path) -> None:
    path = tmp_path / "gate.yaml"
    path.write_text(GOOD)
    t = load_thresholds(path)
    assert t.task_for() == "classification" and t.data.serving_sample == "live@2"
    assert t.metrics["auc"].change is not None and t.metrics["auc"].change.absolute == -0.01
    assert [t.direction(m) for m in ("auc", "logloss", "f1")] == ["higher", "lower", "lower"]
    assert t.bootstrap is not None and (t.bootstrap.samples, t.bootstrap.seed) == (500, 7)


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"label": "y", "metrics": {"auc": {"lowr": 0.5}}}, "metrics.auc.lowr", "unknown key"),
        ({"label": "y", "metrics": {"acc": {"lower": 0.5}}}, "metrics.acc", "unknown metric"),
        ({"metrics": {"auc": {"lower": 0.5}}}, "label", "required key is missing"),
        ({"label": "y", "metrics": {"auc": {}}}, "metrics.auc", "give 'lower'"),
        (
            {"label": "y", "metrics": {"auc": {"change": {"direction": "up", "absolute": 0}}}},
            "metrics.auc.change.direction",
            "'higher' or 'lower'",
        ),
        (
            {"label": "y", "metrics": {"auc": {"change": {}}}},
            "metrics.auc.change",
            "'absolute' or 'relative'",
        ),
        (
            {"label": "y", "metrics": {"auc": {"lower": 0.9, "upper": 0.1}}},
            "metrics.auc",
            "above upper",
        ),
        (
            {"label": "y", "task": "regression", "metrics": {"auc": {"lower": 0.5}}},
            "metrics.auc",
            "does not apply",
        ),
        ({"label": "y", "metrics": {}}, "metrics", "at least 1"),
        (
            {"label": "y", "metrics": {"r2": {"lower": 0}}, "bootstrap": {"samples": 1}},
            "bootstrap.samples",
            "greater than or equal to 10",
        ),
        ({"label": "y", "metrics": {"r2": {"lower": 0}}, "extra": 1}, "extra", "unknown key"),
        ({"label": "y", "metrics": {"auc": {"lower": math.nan}}}, "metrics.auc.lower", "finite"),
        (
            {"label": "y", "metrics": {"auc": {"change": {"absolute": math.inf}}}},
            "metrics.auc.change.absolute",
            "finite",
        ),
        (
            {"label": "y", "metrics": {"auc": {"lower": 0}}, "data": {"serving_sample": "live"}},
            "data.serving_sample",
            "'live' names no version: use NAME@VERSION",
        ),
    ],
    ids=[
        "bad-bound-key",
        "bad-metric",
        "no-label",
        "no-bound",
        "bad-direction",
        "empty-change",
        "lower-above-upper",
        "wrong-task",
        "no-metrics",
        "bootstrap",
        "top-level",
        "nan-bound",
        "inf-change",
        "serving-sample-without-version",
    ],
)
def test_mistakes_name_the_key(data: dict[str, object], field: str, words: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        parse_thresholds(data)
    assert exc.value.field == field, str(exc.value)
    assert words in str(exc.value)


def test_file_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no thresholds file"):
        load_thresholds(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("label: [unclosed\n")
    with pytest.raises(InvalidInput, match="not valid YAML"):
        load_thresholds(bad)
    bad.write_text("- a list\n")
    with pytest.raises(InvalidInput, match="must be a mapping"):
        load_thresholds(bad)


def test_a_folder_or_a_binary_file_is_named_as_the_thresholds_option(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="is a folder, not a thresholds file") as exc:
        load_thresholds(tmp_path)
    assert exc.value.field == "thresholds" and "--thresholds" in str(exc.value)
    binary = tmp_path / "model.pkl"
    binary.write_bytes(b"\x80\x04\x95\xff\xfe")
    with pytest.raises(InvalidInput, match="not a text file") as exc:
        load_thresholds(binary)
    assert exc.value.field == "thresholds"


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"lower": True}, "metrics.accuracy.lower", "must be a number, got bool True"),
        ({"upper": "0.9"}, "metrics.accuracy.upper", "must be a number, got str '0.9'"),
        ({"change": {"absolute": "-0.01"}}, "metrics.accuracy.change.absolute", "got str"),
    ],
    ids=["bool-bound", "text-bound", "text-change"],
)
def test_a_bound_is_a_number_as_written(data: dict[str, object], field: str, words: str) -> None:
    # Lax parsing read 'lower: yes' as 1.0 (every model blocked) and "0.9" as 0.9.
    with pytest.raises(InvalidInput) as exc:
        parse_thresholds({"label": "y", "metrics": {"accuracy": data}})
    assert exc.value.field == field, str(exc.value)
    assert words in str(exc.value)


@pytest.mark.parametrize(
    ("extra", "field", "words"),
    [
        ({"data": {"validate": "no"}}, "data.validate", "must be true or false, got str 'no'"),
        ({"data": {"validate": 0}}, "data.validate", "must be true or false"),
        ({"bootstrap": {"seed": -1}}, "bootstrap.seed", "greater than or equal to 0"),
        ({"bootstrap": {"seed": 2**64}}, "bootstrap.seed", "less than or equal to"),
        ({"bootstrap": {"seed": True}}, "bootstrap.seed", "whole number, got bool"),
        ({"bootstrap": {"samples": 100.0}}, "bootstrap.samples", "whole number, got float"),
        ({"bootstrap": {"confidence": "0.9"}}, "bootstrap.confidence", "must be a number"),
    ],
    ids=["text-flag", "int-flag", "negative-seed", "huge-seed", "bool-seed", "float", "text"],
)
def test_options_refuse_what_they_would_have_coerced(
    extra: dict[str, object], field: str, words: str
) -> None:
    # validate: "no" turned the data gate off; seed -1 raised NumPy's ValueError in the
    # middle of a gate and a seed past 64 bits failed storing the verdict after it.
    with pytest.raises(InvalidInput) as exc:
        parse_thresholds({"label": "y", "metrics": {"accuracy": {"lower": 0.5}}, **extra})
    assert exc.value.field == field, str(exc.value)
    assert words in str(exc.value)


def test_numbers_of_any_numeric_type_still_parse() -> None:
    import numpy as np

    t = parse_thresholds(
        {
            "label": "y",
            "data": {"validate": False},
            "metrics": {"accuracy": {"lower": 1, "upper": np.float32(1.0)}},
            "bootstrap": {"samples": np.int64(200), "seed": 2**64 - 1, "confidence": 0.9},
        }
    )
    assert t.metrics["accuracy"].lower == 1.0 and t.data.validate_ is False
    assert t.bootstrap is not None and (t.bootstrap.samples, t.bootstrap.seed) == (200, 2**64 - 1)


def test_metrics_of_both_tasks_are_refused() -> None:
    # Without 'task' the model was scored as a classifier and rmse read 'missing: not
    # computed', blocking every model.
    with pytest.raises(InvalidInput) as exc:
        parse_thresholds(
            {"label": "y", "metrics": {"accuracy": {"lower": 0.5}, "rmse": {"upper": 1}}}
        )
    assert exc.value.field == "metrics"
    assert "classification metrics (accuracy) and regression metrics (rmse)" in str(exc.value)


def test_a_key_written_twice_is_refused(tmp_path: Path) -> None:
    # PyYAML kept the last one silently: the second accuracy bound replaced the first.
    path = tmp_path / "gate.yaml"
    path.write_text("label: y\nmetrics:\n  accuracy: {lower: 0.9}\n  accuracy: {lower: 0.1}\n")
    with pytest.raises(InvalidInput, match="found the key 'accuracy' twice") as exc:
        load_thresholds(path)
    assert exc.value.field == "thresholds"
    path.write_text("label: y\nlabel: z\nmetrics: {f1: {lower: 0.5}}\n")
    with pytest.raises(InvalidInput, match="found the key 'label' twice"):
        load_thresholds(path)


def test_merge_keys_may_be_overridden(tmp_path: Path) -> None:
    path = tmp_path / "gate.yaml"
    path.write_text(
        "label: y\nmetrics:\n  accuracy: &b {lower: 0.5, upper: 0.99}\n  f1: {<<: *b, lower: 0.6}\n"
    )
    t = load_thresholds(path)
    assert (t.metrics["f1"].lower, t.metrics["f1"].upper) == (0.6, 0.99)


def test_a_contract_path_is_relative_to_the_thresholds_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It was read relative to the working directory: `loopline gate ... -t gates/gate.yaml`
    # run from the project's root did not find the contract beside gate.yaml.
    gates = tmp_path / "gates"
    gates.mkdir()
    text = "label: y\ndata: {contract: churn.contract.yaml}\nmetrics: {auc: {lower: 0.5}}\n"
    (gates / "gate.yaml").write_text(text)
    (gates / "abs.yaml").write_text(text.replace("churn.contract.yaml", "/etc/c.yaml"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_thresholds("../gates/gate.yaml").data.contract == str(gates / "churn.contract.yaml")
    assert load_thresholds(gates / "abs.yaml").data.contract == "/etc/c.yaml"
    # Given as a mapping there is no file to be relative to: the working directory.
    data = {"label": "y", "data": {"contract": "c.yaml"}, "metrics": {"auc": {"lower": 0.5}}}
    spec = parse_thresholds(data)
    assert spec.data.contract == "c.yaml"
