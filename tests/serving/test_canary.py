"""Canary analysis: windows, checks and decisions; prediction-shift statistics."""

from __future__ import annotations

import random

import pytest

from loopline.serving.canary import BOUNDS, RoleStats, WindowStats, analyse, ks, psi
from loopline.serving.policy import RolloutPolicy

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
