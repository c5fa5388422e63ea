"""Canary analysis: windows, checks and decisions; prediction-shift statistics; significance."""

from __future__ import annotations

import math
import random
import re
from typing import Any

import pytest

from loopline.errors import InvalidInput
from loopline.serving.canary import (
    BOUNDS,
    RoleStats,
    WindowStats,
    analyse,
    errors_fail_window,
    ks,
    psi,
)
from loopline.serving.policy import RolloutPolicy
from loopline.serving.significance import (
    accuracy_drop_pvalue,
    binomial_excess,
    chi2_homogeneity,
)

POLICY = RolloutPolicy(window_requests=100, min_requests=20, window_seconds=60)


def _window(
    stable: int,
    candidate: int,
    *,
    cand_errors: int = 0,
    cand_latency: float = 0.001,
    cand_preds: list[int] | None = None,
    seed: int = 0,
) -> WindowStats:
    rng = random.Random(seed)
    w = WindowStats()
    for _ in range(stable):
        w.stable.record(0.001, rng.randint(0, 1))
    for i in range(candidate):
        if i < cand_errors:
            w.candidate.error(cand_latency)
        else:
            pred = cand_preds[i % len(cand_preds)] if cand_preds else rng.randint(0, 1)
            w.candidate.record(cand_latency, pred)
    return w


def test_a_healthy_window_passes_once_complete_and_waits_before() -> None:
    early = analyse(POLICY, _window(200, 50), elapsed=5)
    assert early.decision == "wait" and "collecting: 50/100" in early.reason
    done = analyse(POLICY, _window(400, 100), elapsed=5)
    assert done.decision == "pass", done.reason
    assert {c.name for c in done.checks} == {
        "error_rate",
        "latency_p99",
        "prediction_shift",
        "live_accuracy",
    }
    skipped = [c for c in done.checks if c.passed is None]
    assert [c.name for c in skipped] == ["live_accuracy"]  # no labels arrived


def test_a_step_with_too_little_traffic_waits_instead_of_passing() -> None:
    quiet = analyse(POLICY, _window(30, 5), elapsed=600)
    assert quiet.decision == "wait" and "too little traffic" in quiet.reason
    enough = analyse(POLICY, _window(300, 40), elapsed=61)  # window_seconds with min_requests
    assert enough.decision == "pass"


def test_errors_fail_the_window_early_and_name_the_rate() -> None:
    result = analyse(POLICY, _window(100, 10, cand_errors=2), elapsed=1)
    assert result.decision == "fail" and result.failed == 1
    assert "already exceed" in result.reason and "20.00%" in result.reason


@pytest.mark.parametrize(
    ("window", "check", "words"),
    [
        (_window(400, 100, cand_latency=0.2), "latency_p99", "above 1.5x stable"),
        (_window(400, 100, cand_preds=[1]), "prediction_shift", "PSI"),
    ],
    ids=["slow", "shifted"],
)
def test_latency_and_prediction_shift_fail_a_complete_window(
    window: WindowStats, check: str, words: str
) -> None:
    result = analyse(POLICY, window, elapsed=5)
    assert result.decision == "fail"
    failed = [c for c in result.checks if c.passed is False]
    assert [c.name for c in failed] == [check] and words in failed[0].detail


def test_live_accuracy_counts_once_labels_arrive_and_failed_checks_are_tolerated() -> None:
    w = _window(400, 100)
    for i in range(50):
        w.stable.label(True)
        w.candidate.label(i < 30)  # 60 % against 100 %
    result = analyse(POLICY, w, elapsed=5)
    assert result.decision == "fail" and "accuracy 60.00%" in result.reason
    lenient = analyse(POLICY.model_copy(update={"max_failed_checks": 1}), w, elapsed=5)
    assert lenient.decision == "pass"


def test_worker_windows_merge_into_one() -> None:
    a, b = _window(10, 5, cand_errors=1), _window(20, 7)
    merged = WindowStats.merge([a.to_dict(), b.to_dict()])
    assert (merged.stable.requests, merged.candidate.requests) == (30, 12)
    assert merged.candidate.errors == 1
    assert len(merged.stable.sample) == 30


def test_latency_percentiles_and_reservoir_stay_bounded() -> None:
    s = RoleStats()
    for i in range(5000):
        s.record(0.001 if i % 100 else 0.5, i)
    assert s.p99() == pytest.approx(0.001, rel=0.15)
    assert len(s.sample) == 1000 and s.seen == 5000
    assert BOUNDS[0] < 1e-4 and BOUNDS[-1] > 10


def test_psi_and_ks_measure_a_shift() -> None:
    rng = random.Random(1)
    same = [rng.gauss(0, 1) for _ in range(500)]
    other = [rng.gauss(0, 1) for _ in range(500)]
    moved = [x + 1.5 for x in other]
    assert psi(same, other) < 0.1 < 1.0 < psi(same, moved)
    assert ks(same, other) < 0.1 < 0.4 < ks(same, moved)
    assert psi(["a"] * 50 + ["b"] * 50, ["a"] * 90 + ["b"] * 10) > 0.25
    with pytest.raises(ValueError, match="numeric"):
        ks(["a"], ["b"])


# -- significance: a check fails only on a bound exceeded *and* significant evidence --------


def _traffic(
    rng: random.Random,
    window: int,
    step: float,
    *,
    shift: float = 0.0,
    slower: float = 1.0,
    errors: float = 0.0,
    stable_errors: float = 0.0,
    accuracy: tuple[float, float] | None = None,
) -> WindowStats:
    """One complete window of a canary at ``step`` percent, its predictions, latencies,
    errors and labels drawn from the stable version's distributions but for the changes."""
    w = WindowStats()
    for role, n, mean, scale, err in (
        (w.stable, int(window * (100 - step) / step), 0.0, 1.0, stable_errors),
        (w.candidate, window, shift, slower, errors),
    ):
        for _ in range(n):
            latency = rng.lognormvariate(-6.5, 0.5) * scale  # ~1.5 ms, a long right tail
            if rng.random() < err:
                role.error(latency)
            else:
                role.record(latency, rng.gauss(mean, 1.0))
    if accuracy is not None:
        for _ in range(50):
            w.stable.label(rng.random() < accuracy[0])
            w.candidate.label(rng.random() < accuracy[1])
    return w


def _fail_share(policy: RolloutPolicy, runs: int, step: float, **change: Any) -> float:
    rng = random.Random(11)
    fails = 0
    for _ in range(runs):
        w = _traffic(rng, policy.window_requests, step, **change)
        fails += analyse(policy, w, elapsed=1).decision == "fail"
    return fails / runs


# the configuration of the examples in docs/serving.md (steps 10, 50; 100-request windows)
# and the first step of the default steps with a small window
CONFIGS = [
    pytest.param(100, 50, id="100-requests-at-50%"),
    pytest.param(100, 10, id="100-requests-at-10%"),
    pytest.param(50, 5, id="50-requests-at-5%"),
]


@pytest.mark.parametrize(("window", "step"), CONFIGS)
def test_a_candidate_as_good_as_stable_is_rarely_rolled_back(window: int, step: float) -> None:
    # identical predictions, latencies, a 1 % error rate and 85 % accuracy on both sides:
    # judged on the bounds alone, a quarter to a half of such windows failed (an empty PSI
    # decile, the p99 of 100 requests being their second slowest, one error too many)
    policy = RolloutPolicy(window_requests=window, min_requests=min(50, window))
    same = {"errors": 0.01, "stable_errors": 0.01, "accuracy": (0.85, 0.85)}
    assert _fail_share(policy, 200, step, **same) < 0.03
    bounds_alone = policy.model_copy(update={"alpha": 1.0})
    assert _fail_share(bounds_alone, 60, step, **same) > 0.15


@pytest.mark.parametrize(("window", "step"), CONFIGS)
@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"errors": 0.3}, id="30%-errors"),
        pytest.param({"slower": 10.0}, id="10x-slower"),
        pytest.param({"shift": 1.5}, id="shifted-predictions"),
        pytest.param({"accuracy": (0.95, 0.5)}, id="accuracy-drop"),
    ],
)
def test_a_clearly_worse_candidate_still_fails_its_first_window(
    window: int, step: float, change: dict[str, Any]
) -> None:
    policy = RolloutPolicy(window_requests=window, min_requests=min(50, window))
    assert _fail_share(policy, 60, step, **change) == 1.0


def test_a_failed_check_names_its_value_bound_and_p_value() -> None:
    result = analyse(POLICY, _traffic(random.Random(3), 100, 50, shift=1.5), elapsed=5)
    assert result.decision == "fail" and result.alpha == 0.01
    (check,) = [c for c in result.checks if c.passed is False]
    assert check.name == "prediction_shift" and check.exceeded
    assert check.value is not None and check.bound == 0.25 and check.value > check.bound
    assert check.p_value is not None and check.p_value < 0.01
    assert "prediction_shift: PSI" in result.reason and "KS test p" in result.reason
    assert "< alpha 0.01" in result.reason
    stored = result.to_dict()
    assert stored["alpha"] == 0.01
    shift = next(c for c in stored["checks"] if c["name"] == "prediction_shift")
    assert shift["p_value"] == check.p_value and shift["bound"] == 0.25


def test_one_slow_pause_over_the_p99_is_noise_and_a_slow_candidate_is_not() -> None:
    w = _window(100, 100)
    w.candidate.record(0.0162, 0)  # a scheduling pause delays two of 102 requests
    w.candidate.record(0.0158, 1)
    result = analyse(POLICY, w, elapsed=5)
    latency = next(c for c in result.checks if c.name == "latency_p99")
    assert result.decision == "pass" and latency.passed and latency.exceeded
    assert "2/102 requests over it" in latency.detail and "not significant" in latency.detail
    assert "latency_p99: candidate p99" in result.reason  # the pass says what it let through
    for _ in range(4):  # six slow requests of 106 are more than a p99 allows
        w.candidate.record(0.016, 0)
    slow = analyse(POLICY, w, elapsed=5)
    assert slow.decision == "fail" and "latency_p99: candidate p99" in slow.reason
    assert "6/106 requests over it" in slow.reason


def test_errors_fail_early_only_when_significant() -> None:
    policy = RolloutPolicy(window_requests=200, min_requests=50)
    stable = RoleStats()
    for i in range(1000):
        stable.record(0.001, 0) if i % 100 else stable.error(0.001)  # 1 %: allowed 1.5 %
    seen = RoleStats()
    for i in range(150):  # 4 errors in 150 (2.7 %): more than the 3 a window may hold
        seen.record(0.001, 0) if i % 40 else seen.error(0.001)
    assert seen.errors == 4 and not errors_fail_window(policy, stable, seen)
    for _ in range(3):  # 7 in 153: significantly more than 1.5 %
        seen.error(0.001)
    assert errors_fail_window(policy, stable, seen)
    w = WindowStats(stable=stable, candidate=seen)
    result = analyse(policy, w, elapsed=1)
    assert result.decision == "fail" and "already exceed" in result.reason
    assert "binomial test p" in result.reason


@pytest.mark.parametrize("bad", [0, -0.1, 1.5, "often"])
def test_alpha_is_validated(bad: Any) -> None:
    with pytest.raises(InvalidInput, match="alpha") as info:
        RolloutPolicy.from_kwargs({"alpha": bad})
    assert info.value.field == "alpha"
    assert RolloutPolicy.from_kwargs({"alpha": 1}).alpha == 1.0


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"window_requests": "500"}, "window_requests"),
        ({"split": True}, "split"),
        ({"steps": ["10", "100"]}, "steps.0"),
        ({"max_p99_ms": "50"}, "max_p99_ms"),
    ],
    ids=["text-count", "bool-percent", "text-steps", "text-limit"],
)
def test_an_option_is_taken_as_written(options: dict[str, Any], key: str) -> None:
    """Text and bools were read as numbers ('500' as 500, True as 1 %)."""
    with pytest.raises(InvalidInput, match=re.escape(f"{key}: Input should be a valid")) as info:
        RolloutPolicy.from_kwargs(options)
    assert info.value.field == key
    assert RolloutPolicy.from_kwargs({"split": 20, "steps": [10, 100]}).split == 20.0


def test_significance_tests_match_scipy() -> None:
    from scipy import stats

    assert binomial_excess(5, 100, 0.01) == pytest.approx(
        stats.binomtest(5, 100, 0.01, "greater").pvalue
    )
    assert binomial_excess(0, 100, 0.01) == 1.0 and binomial_excess(1, 100, 0.0) == 0.0
    table = [[30.0, 50.0, 20.0], [10.0, 30.0, 60.0]]
    assert chi2_homogeneity(*table) == pytest.approx(stats.chi2_contingency(table).pvalue)
    assert chi2_homogeneity([5.0, 0.0], [7.0, 0.0]) == 1.0  # one non-empty bin: no evidence
    # Agresti-Caffo: (45+1)/52 against (30+1)/52 with a 2 % margin
    p = accuracy_drop_pvalue(45, 50, 30, 50, 0.02)
    ps, pc = 46 / 52, 31 / 52
    z = (pc - ps + 0.02) / math.sqrt(ps * (1 - ps) / 52 + pc * (1 - pc) / 52)
    assert p == pytest.approx(stats.norm.cdf(z))
