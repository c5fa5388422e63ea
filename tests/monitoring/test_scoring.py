"""Scoring labelled rows with NumPy gives scikit-learn's metrics (the reference)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, precision_score, recall_score, roc_auc_score

from loopline.monitoring.scoring import class_metrics, class_names, label_metrics, roc_auc


def _sklearn(truth: np.ndarray, pred: np.ndarray, score: np.ndarray | None, pos: str | None):
    """The metrics as label_metrics computed them with scikit-learn, defined ones only."""
    out = {"accuracy": accuracy_score(truth, pred)}
    if pos is None:
        found = {
            "precision": precision_score(truth, pred, average="macro", zero_division=np.nan),
            "recall": recall_score(truth, pred, average="macro", zero_division=np.nan),
        }
    else:
        found = {
            "precision": precision_score(truth, pred, pos_label=pos, zero_division=np.nan),
            "recall": recall_score(truth, pred, pos_label=pos, zero_division=np.nan),
        }
        if len(set(truth == pos)) == 2:
            ranked = (pred == pos).astype(int) if score is None else score
            found["auc"] = roc_auc_score(truth == pos, ranked)
    return out | {k: float(v) for k, v in found.items() if not math.isnan(float(v))}


@pytest.mark.parametrize("seed", range(12), ids=lambda s: f"seed{s}")
def test_binary_metrics_are_sklearns(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    truth = rng.choice(["0", "1"], n, p=[0.7, 0.3]).astype(object)
    pred = np.where(rng.random(n) < 0.7, truth, rng.choice(["0", "1"], n)).astype(object)
    score = np.round(rng.random(n), 1)  # rounded: ties, which AUC counts half
    for s in (None, score):
        got = class_metrics(truth, pred, None, None if s is None else pd.Series(s), None, None)
        want = _sklearn(truth, pred, s, "1")
        assert got.keys() == want.keys()
        for key in ("accuracy", "precision", "recall"):
            assert got[key] == want[key]  # the same counts, the same division: bit for bit
        if "auc" in want:
            assert got["auc"] == pytest.approx(want["auc"], rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("seed", range(12), ids=lambda s: f"seed{s}")
def test_macro_metrics_are_sklearns_over_the_classes_the_rows_hold(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(1, 40))
    classes = ["bird", "cat", "dog", "fish"]
    truth = rng.choice(classes[:3], n).astype(object)  # fish is only ever predicted
    pred = rng.choice(classes, n).astype(object)
    got = class_metrics(truth, pred, None, None, None, set(classes))
    assert got == _sklearn(truth, pred, None, None)


def test_auc_is_the_chance_a_positive_ranks_above_a_negative() -> None:
    truth = np.array([True, False, True, False, True])
    ranked = np.array([0.9, 0.9, 0.4, 0.1, 0.4])
    assert roc_auc(truth, ranked) == pytest.approx(roc_auc_score(truth, ranked))
    # the pairs (positive, negative): 0.9-0.9 ties (a half), 0.9-0.1, 0.4-0.9 (none),
    # 0.4-0.1, and the second 0.4 alike
    assert roc_auc(truth, ranked) == pytest.approx((0.5 + 1 + 0 + 1 + 0 + 1) / 6)


def test_class_names_are_worked_out_once_per_value_and_alike_for_equal_values() -> None:
    values = pd.Series([1, 1.0, True, np.float64(2.0), "2.0", 0.25, None, np.nan, [1]])
    assert class_names(values).tolist() == ["1", "1", "1", "2", "2", "0.25", "None", "nan", "[1]"]


def test_label_metrics_of_probabilities_rank_by_them() -> None:
    truth = pd.Series([0, 1, 1, 0, 1])
    proba = pd.Series([0.2, 0.8, 0.4, 0.6, 0.9])
    m = label_metrics(truth, proba, None, "classification")
    hard = (proba >= 0.5).astype(int)
    assert m["accuracy"] == accuracy_score(truth, hard)
    assert m["auc"] == pytest.approx(roc_auc_score(truth, proba))
