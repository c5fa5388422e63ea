"""Scoring the labelled rows of live performance: which class each label and prediction
names, and accuracy, precision, recall and AUC (a classifier) or RMSE and MAE (a
regressor) over them.

The metrics are scikit-learn's (``accuracy_score``, ``precision_score`` and
``recall_score`` with ``zero_division=nan``, ``roc_auc_score``), counted with NumPy:
:func:`~loopline.monitoring.performance.performance` scores every window of every
version, and scikit-learn's checks of its input took 16 ms of each window's 17 (a page of
20 windows of 1,000 requests and two versions: 0.65 s of scoring). AUC is the Mann-Whitney
U over both classes' counts, which ``roc_auc_score`` integrates (equal up to float
rounding).

Example:
    >>> label_metrics(pd.Series([1, 0, 1]), pd.Series([1, 1, 1]), None, "classification")
    {'accuracy': 0.6666666666666666, 'precision': 0.6666666666666666, 'recall': 1.0, 'auc': 0.5}
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any, Literal

import numpy as np
import pandas as pd

from loopline.monitoring.classes import BINARY, THRESHOLD, class_name, positive_class
from loopline.monitoring.wire import finite_number

Task = Literal["classification", "regression"]


def _numbers(values: pd.Series) -> np.ndarray | None:
    """The values as floats, or None when any non-null one is not a number (or a bool)."""
    kept = values.dropna()
    if kept.dtype == bool or (kept.dtype == object and all(isinstance(v, bool) for v in kept)):
        kept = kept.astype(int)
    numbers = pd.to_numeric(kept, errors="coerce")
    if numbers.isna().any():
        return None
    return numbers.to_numpy(dtype=float)


def infer_task(y: pd.Series, predictions: pd.Series | None = None) -> Task:
    """``classification`` when the labels are a few whole numbers (or not numbers) and the
    predictions, if numbers, are whole too, or, for labels of 0 and 1, probabilities from 0
    to 1 (a binary classifier's, :mod:`.classes`); else ``regression``: a model of counts
    or ratings predicts 4.7 for a label of 5, which is an error to measure, not a wrong class.

    Example:
        >>> infer_task(pd.Series([0.0, 1.0, 1.0]))
        'classification'
        >>> infer_task(pd.Series([4, 5, 5]), pd.Series([4.7, 5.1, 4.9]))
        'regression'
        >>> infer_task(pd.Series([0, 1, 1]), pd.Series([0.2, 0.9, 0.6]))
        'classification'
    """
    values = pd.to_numeric(y, errors="coerce").dropna()
    if values.empty:
        return "classification"
    whole = bool(np.all(np.equal(np.mod(values, 1), 0)))
    if not (whole and values.nunique() <= 20):
        return "regression"
    predicted = None if predictions is None else _numbers(predictions)
    if predicted is not None and not bool(np.all(np.equal(np.mod(predicted, 1), 0))):
        # Labels of 0 and 1 met by numbers from 0 to 1: a binary classifier's probability
        # of class 1 (:mod:`.classes`), not a regressor's estimate.
        if _probabilities(predicted) and set(np.unique(values)) <= {0.0, 1.0}:
            return "classification"
        return "regression"
    return "classification"


def _probabilities(values: np.ndarray) -> bool:
    """Whether every value lies from 0 to 1, and some strictly between (not all classes)."""
    return bool(
        len(values)
        and np.all((values >= 0.0) & (values <= 1.0))
        and np.any((values > 0.0) & (values < 1.0))
    )


def hard_classes(
    y_true: pd.Series, y_pred: pd.Series
) -> tuple[pd.Series, pd.Series, np.ndarray | None]:
    """The class each label and each prediction names (:func:`.classes.class_name`), and
    the predictions as probabilities when they are a binary classifier's (labels of 0 and
    1 met by numbers from 0 to 1: class 1 from :data:`.classes.THRESHOLD` up), else None.

    Example:
        >>> t, p, probs = hard_classes(pd.Series([1, 0]), pd.Series([0.8, 0.6]))
        >>> p.tolist(), probs.tolist()
        (['1', '1'], [0.8, 0.6])
    """
    yt_s, yp_s, probs = hard_names(class_names(y_true), class_names(y_pred), y_pred)
    index = y_pred.index
    return pd.Series(yt_s, index=y_true.index), pd.Series(yp_s, index=index), probs


def class_names(values: pd.Series) -> np.ndarray:
    """:func:`.classes.class_name` of each value (an array of text), worked out once per
    distinct value: a window of 1,000 rows holds a few classes, not 1,000.

    Example:
        >>> class_names(pd.Series([1, 1.0, True, "cat", 0.5], dtype=object)).tolist()
        ['1', '1', '1', 'cat', '0.5']
    """
    if values.dtype != object:
        # numbers, bools or text of one type: each distinct value (NaN or NA once) named
        codes, distinct = pd.factorize(values, use_na_sentinel=False)
        names = np.array([class_name(v) for v in distinct.to_numpy(dtype=object)] or [""])
        return names.astype(object)[codes]
    # Values equal as keys (1, 1.0, True) name the same class; NaN, never equal to
    # itself, is named each time, as it comes.
    named: dict[Any, str] = {}
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values.to_numpy(dtype=object)):
        try:
            name = named.get(value)
            if name is None:
                name = named[value] = class_name(value)
        except TypeError:  # an unhashable value (a list): named alone
            name = class_name(value)
        out[i] = name
    return out


def hard_names(
    yt_s: np.ndarray, yp_s: np.ndarray, y_pred: pd.Series | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """:func:`hard_classes` from the class names of labels and predictions already
    worked out (:func:`class_names`), and the predictions as they are, or as floats
    (NaN: none) when their column holds numbers (:func:`numbers_of`).

    Example:
        >>> _, p, probs = hard_names(np.array(["1"]), np.array(["0.8"]), pd.Series([0.8]))
        >>> p.tolist(), probs.tolist()
        (['1'], [0.8])
    """
    if not set(yt_s) <= BINARY:
        return yt_s, yp_s, None
    probs = y_pred if isinstance(y_pred, np.ndarray) else _numbers(y_pred)
    if (
        probs is None
        or len(probs) != len(y_pred)  # _numbers left out a null
        or np.isnan(probs).any()
        or not _probabilities(probs)
    ):
        return yt_s, yp_s, None
    return yt_s, np.where(probs >= THRESHOLD, "1", "0").astype(object), probs


def numbers_of(values: pd.Series) -> np.ndarray | None:
    """The values as floats (NaN: null) when their column holds numbers or bools, as
    :func:`hard_names` takes them; None for a column of other values.

    Example:
        >>> numbers_of(pd.Series([1, 0])).tolist(), numbers_of(pd.Series(["a"], dtype=object))
        ([1.0, 0.0], None)
    """
    if pd.api.types.is_bool_dtype(values.dtype) or pd.api.types.is_numeric_dtype(values.dtype):
        return values.to_numpy(dtype=float, na_value=np.nan)
    return None


def label_metrics(
    y_true: pd.Series,
    y_pred: pd.Series,
    score: pd.Series | None,
    task: Task,
    positive: Any = None,
    classes: Collection[str] | None = None,
) -> dict[str, float]:
    """Accuracy/precision/recall/AUC or RMSE/MAE of labelled rows.

    ``classes``: every class the model was seen with (as :func:`hard_classes` names them;
    default: those of these rows). Of two (or one), precision, recall and AUC are those of
    the positive class (:func:`.classes.positive_class`), whichever classes these rows
    happen to hold; of more, their macro average. A metric these rows cannot define is
    left out, as AUC is over labels of one class: recall without a label of the positive
    class, precision without a prediction of it (a class's share of a macro average too).

    Example:
        >>> m = label_metrics(pd.Series([1, 0]), pd.Series([1, 1]), None, "classification")
        >>> m["accuracy"]
        0.5
        >>> label_metrics(pd.Series([0, 0]), pd.Series([0, 1]), None, "classification")
        {'accuracy': 0.5, 'precision': 0.0}
    """
    if len(y_true) == 0:
        return {}
    if task == "regression":
        # Every row counts: a label or prediction that is not a number makes the metrics
        # NaN here, never a mean over fewer rows; performance() scores only the rows that
        # are (and counts the others in unscored_rows).
        return error_metrics(finite_values(y_true), finite_values(y_pred))
    yt_s, yp_s, probs = hard_names(class_names(y_true), class_names(y_pred), y_pred)
    scores = None if score is None else score.to_numpy(dtype=float, na_value=np.nan)
    return class_metrics(yt_s, yp_s, probs, scores, positive, classes)


def error_metrics(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """RMSE and MAE of a regressor's rows (floats; NaN where one is not a number).

    Example:
        >>> error_metrics(np.array([1.0, 2.0]), np.array([2.0, 2.0]))["mae"]
        0.5
    """
    err = predicted - truth
    return {
        "rmse": float(math.sqrt(float(np.mean(err**2)))),
        "mae": float(np.mean(np.abs(err))),
    }


def class_metrics(
    yt_s: np.ndarray,
    yp_s: np.ndarray,
    probs: np.ndarray | None,
    score: np.ndarray | None,
    positive: Any = None,
    classes: Collection[str] | None = None,
) -> dict[str, float]:
    """:func:`label_metrics` of a classifier's rows from the classes they name
    (:func:`hard_names`) and the scores the server logged (NaN: none), if any:
    scikit-learn's accuracy, precision, recall
    (``zero_division=nan``) and ROC AUC, counted with NumPy - a window at a time,
    scikit-learn's checks of its input took 16 ms of a window's 17.

    Example:
        >>> class_metrics(np.array(["1", "0"]), np.array(["1", "1"]), None, None)
        {'accuracy': 0.5, 'precision': 0.5, 'recall': 1.0, 'auc': 0.5}
    """
    if len(yt_s) == 0:
        return {}
    seen = set(yt_s) | set(yp_s) if classes is None else set(classes)
    out = {"accuracy": float(np.mean(yt_s == yp_s))}
    if len(seen) > 2:
        # nan: a class these rows never predict (never hold) has no precision (recall),
        # and counts in no average, rather than as 0 - over the classes these rows hold
        # or predict, as scikit-learn's macro average
        labels, codes = np.unique(np.concatenate([yt_s, yp_s]).astype(str), return_inverse=True)
        t, p = codes[: len(yt_s)], codes[len(yt_s) :]
        right = np.bincount(t[t == p], minlength=len(labels))
        found = {
            "precision": _macro(right, np.bincount(p, minlength=len(labels))),
            "recall": _macro(right, np.bincount(t, minlength=len(labels))),
        }
        return out | _defined(found)
    pos = positive_class(seen, positive)
    if pos is None:
        return out
    scored = score is not None and not np.isnan(score).any()
    if probs is not None and not scored:
        # AUC ranks by the probability (of class 0's when that is the positive one)
        # unless the server logged a score of its own.
        score, scored = (probs if pos != "0" else 1.0 - probs), True
    truth, said = yt_s == pos, yp_s == pos
    hits = int(np.count_nonzero(truth & said))
    found = {
        "precision": _ratio(hits, int(np.count_nonzero(said))),
        "recall": _ratio(hits, int(np.count_nonzero(truth))),
    }
    if 0 < np.count_nonzero(truth) < len(truth):
        ranked = score if scored and score is not None else said.astype(float)
        found["auc"] = roc_auc(truth, ranked)
    return out | _defined(found)


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else math.nan


def _macro(hits: np.ndarray, totals: np.ndarray) -> float:
    """The mean over the classes of ``hits / totals``, of those with a total only."""
    defined = totals > 0
    if not defined.any():
        return math.nan
    per_class = np.full(len(totals), np.nan)
    per_class[defined] = hits[defined] / totals[defined]
    return float(np.nanmean(per_class))


def roc_auc(truth: np.ndarray, ranked: np.ndarray) -> float:
    """The area under the ROC curve of ``ranked`` for ``truth`` (both classes present):
    the chance that a positive row ranks above a negative one, ties counting half - the
    Mann-Whitney U over both classes' counts, which is what scikit-learn's
    ``roc_auc_score`` integrates (equal up to float rounding).

    Example:
        >>> roc_auc(np.array([False, True, True]), np.array([0.1, 0.4, 0.4]))
        1.0
        >>> roc_auc(np.array([False, True]), np.array([0.5, 0.5]))
        0.5
    """
    # each value's average rank (1-based): the ranks its run of equal values spans
    _, at, counts = np.unique(ranked, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[at]
    positives = int(np.count_nonzero(truth))
    negatives = len(truth) - positives
    u = float(ranks[truth].sum()) - positives * (positives + 1) / 2
    return u / (positives * negatives)


def _defined(values: dict[str, Any]) -> dict[str, float]:
    """The values that are numbers (sklearn's NaN: undefined over these rows), as floats."""
    return {k: float(v) for k, v in values.items() if not math.isnan(float(v))}


def finite_values(values: pd.Series) -> np.ndarray:
    """The values as floats: NaN where one is not a finite number (text, None, a bool).

    Example:
        >>> finite_values(pd.Series([1.5, "3", None, True, 2], dtype=object)).tolist()
        [1.5, nan, nan, nan, 2.0]
    """
    if pd.api.types.is_bool_dtype(values.dtype):
        return np.full(len(values), np.nan)
    if pd.api.types.is_numeric_dtype(values.dtype):
        out = values.to_numpy(dtype=float, na_value=np.nan)
        return np.where(np.isfinite(out), out, np.nan)
    found = (finite_number(v) for v in values)
    return np.array([np.nan if f is None else f for f in found], dtype=float)
