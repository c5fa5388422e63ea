"""Model metrics for the performance gate, and a paired bootstrap of their difference.

Classifiers: accuracy, precision, recall, f1 (binary: of the ``positive`` class, by default
the greater class label; more classes: macro average over the classes the labels and
predictions hold), auc
(one-vs-rest for more than two classes) and logloss (the last two need class
probabilities). Regressors: rmse, mae, r2. All come from :mod:`sklearn.metrics`.

Example:
    >>> import numpy as np
    >>> out = Outputs(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]), None, np.array([0, 1]))
    >>> compute("classification", out)["accuracy"]
    0.75
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from loopline.delivery.resampled import resampled
from loopline.delivery.thresholds import CLASSIFICATION_METRICS, REGRESSION_METRICS, Task

Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class Outputs:
    """What one model produced on the held-out rows, with the true labels.

    ``proba`` holds one column per class in ``classes`` order (None without probabilities;
    ``no_proba`` then says why, when the model does give some).
    """

    y_true: Array
    y_pred: Array
    proba: Array | None
    classes: Array | None
    no_proba: str | None = None
    positive: Any = None  # the positive class of a binary classifier (None: the greater)

    def take(self, idx: Array) -> Outputs:
        """The same outputs for the rows ``idx`` (a bootstrap sample).

        Example:
            >>> import numpy as np
            >>> y = np.array([0, 1, 1])
            >>> Outputs(y, y, None, None).take(np.array([2, 2])).y_true.tolist()
            [1, 1]
        """
        proba = None if self.proba is None else self.proba[idx]
        return Outputs(
            self.y_true[idx], self.y_pred[idx], proba, self.classes, self.no_proba, self.positive
        )

    def positive_class(self, classes: Array | list[Any]) -> Any:
        """The positive class among the two ``classes``: as given, else the greater one.

        Example:
            >>> import numpy as np
            >>> y = ["no", "yes"]
            >>> Outputs(np.array(y), np.array(y), None, None).positive_class(y)
            'yes'
            >>> Outputs(np.array(y), np.array(y), None, None, positive="no").positive_class(y)
            'no'
        """
        if self.positive is None:
            return classes[1]
        if self.positive not in list(classes):
            raise _Missing(
                f"the positive class {self.positive!r} is not one of the classes "
                f"{[c.item() if hasattr(c, 'item') else c for c in classes]}: set 'positive' "
                "in the thresholds to one of them, written as the labels are"
            )
        return self.positive

    def why_no_proba(self) -> str:
        """Why there are no class probabilities to score (auc and logloss need them).

        Example:
            >>> import numpy as np
            >>> Outputs(np.array([0]), np.array([0]), None, None).why_no_proba()
            'the model gives no class probabilities (predict_proba)'
        """
        return self.no_proba or "the model gives no class probabilities (predict_proba)"


def _averaging(out: Outputs) -> dict[str, Any]:
    classes = out.classes if out.classes is not None else np.unique(out.y_true)
    if len(classes) == 2:
        return {"average": "binary", "pos_label": out.positive_class(classes)}
    if out.positive is not None:
        raise _Missing(
            f"'positive' names the class of a binary classifier; there are {len(classes)} "
            "classes here (precision, recall and f1 are their macro average): remove it"
        )
    # The macro average over the classes the labels or predictions hold, as scikit-learn
    # takes it by default: a class the model knows but the held-out rows never name (and
    # the model never predicts there) has no precision or recall to average, and counting
    # it as 0 put a 0.97-accurate model's macro f1 at 0.65.
    return {"average": "macro"}


def _auc(out: Outputs) -> float:
    from sklearn.metrics import roc_auc_score

    if out.proba is None or out.classes is None:
        raise _Missing(out.why_no_proba())
    if len(np.unique(out.y_true)) < 2:
        raise _Missing("the labels hold one class only")
    if out.proba.shape[1] == 2:
        positive = out.positive_class(out.classes)
        column = list(out.classes).index(positive)
        return float(roc_auc_score(out.y_true == positive, out.proba[:, column]))
    return float(roc_auc_score(out.y_true, out.proba, multi_class="ovr", labels=list(out.classes)))


def _logloss(out: Outputs) -> float:
    from sklearn.metrics import log_loss

    if out.proba is None or out.classes is None:
        raise _Missing(out.why_no_proba())
    return float(log_loss(out.y_true, out.proba, labels=list(out.classes)))


def _classification(name: str) -> Callable[[Outputs], float]:
    def metric(out: Outputs) -> float:
        from sklearn import metrics as skm

        if name == "accuracy":
            return float(skm.accuracy_score(out.y_true, out.y_pred))
        fn = {"precision": skm.precision_score, "recall": skm.recall_score, "f1": skm.f1_score}
        return float(fn[name](out.y_true, out.y_pred, zero_division=0, **_averaging(out)))

    return metric


def _regression(name: str) -> Callable[[Outputs], float]:
    def metric(out: Outputs) -> float:
        from sklearn import metrics as skm

        y, p = out.y_true.astype(np.float64), out.y_pred.astype(np.float64)
        if name == "rmse":
            return math.sqrt(float(skm.mean_squared_error(y, p)))
        if name == "mae":
            return float(skm.mean_absolute_error(y, p))
        return float(skm.r2_score(y, p))

    return metric


METRICS: dict[str, Callable[[Outputs], float]] = {
    **{m: _classification(m) for m in ("accuracy", "precision", "recall", "f1")},
    "auc": _auc,
    "logloss": _logloss,
    **{m: _regression(m) for m in REGRESSION_METRICS},
}


class _Missing(Exception):
    """A metric cannot be computed for this model or data (the message says why)."""


def value(name: str, out: Outputs) -> float:
    """One metric; raises ``ValueError`` saying why when it cannot be computed.

    Example:
        >>> import numpy as np
        >>> out = Outputs(np.array([1.0, 2.0]), np.array([1.0, 3.0]), None, None)
        >>> value("mae", out)
        0.5
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = METRICS[name](out)
    except _Missing as exc:
        raise ValueError(str(exc)) from exc
    if not math.isfinite(result):
        raise ValueError(f"{name} is not finite ({result})")
    return result


def compute(task: Task, out: Outputs) -> dict[str, float]:
    """Every metric of ``task`` that can be computed for these outputs.

    Example:
        >>> import numpy as np
        >>> out = Outputs(np.array([1.0, 2.0]), np.array([1.0, 2.0]), None, None)
        >>> compute("regression", out)["rmse"]
        0.0
    """
    names = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
    result: dict[str, float] = {}
    for name in names:
        try:
            result[name] = value(name, out)
        except ValueError:
            continue
    return result


def why_missing(name: str, out: Outputs) -> str:
    """Why ``name`` could not be computed (for the verdict's reasons).

    Example:
        >>> import numpy as np
        >>> why_missing("auc", Outputs(np.array([0, 1]), np.array([0, 1]), None, None))
        'the model gives no class probabilities (predict_proba)'
    """
    try:
        value(name, out)
    except ValueError as exc:
        return str(exc)
    return "not computed"


def _resampled(name: str, out: Outputs, idx: Array) -> Array:
    """``name`` on each resample (row of ``idx``); NaN where it cannot be computed."""
    fast = None
    classes, proba = out.classes, out.proba
    if name not in ("auc", "precision", "recall", "f1"):
        fast = resampled(name, out.y_true, out.y_pred, None, None, idx)
    elif classes is not None and len(classes) == 2 and (name != "auc" or proba is not None):
        # Binary only (else as _averaging and _auc); a positive class the labels lack is
        # the loop's to report.
        with contextlib.suppress(_Missing):
            positive = out.positive_class(classes)
            scores = None if proba is None else proba[:, list(classes).index(positive)]
            fast = resampled(name, out.y_true, out.y_pred, scores, positive, idx)
    if fast is not None:
        return fast
    found = np.full(len(idx), np.nan)
    for i, rows in enumerate(idx):
        try:
            found[i] = value(name, out.take(rows))
        except ValueError:
            continue
    return found


@dataclass(frozen=True)
class Interval:
    """A bootstrap confidence interval of the change (challenger minus champion)."""

    low: float
    high: float
    confidence: float
    samples: int

    def to_dict(self) -> dict[str, float]:
        """Plain data for JSON.

        Example:
            >>> Interval(-0.1, 0.2, 0.95, 100).to_dict()["low"]
            -0.1
        """
        return {
            "low": self.low,
            "high": self.high,
            "confidence": self.confidence,
            "samples": self.samples,
        }


def bootstrap_change(
    name: str,
    challenger: Outputs,
    champion: Outputs,
    *,
    samples: int,
    confidence: float,
    seed: int,
    relative: bool = False,
) -> Interval | None:
    """A paired bootstrap interval of ``metric(challenger) - metric(champion)``.

    The same resampled rows score both models; resamples where the metric is undefined
    (e.g. one class only) are dropped. ``relative`` divides by the champion's value.
    None when fewer than half of the resamples give a value.

    Example:
        >>> import numpy as np
        >>> y = np.array([0.0, 1.0, 2.0, 3.0])
        >>> a, b = Outputs(y, y, None, None), Outputs(y, y + 1, None, None)
        >>> bootstrap_change("mae", a, b, samples=50, confidence=0.9, seed=0).high
        -1.0
    """
    rng = np.random.default_rng(seed)
    n = len(challenger.y_true)
    diffs: list[float] = []
    # Resamples in blocks (an index matrix of ~2M entries at most): the rows drawn are the
    # same as one draw of n per resample, in the same order.
    block = max(1, min(samples, 2_000_000 // max(1, n)))
    done = 0
    while done < samples:
        idx = rng.integers(0, n, size=(min(block, samples - done), n))
        done += len(idx)
        a, b = _resampled(name, challenger, idx), _resampled(name, champion, idx)
        keep = np.isfinite(a) & np.isfinite(b)
        if relative:
            keep &= b != 0
            diffs.extend(((a[keep] - b[keep]) / np.abs(b[keep])).tolist())
        else:
            diffs.extend((a[keep] - b[keep]).tolist())
    if len(diffs) < samples / 2:
        return None
    alpha = (1 - confidence) / 2
    low, high = np.quantile(np.asarray(diffs), [alpha, 1 - alpha])
    return Interval(float(low), float(high), confidence, len(diffs))
