"""A metric over many bootstrap resamples at once, for the metrics that vectorise.

The performance gate's bootstrap (:func:`loopline.delivery.metrics.bootstrap_change`) scores
both models on each of ``samples`` resamples of the held-out rows: 1,000 by default, so
2,000 calls of a scikit-learn metric per metric gated, each paying scikit-learn's input
checks (a gate on AUC took seconds where the models' predictions took milliseconds). Here
each resample is a row of an index matrix, and accuracy, rmse, mae, r2 and a binary
classifier's AUC are computed for all rows with a few NumPy operations. They equal
scikit-learn's definitions (AUC is the Mann-Whitney statistic, ties counted half, which is
what ``roc_auc_score``'s trapezoids add up to); a resample where a metric is undefined
(one class only, constant labels for r2) gives NaN, as the loop drops such a resample.
Any other metric, or outputs these do not cover, gives None: the caller falls back to
scoring each resample with :func:`loopline.delivery.metrics.value`.

Example:
    >>> import numpy as np
    >>> idx = np.array([[0, 1, 2], [2, 2, 2]])
    >>> resampled("mae", np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0]), None, None, idx)
    array([0.66666667, 2.        ])
"""

from __future__ import annotations

from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]


def resampled(
    name: str,
    y_true: Array,
    y_pred: Array,
    scores: Array | None,
    positive: Any,
    idx: Array,
) -> Array | None:
    """``name`` on each resample (a row of ``idx``), or None when it does not vectorise.

    ``scores`` are a binary classifier's probabilities of the ``positive`` class (AUC only).

    Example:
        >>> import numpy as np
        >>> y = np.array([0, 1, 1, 0])
        >>> resampled("accuracy", y, np.array([0, 1, 0, 0]), None, None, np.array([[0, 1, 2, 3]]))
        array([0.75])
    """
    if name == "accuracy":
        right = np.asarray(y_true == y_pred)
        if right.shape != y_true.shape:  # labels and predictions NumPy cannot compare
            return None
        return np.asarray(right[idx].mean(axis=1), dtype=np.float64)
    if name in ("rmse", "mae", "r2"):
        try:
            y = y_true.astype(np.float64)
            p = y_pred.astype(np.float64)
        except (TypeError, ValueError):
            return None
        if name == "mae":
            return np.asarray(np.abs(y - p)[idx].mean(axis=1))
        if name == "rmse":
            return np.asarray(np.sqrt(((y - p) ** 2)[idx].mean(axis=1)))
        return _r2(y, p, idx)
    if name == "auc" and scores is not None:
        return _binary_auc(y_true == positive, scores, idx)
    if name in ("precision", "recall", "f1") and positive is not None:
        return _binary_counts(name, y_true == positive, y_pred == positive, idx)
    return None


def _r2(y: Array, p: Array, idx: Array) -> Array:
    if idx.shape[1] < 2:  # scikit-learn: not defined for fewer than two rows
        return np.full(idx.shape[0], np.nan)
    ys = y[idx]
    sse = ((ys - p[idx]) ** 2).sum(axis=1)
    sst = ((ys - ys.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = 1.0 - sse / sst
    # scikit-learn's r2_score for constant labels: 1.0 for a perfect fit, else 0.0.
    return np.asarray(np.where(sst == 0, np.where(sse == 0, 1.0, 0.0), r2))


def _binary_auc(is_positive: Array, scores: Array, idx: Array) -> Array:
    """The AUC of each resample from how often it draws each row (NaN for one class)."""
    n = len(scores)
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    # Rows with equal scores form one group: a positive ties with the negatives in its
    # group (half a point each) and beats every negative in the groups below.
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    rank = np.empty(n, dtype=np.intp)
    rank[order] = np.arange(n)
    pos_sorted = is_positive[order]
    rows = idx.shape[0]
    # How often each resample draws each row, in score order.
    flat = (np.arange(rows)[:, None] * n + rank[idx]).ravel()
    counts = np.bincount(flat, minlength=rows * n).reshape(rows, n).astype(np.float64)
    pos = np.add.reduceat(counts * pos_sorted, starts, axis=1)
    neg = np.add.reduceat(counts * ~pos_sorted, starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (pos * (below + 0.5 * neg)).sum(axis=1) / (n_pos * n_neg)
    return np.asarray(np.where((n_pos > 0) & (n_neg > 0), auc, np.nan))


def _binary_counts(name: str, true_pos: Array, pred_pos: Array, idx: Array) -> Array:
    """Precision, recall or f1 of the positive class; 0 where the ratio is 0/0 (scikit-learn's
    ``zero_division=0``)."""
    t, p = true_pos[idx], pred_pos[idx]
    tp = (t & p).sum(axis=1)
    fp = (~t & p).sum(axis=1)
    fn = (t & ~p).sum(axis=1)
    num, den = {"precision": (tp, tp + fp), "recall": (tp, tp + fn)}.get(
        name, (2 * tp, 2 * tp + fp + fn)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.where(den > 0, num / den, 0.0))
