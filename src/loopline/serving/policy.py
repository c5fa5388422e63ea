"""Rollout policies: the knobs of A/B splits, canary steps and their automatic analysis.

Every knob has a default; :func:`loopline.deploy` takes any of them as a keyword
(``ll.deploy("churn", 4, strategy="canary", steps=[10, 50, 100], window_requests=500)``)
and a wrong name or value is an :class:`~loopline.errors.InvalidInput` naming it.

A canary step is judged once its **window** is complete: ``window_requests`` requests
reached the candidate, or ``window_seconds`` passed with at least ``min_requests`` of
them. A step with too little traffic to judge waits (it never passes by default). The
checks, each counted as failed or passed:

* **error rate** - the candidate's share of requests that raised or timed out must not
  exceed ``max(max_error_rate, stable's rate + error_rate_margin)``;
* **latency p99** - at most ``max_p99_ms`` (if set), and not above the stable version's p99
  times ``max_p99_ratio`` by more than ``p99_slack_ms``;
* **prediction shift** - PSI (or the KS statistic, ``shift_test: ks``) between the
  candidate's and the stable version's predictions at most ``max_psi`` (``max_ks``);
  skipped with fewer than ``min_shift_samples`` predictions on either side;
* **live accuracy** - once ``min_labels`` labels arrived for both (``POST
  /v1/models/NAME/feedback``), at most ``max_accuracy_drop`` below the stable version's.

A window is small, so a candidate as good as the stable version often exceeds a bound by
chance; a check therefore **fails only when its bound is exceeded and the excess is
significant at** ``alpha`` (default 0.01; 1 judges on the bounds alone): a one-sided
binomial test of the errors against the allowed rate, and of the requests over the p99
limit against 1 %; a chi-square test on the PSI's bins (the KS test's p-value with
``shift_test: ks``); a z-test of the accuracy drop. See :mod:`loopline.serving.significance`.

More than ``max_failed_checks`` failed checks roll the canary back; otherwise it moves to
the next step, and passing the last step below 100 % promotes it. The error-rate check can
fail a window early: once the errors seen exceed what the whole window may hold, and
significantly so.

Example:
    >>> p = RolloutPolicy.from_kwargs({"steps": [10, 50, 100]})
    >>> p.steps, p.window_requests
    ([10.0, 50.0, 100.0], 200)
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from loopline.errors import InvalidInput

#: The strategies whose rollout reads each knob (every other knob: ``canary`` only).
USED_BY: dict[str, tuple[str, ...]] = {
    "split": ("ab",),
    "timeout_ms": ("direct", "blue_green", "ab", "canary", "shadow"),
}


def strategies_using(option: str) -> tuple[str, ...]:
    """The strategies whose rollout reads the policy knob ``option``.

    Example:
        >>> strategies_using("split"), strategies_using("window_requests")
        (('ab',), ('canary',))
    """
    return USED_BY.get(option, ("canary",))


def check_options(strategy: str, options: Iterable[str]) -> None:
    """Refuse a knob in ``options`` that ``strategy`` does not read (InvalidInput naming it).

    Example:
        >>> check_options("canary", ["steps", "timeout_ms"])
        >>> try:
        ...     check_options("direct", ["split"])
        ... except InvalidInput as exc:
        ...     print(exc.message)
        split is only used with strategy ab, not direct
    """
    for option in options:
        using = strategies_using(option)
        if strategy not in using:
            raise InvalidInput(
                f"{option} is only used with strategy {' or '.join(using)}, not {strategy}",
                field=option,
                hint=f"deploy with strategy={using[0]!r} (--strategy {using[0]}) to use "
                f"{option}, or leave {option} out",
            )


class RolloutPolicy(BaseModel):
    """How traffic moves to a candidate version, and how a canary step is judged."""

    model_config = ConfigDict(extra="forbid")

    steps: list[float] = Field(default_factory=lambda: [5.0, 25.0, 50.0, 100.0])
    split: float = Field(50.0, gt=0, lt=100, description="A/B: percent of traffic to B.")
    window_requests: int = Field(200, ge=1)
    window_seconds: float = Field(300.0, gt=0)
    min_requests: int = Field(50, ge=1)
    max_error_rate: float = Field(0.01, ge=0, le=1)
    error_rate_margin: float = Field(0.005, ge=0, le=1)
    max_p99_ms: float | None = Field(None, gt=0)
    max_p99_ratio: float = Field(1.5, ge=1)
    p99_slack_ms: float = Field(5.0, ge=0)
    shift_test: Literal["psi", "ks"] = "psi"
    max_psi: float = Field(0.25, gt=0)
    max_ks: float = Field(0.3, gt=0, le=1)
    min_shift_samples: int = Field(30, ge=5)
    max_accuracy_drop: float = Field(0.02, ge=0, le=1)
    min_labels: int = Field(30, ge=1)
    max_failed_checks: int = Field(0, ge=0)
    alpha: float = Field(0.01, gt=0, le=1)
    timeout_ms: float | None = Field(None, gt=0)

    @field_validator("steps")
    @classmethod
    def _steps(cls, value: list[float]) -> list[float]:
        if not value:
            raise ValueError("give at least one step, e.g. [5, 25, 50, 100]")
        if any(not 0 < s <= 100 for s in value):
            raise ValueError("each step is a percentage in (0, 100]")
        if any(b <= a for a, b in itertools.pairwise(value)):
            raise ValueError("steps must increase, e.g. [5, 25, 50, 100]")
        if value[-1] != 100:
            value = [*value, 100.0]
        return [float(s) for s in value]

    @classmethod
    def from_kwargs(cls, values: dict[str, Any]) -> RolloutPolicy:
        """Build a policy from keyword arguments; InvalidInput names a bad one.

        Example:
            >>> RolloutPolicy.from_kwargs({"split": 20}).split
            20.0
        """
        try:
            # strict: as written - lax mode read window_requests="500" as 500, split=True as 1
            return cls.model_validate(values, strict=True)
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(p) for p in err["loc"]) or "policy"
            msg = "unknown policy option" if err["type"] == "extra_forbidden" else err["msg"]
            raise InvalidInput(
                f"{key}: {str(msg).removeprefix('Value error, ')}",
                field=key,
                hint=f"policy options: {', '.join(cls.model_fields)}",
            ) from exc

    def to_json(self) -> str:
        """The policy as JSON text (stored with the deployment).

        Example:
            >>> RolloutPolicy().to_json()[:9]
            '{"steps":'
        """
        return self.model_dump_json()
