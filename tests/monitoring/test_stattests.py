"""Each test statistic against SciPy (or NumPy) on small data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from scipy.spatial import distance

from loopline.monitoring import stattests as st

RNG = np.random.default_rng(7)


def _pair(
    n: int, m: int, shift: float = 0.3, decimals: int | None = None
) -> tuple[np.ndarray, ...]:
    a, b = RNG.normal(size=n), RNG.normal(shift, 1.2, size=m)
    if decimals is not None:
        a, b = np.round(a, decimals), np.round(b, decimals)
    return np.sort(a), np.sort(b)


@pytest.mark.parametrize(
    ("n", "m", "decimals"),
    [(200, 200, None), (150, 90, None), (37, 1001, 1), (5, 3, 1), (1, 1, None), (1, 7, None),
     (300, 299, 0)],
    ids=["equal", "unequal", "ties", "tiny", "one-each", "one-vs-seven", "heavy-ties"],
)  # fmt: skip
def test_wasserstein_equals_scipy(n: int, m: int, decimals: int | None) -> None:
    a, b = _pair(n, m, decimals=decimals)
    assert st.wasserstein(a, b) == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-9)


def test_wasserstein_normed_divides_by_population_std_with_a_floor() -> None:
    a, b = _pair(400, 300)
    expected = stats.wasserstein_distance(a, b) / np.std(a)
    assert st.wasserstein_normed(a, b) == pytest.approx(expected, rel=1e-9)
    const = np.full(10, 2.0)
    assert st.wasserstein_normed(const, const + 1) == pytest.approx(1 / st.MIN_STD)


def test_ks_equals_scipy() -> None:
    a, b = _pair(300, 250, shift=0.8)
    d, p = st.ks(a, b)
    ref = stats.ks_2samp(a, b)
    assert (d, p) == (pytest.approx(ref.statistic), pytest.approx(ref.pvalue))
    assert 0 < p < 0.05


def test_chisquare_equals_scipy_with_reference_shares_as_expected() -> None:
    ref = np.array([120, 80, 40, 10])
    cur = np.array([50, 70, 60, 20])
    expected = ref * cur.sum() / ref.sum()
    stat, p = st.chisquare(ref, cur)
    res = stats.chisquare(cur, expected)
    assert (stat, p) == (pytest.approx(res.statistic), pytest.approx(res.pvalue))


def test_chisquare_level_unseen_in_reference_is_infinite() -> None:
    stat, p = st.chisquare(np.array([10, 10, 0]), np.array([10, 10, 1]))
    assert math.isinf(stat) and p == 0.0


def test_z_test_equals_the_uncorrected_two_by_two_chi_square() -> None:
    ref_first, ref_n, cur_first, cur_n = 60, 100, 45, 120
    z, p = st.z_proportions(ref_first, ref_n, cur_first, cur_n)
    table = [[ref_first, ref_n - ref_first], [cur_first, cur_n - cur_first]]
    chi2, p_ref, _, _ = stats.chi2_contingency(table, correction=False)
    assert z**2 == pytest.approx(chi2) and p == pytest.approx(p_ref)


def test_z_test_same_single_value_on_both_sides_is_no_drift() -> None:
    assert st.z_proportions(10, 10, 5, 5) == (0.0, 1.0)


@pytest.mark.parametrize(
    ("p", "q"),
    [([1, 2, 3], [3, 2, 1]), ([5, 0, 5], [0, 5, 5]), ([1, 1], [1, 1]), ([0.1, 0.9], [0.5, 0.5])],
    ids=["reversed", "disjoint-parts", "same", "shares"],
)
def test_jensenshannon_equals_scipy(p: list[float], q: list[float]) -> None:
    assert st.jensenshannon(np.array(p), np.array(q)) == pytest.approx(
        distance.jensenshannon(p, q), abs=1e-12
    )


def test_psi_formula_and_zero_filling() -> None:
    ref, cur = np.array([40, 30, 20, 10]), np.array([10, 20, 30, 40])
    r, c = ref / ref.sum(), cur / cur.sum()
    assert st.psi(ref, cur) == pytest.approx(float(np.sum((r - c) * np.log(r / c))))
    # An empty bin takes 0.0001 on its side (the smallest share is above 0.0001).
    r2, c2 = np.array([0.5, 0.5, 0.0001]), np.array([0.25, 0.25, 0.5])
    expected = float(np.sum((r2 - c2) * np.log(r2 / c2)))
    assert st.psi(np.array([50, 50, 0]), np.array([25, 25, 50])) == pytest.approx(expected)


@pytest.mark.parametrize("n", [2, 10, 1000, 123_457], ids=str)
def test_sturges_edges_equal_numpy(n: int) -> None:
    data = RNG.normal(size=n)
    lo, hi = float(data.min()), float(data.max())
    assert np.allclose(st.sturges_edges(lo, hi, n), np.histogram_bin_edges(data, bins="sturges"))


def test_histogram_of_sorted_values_equals_numpy() -> None:
    data = np.round(RNG.normal(size=5000), 1)  # values on the edges too
    edges = np.linspace(-2, 2, 9)
    expected, _ = np.histogram(data, bins=edges)
    assert st.histogram_sorted(np.sort(data), edges).tolist() == expected.tolist()


def test_finite_sorted_and_unique_count() -> None:
    x = st.finite_sorted(np.array([2.0, np.nan, np.inf, -np.inf, 1.0, 2.0]))
    assert x.tolist() == [1.0, 2.0, 2.0]
    assert st.unique_count(x) == 2 and st.unique_count(np.array([])) == 0


def test_binned_ks_equals_scipy_on_bin_indices() -> None:
    a, b = _pair(3000, 2000)
    edges = np.quantile(a, np.linspace(0, 1, 17)[1:-1])
    ia, ib = np.searchsorted(edges, a, side="right"), np.searchsorted(edges, b, side="right")
    ra, rb = np.bincount(ia, minlength=16), np.bincount(ib, minlength=16)
    d, p = st.binned_ks(ra, rb)
    ref = stats.ks_2samp(ia, ib, method="asymp")
    assert d == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue, rel=1e-6)


def test_binned_wasserstein_is_exact_for_values_spread_evenly_in_their_bins() -> None:
    edges = np.array([0.0, 1.0, 3.0, 4.0])
    ref_counts, cur_counts = np.array([4, 2, 2]), np.array([1, 3, 4])

    def spread(counts: np.ndarray) -> np.ndarray:
        k = 2000  # points per unit of count, evenly spaced inside each bin
        parts = [
            lo + (hi - lo) * (np.arange(c * k) + 0.5) / (c * k)
            for lo, hi, c in zip(edges[:-1], edges[1:], counts, strict=True)
        ]
        return np.concatenate(parts)

    exact = stats.wasserstein_distance(spread(ref_counts), spread(cur_counts))
    assert st.binned_wasserstein(ref_counts, cur_counts, edges) == pytest.approx(exact, rel=1e-3)


def test_drift_directions() -> None:
    assert st.TESTS["ks"].is_drift(statistic=0.1, p_value=0.05, threshold=0.05)  # KS: p <= t
    assert not st.TESTS["chisquare"].is_drift(statistic=1.0, p_value=0.05, threshold=0.05)
    assert st.TESTS["jensenshannon"].is_drift(statistic=0.1, p_value=None, threshold=0.1)
    assert not st.TESTS["z"].is_drift(statistic=0.0, p_value=float("nan"), threshold=0.05)
