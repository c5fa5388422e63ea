"""The significance tests behind the canary checks (:mod:`loopline.serving.canary`).

A canary window is small (a few hundred requests), so a bound alone - an error rate, a p99,
a PSI - is often exceeded by chance by a candidate as good as the stable version. A check
therefore fails only when its bound is exceeded *and* the window's evidence is significant
at the policy's ``alpha``, as in Kayenta or a Flagger analysis: each test here returns the
p-value of "the candidate is worse than the bound allows". :func:`shift_bins`,
:func:`psi_of_counts` and :func:`numeric` prepare the prediction samples.

* :func:`binomial_excess` - more events (errors, requests over a latency limit) than an
  allowed share explains (exact one-sided binomial test);
* :func:`chi2_homogeneity` - two samples of counts over the same bins differ (Pearson's
  chi-square test of homogeneity: the PSI's bins, for labels);
* :func:`ks_test` - two numeric samples differ (two-sample Kolmogorov-Smirnov: with the
  KS statistic, and with the PSI of continuous predictions, where it has more power than
  a chi-square test on ten bins for the same false alarms);
* :func:`accuracy_drop_pvalue` - the candidate's accuracy is more than ``drop`` below the
  stable version's (non-inferiority z-test with the Agresti-Caffo adjustment).

Example:
    >>> round(binomial_excess(5, 100, 0.01), 4)
    0.0034
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any


def binomial_excess(events: int, trials: int, share: float) -> float:
    """P(X >= ``events``) for X ~ Binomial(``trials``, ``share``): the p-value of "more than
    ``share`` of the trials were events".

    Example:
        >>> binomial_excess(0, 10, 0.5), round(binomial_excess(2, 10, 0.01), 4)
        (1.0, 0.0043)
    """
    if events <= 0:
        return 1.0
    if events > trials:
        return 0.0
    if share <= 0:
        return 0.0  # no event is allowed, and one happened
    if share >= 1:
        return 1.0
    # bdtrc(k, n, p) = P(X > k); scipy.special is a ufunc, cheap enough for the request path
    from scipy import special  # lazily: the model server starts without SciPy

    return float(special.bdtrc(events - 1, trials, share))


def chi2_homogeneity(expected: Sequence[float], actual: Sequence[float]) -> float:
    """The p-value of Pearson's chi-square test that two samples of counts over the same bins
    come from one distribution (:func:`scipy.stats.chi2_contingency`); bins empty on both
    sides are dropped, and one bin left means nothing to tell apart (1.0).

    Example:
        >>> chi2_homogeneity([50, 50], [50, 50])
        1.0
        >>> chi2_homogeneity([50, 50], [100, 0]) < 1e-6
        True
    """
    import numpy as np
    from scipy.stats import chi2_contingency

    table = np.array([expected, actual], dtype=np.float64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 1.0
    return float(chi2_contingency(table).pvalue)


def ks_test(expected: Sequence[float], actual: Sequence[float]) -> tuple[float, float]:
    """The two-sample Kolmogorov-Smirnov statistic and p-value (:func:`scipy.stats.ks_2samp`).

    Example:
        >>> ks_test([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
        (0.0, 1.0)
    """
    from scipy.stats import ks_2samp

    result = ks_2samp(expected, actual)
    return float(result.statistic), float(result.pvalue)


def accuracy_drop_pvalue(
    stable_correct: int, stable_labels: int, cand_correct: int, cand_labels: int, drop: float
) -> float:
    """The p-value of "the candidate's accuracy is more than ``drop`` below the stable's".

    A one-sided z-test of the difference of two proportions against the margin, with the
    Agresti-Caffo adjustment (one success and one failure added to each side), which keeps
    the test sound at 0 % or 100 % accuracy where the plain Wald test has no variance.

    Example:
        >>> accuracy_drop_pvalue(45, 50, 44, 50, 0.02) > 0.3
        True
        >>> accuracy_drop_pvalue(50, 50, 30, 50, 0.02) < 1e-4
        True
    """
    ps = (stable_correct + 1) / (stable_labels + 2)
    pc = (cand_correct + 1) / (cand_labels + 2)
    se = math.sqrt(ps * (1 - ps) / (stable_labels + 2) + pc * (1 - pc) / (cand_labels + 2))
    z = (pc - ps + drop) / se
    from scipy import special

    return float(special.ndtr(z))


def numeric(values: list[Any]) -> list[float] | None:
    """The values as floats, or None if one is not a number (bools are not).

    Example:
        >>> numeric([1, 2.5]), numeric([1, "a"]), numeric([True])
        ([1.0, 2.5], None, None)
    """
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float):
            return None
        out.append(float(v))
    return out


def continuous(expected: list[Any], actual: list[Any], bins: int = 10) -> bool:
    """Whether two prediction samples are numbers with more than ``bins`` distinct values
    (binned at deciles), rather than labels (compared value by value).

    Example:
        >>> continuous([i / 10 for i in range(20)], [0.5] * 5), continuous([0, 1] * 6, [1] * 5)
        (True, False)
    """
    if numeric(expected) is None or numeric(actual) is None:
        return False
    return len(set(expected) | set(actual)) > bins


def shift_bins(expected: list[Any], actual: list[Any], bins: int = 10) -> tuple[Any, Any]:
    """The counts of ``expected`` and ``actual`` over the bins the PSI compares: the deciles
    of ``expected`` for numbers, each value for labels (or numbers with few distinct values).

    Example:
        >>> e, a = shift_bins(["a", "b", "b"], ["b"]); (e.tolist(), a.tolist())
        ([1.0, 2.0], [0.0, 1.0])
    """
    import numpy as np

    e_num, a_num = numeric(expected), numeric(actual)
    if e_num is None or a_num is None or not continuous(expected, actual, bins):
        keys = sorted(set(map(str, expected)) | set(map(str, actual)))
        ec, ac = Counter(map(str, expected)), Counter(map(str, actual))
        e = np.array([ec[k] for k in keys], dtype=np.float64)
        a = np.array([ac[k] for k in keys], dtype=np.float64)
        return e, a
    edges = np.unique(np.quantile(np.asarray(e_num), np.linspace(0, 1, bins + 1)[1:-1]))
    width = len(edges) + 1
    e_bins = np.bincount(np.searchsorted(edges, e_num, side="right"), minlength=width)
    a_bins = np.bincount(np.searchsorted(edges, a_num, side="right"), minlength=width)
    return e_bins.astype(np.float64), a_bins.astype(np.float64)


def psi_of_counts(e: Any, a: Any) -> float:
    """The population stability index of the counts ``a`` against ``e`` over the same bins;
    an empty bin counts as a share of 1e-4.

    Example:
        >>> import numpy as np; psi_of_counts(np.array([5.0, 5.0]), np.array([5.0, 5.0]))
        0.0
    """
    import numpy as np

    pe = np.maximum(e / e.sum(), 1e-4)
    pa = np.maximum(a / a.sum(), 1e-4)
    return float(np.sum((pa - pe) * np.log(pa / pe)))
