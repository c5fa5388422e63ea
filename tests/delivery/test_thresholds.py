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
