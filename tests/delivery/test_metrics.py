"""The gate's metrics against scikit-learn's on the same predictions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from loopline.delivery import metrics as gm


def _outputs(y: list[str], pred: list[str], classes: list[str]) -> gm.Outputs:
    return gm.Outputs(np.array(y), np.array(pred), None, np.array(classes))


def test_the_macro_average_takes_the_classes_the_rows_hold_as_scikit_learn_does() -> None:
    # A three-class model on held-out rows that never name 'zeta' (nor does the model
    # predict it there): 'zeta' has no precision or recall, and counting it as 0 put
    # this 29/30-accurate model's macro f1 at 0.65.
    y = ["alpha"] * 15 + ["mid"] * 15
    pred = ["alpha"] * 15 + ["mid"] * 14 + ["alpha"]
    got = gm.compute("classification", _outputs(y, pred, ["alpha", "mid", "zeta"]))
    for name, fn in (
        ("precision", skm.precision_score),
        ("recall", skm.recall_score),
        ("f1", skm.f1_score),
    ):
        assert got[name] == pytest.approx(fn(y, pred, average="macro")), name
    assert got["f1"] > 0.95


def test_binary_metrics_are_of_the_greater_class_with_text_labels() -> None:
    y = ["yes", "no", "yes", "yes", "no", "no"]
    pred = ["yes", "yes", "no", "yes", "no", "no"]
    got = gm.compute("classification", _outputs(y, pred, ["no", "yes"]))
    assert got["precision"] == pytest.approx(skm.precision_score(y, pred, pos_label="yes"))
    assert got["recall"] == pytest.approx(skm.recall_score(y, pred, pos_label="yes"))
    assert got["f1"] == pytest.approx(skm.f1_score(y, pred, pos_label="yes"))
