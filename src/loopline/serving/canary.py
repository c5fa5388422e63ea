"""Canary analysis: per-version counters gathered while serving, and the judgement of a step.

A model server records, per deployment revision and per role (``stable``/``candidate``),
the requests, the errors (raised or timed out), a latency histogram with fixed buckets, a
reservoir sample of predictions and, when labels arrive, how many were right. Recording is
a few integer updates on the request path. Every second the counters are written to
``canary_windows`` (one row per worker), and the step is judged on their sum across workers
and replicas by :func:`analyse` (see :mod:`loopline.serving.policy` for the checks).

Example:
    >>> s, c = WindowStats(), WindowStats()
    >>> for _ in range(60):
    ...     s.stable.record(0.001, 0); c.candidate.record(0.001, 0)
    >>> merged = WindowStats.merge([s.to_dict(), c.to_dict()])
    >>> analyse(RolloutPolicy(window_requests=50), merged, elapsed=1.0).decision
    'pass'
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from loopline.serving.policy import RolloutPolicy
from loopline.serving.significance import (
    accuracy_drop_pvalue,
    binomial_excess,
    chi2_homogeneity,
    continuous,
    ks_test,
    numeric,
    psi_of_counts,
    shift_bins,
)

#: Upper bounds (seconds) of the latency histogram buckets: 50 us to 30 s, ~12 % apart.
BOUNDS: tuple[float, ...] = tuple(5e-5 * 1.12**i for i in range(118))
SAMPLE_SIZE = 1000


class RoleStats:
    """Counters for one version in one window; :meth:`record` is on the request path."""

    __slots__ = ("correct", "errors", "hist", "labels", "requests", "sample", "seen")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.hist = [0] * (len(BOUNDS) + 1)
        self.sample: list[Any] = []
        self.seen = 0
        self.labels = 0
        self.correct = 0

    def record(self, latency: float, prediction: Any) -> None:
        """Count one answered request and sample its (scalar) prediction.

        Example:
            >>> s = RoleStats(); s.record(0.002, 1); (s.requests, s.sample)
            (1, [1])
        """
        self.requests += 1
        self.hist[bisect_left(BOUNDS, latency)] += 1
        if prediction is None or isinstance(prediction, list | dict):
            return
        self.seen += 1
        if len(self.sample) < SAMPLE_SIZE:
            self.sample.append(prediction)
        else:
            j = random.randrange(self.seen)
            if j < SAMPLE_SIZE:
                self.sample[j] = prediction

    def error(self, latency: float) -> None:
        """Count one request that raised or timed out.

        Example:
            >>> s = RoleStats(); s.error(0.01); s.error_rate
            1.0
        """
        self.requests += 1
        self.errors += 1
        self.hist[bisect_left(BOUNDS, latency)] += 1

    def label(self, correct: bool) -> None:
        """Count one label that arrived for a prediction of this version.

        Example:
            >>> s = RoleStats(); s.label(True); (s.labels, s.correct)
            (1, 1)
        """
        self.labels += 1
        self.correct += int(correct)

    @property
    def error_rate(self) -> float:
        """Errors over requests (0 without requests).

        Example:
            >>> RoleStats().error_rate
            0.0
        """
        return self.errors / self.requests if self.requests else 0.0

    def p99(self) -> float | None:
        """The 99th percentile latency in seconds (a bucket's upper bound), or None.

        Example:
            >>> RoleStats().p99() is None
            True
        """
        total = sum(self.hist)
        if not total:
            return None
        rank = math.ceil(0.99 * total)
        running = 0
        for i, n in enumerate(self.hist):
            running += n
            if running >= rank:
                return BOUNDS[min(i, len(BOUNDS) - 1)]
        return BOUNDS[-1]

    def over(self, limit: float) -> int:
        """How many requests took longer than ``limit`` seconds, at the histogram's
        resolution: those in a bucket whose upper bound is above it (so the p99 is above
        ``limit`` exactly when more than 1 % of the requests are).

        Example:
            >>> s = RoleStats(); s.record(0.001, 0); s.record(0.5, 0); s.over(0.1)
            1
        """
        return sum(self.hist[bisect_right(BOUNDS, limit) :])

    def to_dict(self) -> dict[str, Any]:
        """Plain data (stored as JSON per worker).

        Example:
            >>> RoleStats().to_dict()["requests"]
            0
        """
        return {
            "requests": self.requests,
            "errors": self.errors,
            "hist": list(self.hist),
            "sample": list(self.sample),
            "seen": self.seen,
            "labels": self.labels,
            "correct": self.correct,
        }

    def add(self, data: dict[str, Any]) -> None:
        """Add another worker's counters to these.

        Example:
            >>> s = RoleStats(); s.add({"requests": 4, "errors": 1}); s.error_rate
            0.25
        """
        self.requests += int(data.get("requests", 0))
        self.errors += int(data.get("errors", 0))
        for i, n in enumerate(data.get("hist", ())[: len(self.hist)]):
            self.hist[i] += int(n)
        self.sample.extend(data.get("sample", ()))
        self.seen += int(data.get("seen", 0))
        self.labels += int(data.get("labels", 0))
        self.correct += int(data.get("correct", 0))


@dataclass
class WindowStats:
    """The counters of both roles for one deployment revision, plus shadow comparisons."""

    stable: RoleStats = field(default_factory=RoleStats)
    candidate: RoleStats = field(default_factory=RoleStats)
    fallbacks: int = 0
    #: Labels sent for this revision that no worker could score within the label horizon.
    expired_labels: int = 0
    compared: int = 0
    agreed: int = 0
    disagreements: list[dict[str, Any]] = field(default_factory=list)

    def role(self, name: str) -> RoleStats:
        """The counters of ``stable`` or ``candidate``.

        Example:
            >>> WindowStats().role("candidate").requests
            0
        """
        return self.candidate if name == "candidate" else self.stable

    def compare(self, request_id: str, served: list[Any], shadow: list[Any]) -> bool:
        """Count one shadow comparison of a request's answers, one per row; keep a few
        disagreements for the log (the first row that differs, its number in ``row``).
        Returns whether the shadow agreed on every row.

        Example:
            >>> w = WindowStats(); w.compare("r1", [1, 1], [1, 0]); (w.compared, w.agreed)
            False
            (1, 0)
            >>> w.disagreements[0]["row"], w.disagreements[0]["served"]
            (1, 1)
        """
        self.compared += 1
        if served == shadow:
            self.agreed += 1
            return True
        if len(self.disagreements) < 20:
            pairs = zip(served, shadow, strict=False)
            row = next(
                (i for i, (a, b) in enumerate(pairs) if a != b), min(len(served), len(shadow))
            )
            self.disagreements.append(
                {
                    "request_id": request_id,
                    "row": row,
                    "served": served[row] if row < len(served) else None,
                    "shadow": shadow[row] if row < len(shadow) else None,
                }
            )
        return False

    def to_dict(self) -> dict[str, Any]:
        """Plain data (stored as JSON per worker).

        Example:
            >>> WindowStats().to_dict()["fallbacks"]
            0
        """
        return {
            "stable": self.stable.to_dict(),
            "candidate": self.candidate.to_dict(),
            "fallbacks": self.fallbacks,
            "expired_labels": self.expired_labels,
            "compared": self.compared,
            "agreed": self.agreed,
            "disagreements": list(self.disagreements),
        }

    def to_json(self) -> bytes:
        """JSON bytes of :meth:`to_dict`.

        Example:
            >>> WindowStats().to_json()[:10]
            b'{"stable":'
        """
        return orjson.dumps(self.to_dict(), option=orjson.OPT_SERIALIZE_NUMPY)

    @classmethod
    def merge(cls, parts: Iterable[dict[str, Any]]) -> WindowStats:
        """Sum the counters of several workers.

        Example:
            >>> WindowStats.merge([WindowStats().to_dict()]).stable.requests
            0
        """
        out = cls()
        for part in parts:
            out.stable.add(part.get("stable", {}))
            out.candidate.add(part.get("candidate", {}))
            out.fallbacks += int(part.get("fallbacks", 0))
            out.expired_labels += int(part.get("expired_labels", 0))
            out.compared += int(part.get("compared", 0))
            out.agreed += int(part.get("agreed", 0))
            out.disagreements.extend(part.get("disagreements", ())[:20])
        return out

    def summary(self) -> dict[str, Any]:
        """Rates and percentiles for people (``loopline deployments show``).

        Example:
            >>> WindowStats().summary()["candidate"]["requests"]
            0
        """

        def role(s: RoleStats) -> dict[str, Any]:
            p99 = s.p99()
            return {
                "requests": s.requests,
                "errors": s.errors,
                "error_rate": round(s.error_rate, 6),
                "p99_ms": None if p99 is None else round(p99 * 1000, 3),
                "labels": s.labels,
                "accuracy": round(s.correct / s.labels, 6) if s.labels else None,
            }

        out = {
            "stable": role(self.stable),
            "candidate": role(self.candidate),
            "fallbacks": self.fallbacks,
            "expired_labels": self.expired_labels,
        }
        if self.compared:
            out["shadow"] = {
                "compared": self.compared,
                "agreed": self.agreed,
                "agreement": round(self.agreed / self.compared, 6),
                "disagreements": self.disagreements[:5],
            }
        return out


@dataclass(frozen=True)
class Check:
    """One check of a canary window; ``passed`` None when skipped (not enough data).

    ``value`` is what the window measured, ``bound`` what the policy allows, ``exceeded``
    whether the value is beyond the bound and ``p_value`` how likely an excess at least as
    large is for a candidate exactly at the bound: the check fails only when the bound is
    exceeded and ``p_value`` is below the policy's ``alpha``.
    """

    name: str
    passed: bool | None
    detail: str
    value: float | None = None
    bound: float | None = None
    p_value: float | None = None
    exceeded: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain data (stored with the deployment event).

        Example:
            >>> Check("error_rate", True, "0.00%", 0.0, 0.01, 1.0).to_dict()["bound"]
            0.01
        """
        return {
            "name": self.name,
            "passed": self.passed,
            "detail": self.detail,
            "value": self.value,
            "bound": self.bound,
            "p_value": self.p_value,
            "exceeded": self.exceeded,
        }


@dataclass(frozen=True)
class Analysis:
    """The judgement of a window: ``wait``, ``pass`` or ``fail``, with the checks and why."""

    decision: str
    reason: str
    checks: tuple[Check, ...] = ()
    stats: dict[str, Any] = field(default_factory=dict)
    alpha: float | None = None

    @property
    def failed(self) -> int:
        """How many checks failed.

        Example:
            >>> Analysis("fail", "x", (Check("error_rate", False, "20%"),)).failed
            1
        """
        return sum(1 for c in self.checks if c.passed is False)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (stored with the deployment event).

        Example:
            >>> Analysis("wait", "too little traffic").to_dict()["decision"]
            'wait'
        """
        return {
            "decision": self.decision,
            "reason": self.reason,
            "failed": self.failed,
            "alpha": self.alpha,
            "checks": [c.to_dict() for c in self.checks],
            "stats": self.stats,
        }


def allowed_error_rate(policy: RolloutPolicy, stable: RoleStats) -> float:
    """The candidate error rate a window tolerates: the policy's, or stable's plus a margin.

    Example:
        >>> allowed_error_rate(RolloutPolicy(max_error_rate=0.01), RoleStats())
        0.01
    """
    return max(policy.max_error_rate, stable.error_rate + policy.error_rate_margin)


def significant(policy: RolloutPolicy, p_value: float) -> bool:
    """Whether a p-value is below the policy's ``alpha`` (``alpha`` 1: always, so the bounds
    alone decide).

    Example:
        >>> significant(RolloutPolicy(), 0.002), significant(RolloutPolicy(), 0.2)
        (True, False)
    """
    return policy.alpha >= 1 or p_value < policy.alpha


def errors_fail_window(policy: RolloutPolicy, stable: RoleStats, candidate: RoleStats) -> bool:
    """Whether the candidate's errors fail its window before it is complete: there are more
    than the whole window may hold, and significantly more than the allowed rate explains
    over the requests so far. The router stops sending the candidate traffic at that point.

    Example:
        >>> c = RoleStats(); c.error(0.01); c.error(0.01)
        >>> errors_fail_window(RolloutPolicy(window_requests=100), RoleStats(), c)
        True
    """
    errors = candidate.errors
    allowed = allowed_error_rate(policy, stable)
    if errors == 0 or errors <= allowed * policy.window_requests:
        return False  # the cheap test first: this runs on the request path
    return significant(policy, binomial_excess(errors, candidate.requests, allowed))


def _p_text(p: float) -> str:
    return f"{p:.1e}" if p < 1e-4 else f"{p:.4f}"


def _verdict(policy: RolloutPolicy, exceeded: bool, p: float, test: str) -> tuple[bool, str]:
    """Whether a check passes, and the words that say why, once its bound is compared."""
    if not exceeded:
        return True, ""
    if policy.alpha >= 1:
        return False, f" ({test} p {_p_text(p)}; alpha 1: the bound alone decides)"
    if p < policy.alpha:
        return False, f", significant: {test} p {_p_text(p)} < alpha {policy.alpha:g}"
    return True, f", but not significant: {test} p {_p_text(p)} >= alpha {policy.alpha:g}"


def _error_check(policy: RolloutPolicy, w: WindowStats) -> Check:
    allowed = allowed_error_rate(policy, w.stable)
    c = w.candidate
    rate = c.error_rate
    p = binomial_excess(c.errors, c.requests, allowed)
    exceeded = rate > allowed
    passed, why = _verdict(policy, exceeded, p, "binomial test")
    return Check(
        "error_rate",
        passed,
        f"candidate error rate {rate:.2%} ({c.errors}/{c.requests})"
        f" {'>' if exceeded else '<='} allowed {allowed:.2%} "
        f"(stable {w.stable.error_rate:.2%})" + why,
        rate,
        allowed,
        p,
        exceeded,
    )


#: The share of requests a p99 leaves above it.
P99_SHARE = 0.01


def _latency_check(policy: RolloutPolicy, w: WindowStats) -> Check:
    c = w.candidate
    cand = c.p99()
    if cand is None:
        return Check("latency_p99", None, "no candidate latency yet")
    cand_ms = cand * 1000
    limits: list[tuple[float, str]] = []
    if policy.max_p99_ms is not None:
        limits.append((policy.max_p99_ms, f"max_p99_ms {policy.max_p99_ms}"))
    stable = w.stable.p99()
    detail = f"candidate p99 {cand_ms:.2f} ms"
    if stable is not None:
        stable_ms = stable * 1000
        detail += f", stable {stable_ms:.2f} ms"
        limit = max(stable_ms * policy.max_p99_ratio, stable_ms + policy.p99_slack_ms)
        limits.append((limit, f"{policy.max_p99_ratio}x stable + {policy.p99_slack_ms} ms"))
    if not limits:
        return Check("latency_p99", True, detail, cand_ms)
    # the p99 is above a limit exactly when more than 1 % of the requests are, so the test
    # is whether the share over the tightest limit is significantly above 1 %: on a window
    # of 100 requests the p99 is its second slowest, and one pause would otherwise fail it
    limit_ms, label = min(limits)
    over, total = c.over(limit_ms / 1000), sum(c.hist)
    p = binomial_excess(over, total, P99_SHARE)
    exceeded = cand_ms > limit_ms
    passed, why = _verdict(policy, exceeded, p, "binomial test of more than 1% over it")
    if exceeded:
        detail += f"; above {label} (limit {limit_ms:.2f} ms): {over}/{total} requests over it"
    return Check("latency_p99", passed, detail + why, cand_ms, limit_ms, p, exceeded)


def psi(expected: list[Any], actual: list[Any], bins: int = 10) -> float:
    """Population stability index of ``actual`` against ``expected``.

    Numbers are binned at the deciles of ``expected`` (labels with few distinct values are
    compared value by value); empty bins get a small floor.

    Example:
        >>> round(psi([0, 1] * 50, [0, 1] * 50), 6)
        0.0
    """
    return psi_of_counts(*shift_bins(expected, actual, bins))


def ks(expected: list[Any], actual: list[Any]) -> float:
    """The two-sample Kolmogorov-Smirnov statistic (:func:`scipy.stats.ks_2samp`).

    Example:
        >>> ks([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
        0.0
    """
    e_num, a_num = numeric(expected), numeric(actual)
    if e_num is None or a_num is None:
        raise ValueError("the KS test needs numeric predictions")
    return ks_test(e_num, a_num)[0]


def _shift_check(policy: RolloutPolicy, w: WindowStats) -> Check:
    s, c = w.stable.sample, w.candidate.sample
    n = policy.min_shift_samples
    if len(s) < n or len(c) < n:
        return Check(
            "prediction_shift",
            None,
            f"too few predictions to compare ({len(c)} candidate, {len(s)} stable, need {n})",
        )
    if policy.shift_test == "ks":
        s_num, c_num = numeric(s), numeric(c)
        if s_num is None or c_num is None:
            return Check("prediction_shift", None, "the KS test needs numeric predictions")
        value, p = ks_test(s_num, c_num)
        label, bound, test = "KS", policy.max_ks, "KS test"
    else:
        e, a = shift_bins(s, c)
        value, label, bound = psi_of_counts(e, a), "PSI", policy.max_psi
        s_num, c_num = numeric(s), numeric(c)
        if s_num is not None and c_num is not None and continuous(s, c):
            p, test = ks_test(s_num, c_num)[1], "KS test"
        else:
            p, test = chi2_homogeneity(e, a), "chi-square test on its bins"
    exceeded = value > bound
    passed, why = _verdict(policy, exceeded, p, test)
    return Check(
        "prediction_shift",
        passed,
        f"{label} {value:.3f} {'>' if exceeded else '<='} max_{label.lower()} {bound}" + why,
        value,
        bound,
        p,
        exceeded,
    )


def _accuracy_check(policy: RolloutPolicy, w: WindowStats) -> Check:
    s, c = w.stable, w.candidate
    if s.labels < policy.min_labels or c.labels < policy.min_labels:
        return Check(
            "live_accuracy",
            None,
            f"too few labels ({c.labels} candidate, {s.labels} stable, need {policy.min_labels})",
        )
    acc_s, acc_c = s.correct / s.labels, c.correct / c.labels
    bound = acc_s - policy.max_accuracy_drop
    p = accuracy_drop_pvalue(s.correct, s.labels, c.correct, c.labels, policy.max_accuracy_drop)
    exceeded = acc_c < bound
    passed, why = _verdict(policy, exceeded, p, "z-test")
    return Check(
        "live_accuracy",
        passed,
        f"candidate accuracy {acc_c:.2%} vs stable {acc_s:.2%} "
        f"(may drop {policy.max_accuracy_drop:.2%})" + why,
        acc_c,
        bound,
        p,
        exceeded,
    )


def analyse(policy: RolloutPolicy, w: WindowStats, elapsed: float) -> Analysis:
    """Judge one canary window: wait for more traffic, pass the step, or fail it.

    A check fails when its bound is exceeded and the excess is significant at the policy's
    ``alpha`` (see :mod:`loopline.serving.significance`), so a candidate as good as the
    stable version is rarely rolled back by the noise of a small window.

    Example:
        >>> w = WindowStats()
        >>> for _ in range(10):
        ...     w.candidate.error(0.001)
        >>> analyse(RolloutPolicy(window_requests=100), w, elapsed=1.0).decision
        'fail'
    """
    n = w.candidate.requests
    stats = w.summary()
    allowed = allowed_error_rate(policy, w.stable)
    if errors_fail_window(policy, w.stable, w.candidate):
        check = _error_check(policy, w)
        return Analysis(
            "fail",
            f"{w.candidate.errors} errors already exceed the "
            f"{allowed:.2%} the window of {policy.window_requests} requests "
            f"allows: {check.detail}",
            (check,),
            stats,
            policy.alpha,
        )
    complete = n >= policy.window_requests or (
        elapsed >= policy.window_seconds and n >= policy.min_requests
    )
    if not complete:
        if elapsed >= policy.window_seconds:
            why = (
                f"too little traffic to judge: {n}/{policy.min_requests} candidate requests "
                f"after {elapsed:.0f} s; waiting"
            )
        else:
            why = (
                f"collecting: {n}/{policy.window_requests} candidate requests, "
                f"{elapsed:.0f}/{policy.window_seconds:.0f} s"
            )
        return Analysis("wait", why, (), stats, policy.alpha)
    checks = (
        _error_check(policy, w),
        _latency_check(policy, w),
        _shift_check(policy, w),
        _accuracy_check(policy, w),
    )
    failed = [c for c in checks if c.passed is False]
    if len(failed) > policy.max_failed_checks:
        return Analysis(
            "fail",
            f"{len(failed)} check(s) failed (max {policy.max_failed_checks}"
            "): " + "; ".join(f"{c.name}: {c.detail}" for c in failed),
            checks,
            stats,
            policy.alpha,
        )
    judged = sum(1 for c in checks if c.passed is not None)
    reason = f"{judged - len(failed)}/{judged} checks passed over {n} requests"
    noise = [c for c in checks if c.passed and c.exceeded]
    if noise:
        reason += "; " + "; ".join(f"{c.name}: {c.detail}" for c in noise)
    return Analysis("pass", reason, checks, stats, policy.alpha)
