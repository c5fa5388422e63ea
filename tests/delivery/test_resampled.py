"""The bootstrap's vectorised metrics equal scikit-learn's, resample by resample."""

from __future__ import annotations

import math

import numpy as np
import pytest

from loopline.delivery import metrics as gm
from loopline.delivery.resampled import resampled


def _classifier(n: int, seed: int, labels: tuple[str, str] | None = None) -> gm.Outputs:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    proba = np.round(rng.random(n), 1)  # coarse: many tied scores
    pred = (proba >= 0.5).astype(int)
    classes = np.array([0, 1])
    if labels is not None:
        classes = np.array(labels)
        y, pred = classes[y], classes[pred]
    return gm.Outputs(y, pred, np.c_[1 - proba, proba], classes)


def _regressor(n: int, seed: int) -> gm.Outputs:
    rng = np.random.default_rng(seed)
    y = np.round(rng.normal(size=n), 1)
    return gm.Outputs(y, y + rng.normal(size=n) * 0.4, None, None)


def _one_by_one(name: str, out: gm.Outputs, idx: np.ndarray) -> list[float]:
    found = []
    for rows in idx:
        try:
            found.append(gm.value(name, out.take(rows)))
        except ValueError:
            found.append(math.nan)
    return found


@pytest.mark.parametrize("n", [1, 3, 8, 200])
@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("accuracy", "classifier"),
        ("precision", "classifier"),
        ("recall", "classifier"),
        ("f1", "classifier"),
        ("auc", "classifier"),
        ("mae", "regressor"),
        ("rmse", "regressor"),
        ("r2", "regressor"),
    ],
)
def test_each_resample_scores_as_scikit_learn_does(name: str, kind: str, n: int) -> None:
    out = _classifier(n, seed=n) if kind == "classifier" else _regressor(n, seed=n)
    idx = np.random.default_rng(7).integers(0, n, size=(60, n))
    positive = 1 if kind == "classifier" else None
    scores = out.proba[:, 1] if out.proba is not None else None
    fast = resampled(name, out.y_true, out.y_pred, scores, positive, idx)
    assert fast is not None
    expected = _one_by_one(name, out, idx)
    np.testing.assert_allclose(fast, expected, rtol=1e-12, atol=1e-12, equal_nan=True)
    if n == 200:
        assert not np.isnan(fast).any()
    if name == "auc" and n == 1:
        assert np.isnan(fast).all()  # one class in every resample: undefined, dropped


@pytest.mark.parametrize("positive", [None, "churned"])
@pytest.mark.parametrize("name", ["accuracy", "precision", "recall", "f1", "auc"])
def test_the_bootstrap_interval_is_the_one_of_scoring_each_resample(
    name: str, positive: str | None
) -> None:
    churn = ("churned", "stayed")
    a = _classifier(40, seed=1, labels=churn)
    b = _classifier(40, seed=2, labels=churn)
    a = gm.Outputs(a.y_true, a.y_pred, a.proba, a.classes, positive=positive)
    b = gm.Outputs(a.y_true, b.y_pred, b.proba, b.classes, positive=positive)
    got = gm.bootstrap_change(name, a, b, samples=60, confidence=0.9, seed=3)
    assert got is not None
    rng = np.random.default_rng(3)
    diffs = []
    for _ in range(60):
        rows = rng.integers(0, 40, size=40)
        try:
            diffs.append(gm.value(name, a.take(rows)) - gm.value(name, b.take(rows)))
        except ValueError:
            continue
    low, high = np.quantile(diffs, [0.05, 0.95])
    assert got.samples == len(diffs)
    assert got.low == pytest.approx(low, abs=1e-12) and got.high == pytest.approx(high, abs=1e-12)


def test_metrics_that_do_not_vectorise_say_so() -> None:
    out = _classifier(10, seed=0)
    idx = np.zeros((2, 10), dtype=int)
    assert resampled("logloss", out.y_true, out.y_pred, None, 1, idx) is None
    assert resampled("auc", out.y_true, out.y_pred, None, 1, idx) is None  # no scores
    words = np.array(["a", "b"] * 5)
    assert resampled("mae", words, words, None, None, idx) is None
