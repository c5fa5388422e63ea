"""Two-sample drift tests on NumPy arrays and count vectors, written for speed.

Every function takes what is cheapest to keep: a numeric column as a *sorted* float64 array
with no NaN or infinity (one sort per column feeds the Kolmogorov-Smirnov test, the
Wasserstein distance, the unique count, the minimum and maximum and every histogram), a
categorical column as two count vectors aligned on the same levels. Nothing here knows
about pandas.

The definitions match Evidently 0.7.23 (``src/evidently/legacy/calculations/stattests/``
of github.com/evidentlyai/evidently; our code is written from the definitions, not copied):

=================  ===========================================  ========  ==============
test               statistic                                    default   drift when
=================  ===========================================  ========  ==============
``ks``             two-sample Kolmogorov-Smirnov D (SciPy)      0.05      p <= threshold
``chisquare``      chi-square of current counts against the     0.05      p < threshold
                   reference shares scaled to the current size
``z``              two-proportion z (share of the first level)  0.05      p < threshold
``wasserstein``    first Wasserstein distance / reference std   0.1       d >= threshold
                   (population std, at least 0.001)
``jensenshannon``  Jensen-Shannon distance, natural log, on     0.1       d >= threshold
                   level shares or Sturges bins (no smoothing)
``psi``            population stability index on the same       0.1       d >= threshold
                   bins, empty bins filled (see :func:`psi`)
=================  ===========================================  ========  ==============

Example:
    >>> import numpy as np
    >>> a = np.sort(np.random.default_rng(0).normal(size=500))
    >>> round(wasserstein_normed(a, a + 0.5), 3) > 0.1
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Floats = NDArray[np.float64]
Counts = NDArray[np.int64] | NDArray[np.float64]

#: Evidently's minimum normaliser of the Wasserstein distance.
MIN_STD = 0.001


@dataclass(frozen=True)
class TestSpec:
    """A test's name, whether it returns a p-value, its default threshold and its direction.

    Example:
        >>> TESTS["ks"].is_drift(statistic=0.2, p_value=0.01, threshold=0.05)
        True
    """

    name: str
    label: str
    p_value: bool
    default_threshold: float
    inclusive: bool  # p <= t (KS) rather than p < t; distances are always d >= t

    def is_drift(self, *, statistic: float, p_value: float | None, threshold: float) -> bool:
        """Whether a result crosses ``threshold`` in this test's direction.

        Example:
            >>> TESTS["wasserstein"].is_drift(statistic=0.1, p_value=None, threshold=0.1)
            True
        """
        if self.p_value:
            if p_value is None or math.isnan(p_value):
                return False
            return p_value <= threshold if self.inclusive else p_value < threshold
        return bool(statistic >= threshold)


TESTS: dict[str, TestSpec] = {
    t.name: t
    for t in (
        TestSpec("ks", "Kolmogorov-Smirnov", True, 0.05, True),
        TestSpec("chisquare", "chi-square", True, 0.05, False),
        TestSpec("z", "two-proportion z-test", True, 0.05, False),
        TestSpec("wasserstein", "Wasserstein distance (normed)", False, 0.1, True),
        TestSpec("jensenshannon", "Jensen-Shannon distance", False, 0.1, True),
        TestSpec("psi", "population stability index", False, 0.1, True),
        TestSpec("ks_binned", "Kolmogorov-Smirnov on bins (approx.)", True, 0.05, True),
        TestSpec("wasserstein_binned", "Wasserstein on bins (approx., normed)", False, 0.1, True),
    )
}


def finite_sorted(values: Floats) -> Floats:
    """``values`` sorted, without NaN and infinities (a view into one sorted copy).

    Example:
        >>> finite_sorted(np.array([3.0, np.nan, -np.inf, 1.0])).tolist()
        [1.0, 3.0]
    """
    x = np.sort(values)
    lo = int(np.searchsorted(x, -np.inf, side="right"))
    hi = int(np.searchsorted(x, np.inf, side="left"))
    return x[lo:hi]


def unique_count(x_sorted: Floats) -> int:
    """Number of distinct values of a sorted array.

    Example:
        >>> unique_count(np.array([1.0, 1.0, 2.0]))
        2
    """
    if x_sorted.size == 0:
        return 0
    return int(np.count_nonzero(x_sorted[1:] != x_sorted[:-1])) + 1


def population_std(x: Floats) -> float:
    """Standard deviation with ``ddof=0`` (as ``np.std``), 0.0 for an empty array.

    Example:
        >>> population_std(np.array([1.0, 3.0]))
        1.0
    """
    return float(np.std(x)) if x.size else 0.0


def ks(ref_sorted: Floats, cur_sorted: Floats) -> tuple[float, float]:
    """Two-sided two-sample Kolmogorov-Smirnov test: ``(D, p_value)`` (SciPy's ``ks_2samp``).

    Example:
        >>> d, p = ks(np.arange(10.0), np.arange(10.0))
        >>> (d, p)
        (0.0, 1.0)
    """
    from scipy.stats import ks_2samp

    res = ks_2samp(ref_sorted, cur_sorted)
    return float(res.statistic), float(res.pvalue)


def wasserstein(u_sorted: Floats, v_sorted: Floats) -> float:
    """First Wasserstein distance of two samples, from their sorted values.

    The integral of the absolute difference of the two quantile functions: with as many
    values on each side it is the mean absolute difference of the sorted arrays, otherwise
    the quantile functions' breakpoints ``i/n`` and ``j/m`` are merged in integer arithmetic
    (no search, no second sort). Equal to ``scipy.stats.wasserstein_distance`` to rounding.

    Example:
        >>> wasserstein(np.array([0.0, 1.0]), np.array([1.0, 2.0, 3.0]))
        1.5
    """
    n, m = u_sorted.size, v_sorted.size
    if n == 0 or m == 0:
        raise ValueError("the Wasserstein distance needs two non-empty samples")
    if n == m:
        return float(np.mean(np.abs(u_sorted - v_sorted)))
    # Breakpoints in units of 1/(n*m): i*m for u (i = 1..n), j*n for v (j = 1..m). The j-th
    # v breakpoint follows the (j*n - 1) // m u breakpoints that are strictly smaller.
    j = np.arange(1, m + 1, dtype=np.int64)
    pos_v = np.arange(m, dtype=np.int64) + (j * n - 1) // m
    points = np.empty(n + m, dtype=np.int64)
    is_u = np.ones(n + m, dtype=bool)
    is_u[pos_v] = False
    points[pos_v] = j * n
    points[is_u] = np.arange(1, n + 1, dtype=np.int64) * m
    width = np.diff(points, prepend=0)
    mid2 = 2 * points - width  # twice the midpoint of each interval
    iu = np.minimum(mid2 // (2 * m), n - 1)
    iv = np.minimum(mid2 // (2 * n), m - 1)
    total = float(np.dot(width.astype(np.float64), np.abs(u_sorted[iu] - v_sorted[iv])))
    return total / (float(n) * float(m))


def wasserstein_normed(
    ref_sorted: Floats, cur_sorted: Floats, ref_std: float | None = None
) -> float:
    """Wasserstein distance divided by the reference's population std (at least 0.001).

    Example:
        >>> round(wasserstein_normed(np.array([0.0, 2.0]), np.array([1.0, 3.0])), 6)
        1.0
    """
    std = population_std(ref_sorted) if ref_std is None else ref_std
    return wasserstein(ref_sorted, cur_sorted) / max(std, MIN_STD)


def chisquare(ref_counts: Counts, cur_counts: Counts) -> tuple[float, float]:
    """Chi-square of the current counts against the reference shares: ``(chi2, p_value)``.

    Expected counts are the reference counts scaled to the current total, as Evidently does;
    a level seen in the current data but never in the reference gives an infinite statistic
    and ``p = 0``. One level only: ``(0.0, 1.0)``.

    Example:
        >>> stat, p = chisquare(np.array([50, 50]), np.array([50, 50]))
        >>> (stat, p)
        (0.0, 1.0)
    """
    from scipy.stats import chi2

    ref = np.asarray(ref_counts, dtype=np.float64)
    cur = np.asarray(cur_counts, dtype=np.float64)
    if ref.size < 2:
        return 0.0, 1.0
    expected = ref * (cur.sum() / ref.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(
            expected > 0, (cur - expected) ** 2 / expected, np.where(cur > 0, np.inf, 0.0)
        )
    stat = float(terms.sum())
    p = 0.0 if math.isinf(stat) else float(chi2.sf(stat, ref.size - 1))
    return stat, p


def z_proportions(ref_first: int, ref_n: int, cur_first: int, cur_n: int) -> tuple[float, float]:
    """Two-sided z-test of the share of *other than the first level* in two samples.

    ``*_first`` counts the first level (the smallest value), ``*_n`` all values. When the
    pooled share is 0 or 1 (the same single value on both sides) the result is ``(0.0, 1.0)``.

    Example:
        >>> z, p = z_proportions(50, 100, 50, 100)
        >>> (z, p)
        (0.0, 1.0)
    """
    from scipy.stats import norm

    p1 = (ref_n - ref_first) / ref_n
    p2 = (cur_n - cur_first) / cur_n
    pooled = (p1 * ref_n + p2 * cur_n) / (ref_n + cur_n)
    var = pooled * (1 - pooled) * (1.0 / ref_n + 1.0 / cur_n)
    if var <= 0:
        return 0.0, 1.0
    z = (p1 - p2) / math.sqrt(var)
    return float(z), float(2 * norm.sf(abs(z)))


def jensenshannon(ref_counts: Counts, cur_counts: Counts) -> float:
    """Jensen-Shannon distance (natural log) of two count or share vectors.

    Each vector is normalised to sum 1 first, as ``scipy.spatial.distance.jensenshannon``.

    Example:
        >>> jensenshannon(np.array([1, 0]), np.array([1, 0]))
        0.0
    """
    p = np.asarray(ref_counts, dtype=np.float64)
    q = np.asarray(cur_counts, dtype=np.float64)
    p = p / p.sum()
    q = q / q.sum()
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        left = np.where(p > 0, p * np.log(p / m), 0.0)
        right = np.where(q > 0, q * np.log(q / m), 0.0)
    js = float((left.sum() + right.sum()) / 2)
    return math.sqrt(max(js, 0.0))


def _fill_zeros(shares: Floats) -> Floats:
    nonzero = shares[shares != 0]
    if nonzero.size == 0:
        return shares
    smallest = float(nonzero.min())
    fill = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return np.where(shares == 0, fill, shares)


def psi(ref_counts: Counts, cur_counts: Counts) -> float:
    """Population stability index of two count vectors on the same bins.

    Shares are counts over the total; an empty bin's share is replaced, on each side, by
    0.0001, or by a millionth of that side's smallest share when that is at most 0.0001
    (Evidently's rule), so that the logarithm stays finite.

    Example:
        >>> psi(np.array([10, 20]), np.array([10, 20]))
        0.0
    """
    ref = np.asarray(ref_counts, dtype=np.float64)
    cur = np.asarray(cur_counts, dtype=np.float64)
    r = _fill_zeros(ref / ref.sum())
    c = _fill_zeros(cur / cur.sum())
    return float(np.sum((r - c) * np.log(r / c)))


def sturges_edges(lo: float, hi: float, n_total: int) -> Floats:
    """The bin edges ``np.histogram_bin_edges(data, bins="sturges")`` gives for data of
    ``n_total`` values between ``lo`` and ``hi``, without holding the data.

    Example:
        >>> sturges_edges(0.0, 1.0, 8).tolist()
        [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    if hi <= lo:
        return np.array([lo - 0.5, lo + 0.5])
    width = (hi - lo) / (math.log2(n_total) + 1.0)
    bins = max(1, math.ceil((hi - lo) / width))
    return np.linspace(lo, hi, bins + 1)


def histogram_sorted(x_sorted: Floats, edges: Floats) -> NDArray[np.int64]:
    """Counts of a sorted array in ``edges`` with ``np.histogram``'s rules: bins are
    ``[a, b)`` except the last, ``[a, b]``; values outside are not counted.

    Example:
        >>> histogram_sorted(np.array([0.0, 0.5, 1.0, 2.0]), np.array([0.0, 0.5, 1.0])).tolist()
        [1, 2]
    """
    idx = np.searchsorted(x_sorted, edges, side="left").astype(np.int64)
    idx[-1] = np.searchsorted(x_sorted, edges[-1], side="right")
    return np.diff(idx)


def binned_ks(ref_counts: Counts, cur_counts: Counts) -> tuple[float, float]:
    """KS on binned data: D is the largest CDF gap at the bin edges (a lower bound of the
    exact D), the p-value SciPy's asymptotic two-sample one for that D.

    Example:
        >>> binned_ks(np.array([5, 5]), np.array([5, 5]))
        (0.0, 1.0)
    """
    from scipy.stats import kstwo

    ref = np.asarray(ref_counts, dtype=np.float64)
    cur = np.asarray(cur_counts, dtype=np.float64)
    n, m = float(ref.sum()), float(cur.sum())
    d = float(np.max(np.abs(np.cumsum(ref) / n - np.cumsum(cur) / m)))
    en = round(n * m / (n + m))
    return d, float(min(1.0, max(0.0, kstwo.sf(d, max(en, 1)))))


def binned_wasserstein(ref_counts: Counts, cur_counts: Counts, edges: Floats) -> float:
    """Wasserstein distance of two histograms on the same finite ``edges``, each CDF taken
    linear inside a bin (values spread evenly in their bin): an approximation of the exact
    distance, within about one bin width.

    Example:
        >>> binned_wasserstein(np.array([1, 0]), np.array([0, 1]), np.array([0.0, 1.0, 2.0]))
        1.0
    """
    ref = np.asarray(ref_counts, dtype=np.float64)
    cur = np.asarray(cur_counts, dtype=np.float64)
    gap = np.concatenate([[0.0], np.cumsum(ref) / ref.sum() - np.cumsum(cur) / cur.sum()])
    a, b = gap[:-1], gap[1:]
    width = np.diff(edges)
    same_sign = a * b >= 0
    with np.errstate(divide="ignore", invalid="ignore"):
        crossing = np.where(
            np.abs(a) + np.abs(b) > 0, (a * a + b * b) / (2 * (np.abs(a) + np.abs(b))), 0.0
        )
    area = np.where(same_sign, (np.abs(a) + np.abs(b)) / 2, crossing)
    return float(np.sum(width * area))
