"""Loop policies: per model, what to watch, when to act, how to retrain, gate and roll out.

One YAML file per model under ``policies/*.yaml``, or a table ``[loopline.loop.MODEL]`` in
``loopline.toml``, checked by pydantic; a wrong key or value is a
:class:`~loopline.errors.ConfigError` that names the file and the key. The whole policy is
checked when it is read, before any pass: the gate's thresholds by the gate's own
validator (:func:`~loopline.delivery.thresholds.parse_thresholds`), the rollout's options
by the rollout's (:meth:`~loopline.serving.policy.RolloutPolicy.from_kwargs`), the webhook
as an http(s) URL - a mistake there used to surface only after a retraining.

**When the loop acts.** By default on *any drifted model feature* or a live metric below
its floor, not on Evidently's dataset verdict (at least 50 % of the columns drifted): with
12 features, a loop waiting for 6 to drift would keep serving a model whose three most
important inputs have moved, and the labels that would show the decay arrive days late.
One drifted feature the model reads is enough to retrain; columns it does not read
trigger nothing. ``monitor.drift.share`` switches to a share rule when a model is known to
tolerate some drift.

Example file ``policies/flights.yaml``::

    model: flights
    data: flights                     # the dataset whose newest version retrains
    reference: flights-train          # drift reference: this dataset as the model saw it
    monitor:
      window_requests: 1000
      min_rows: 300
      floors: {auc: 0.6}
    retrain:
      pipeline: mypkg.train:train     # takes a DatasetVersion, returns a run/logged model
    gate:
      dataset: flights-holdout
      thresholds: {label: late, metrics: {auc: {lower: 0.6, change: {absolute: -0.01}}}}
    rollout:
      strategy: canary
      options: {steps: [25, 50, 100], window_requests: 100}
    cooldown_seconds: 3600

Example:
    >>> p = LoopPolicy.model_validate({"model": "m", "data": "d",
    ...     "retrain": {"pipeline": "pkg.mod:train"}, "gate": {"dataset": "h",
    ...     "thresholds": {"label": "y", "metrics": {"auc": {"lower": 0.6}}}}})
    >>> p.monitor.window_requests, p.rollout.strategy
    (1000, 'canary')
"""

from __future__ import annotations

import importlib
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from loopline.errors import ConfigError, InvalidInput
from loopline.monitoring.alerts import AlertRule, check_metric, check_threshold, check_webhook
from loopline.serving.policy import RolloutPolicy, check_options

_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


#: What parse_policy says when the refusal brings no hint of its own.
_HINT = "the keys are in docs/monitoring.md (Loop policies) and loopline/loop/policy.py"


class _Refused(ValueError):
    """A value refused by the validator of the step that will use it (the gate's, the
    rollout's), carrying that validator's hint for :func:`parse_policy` to show."""

    def __init__(self, message: str, hint: str | None) -> None:
        super().__init__(message)
        self.hint = hint


def _checked(key: str, check: Callable[[], object]) -> None:
    """Run ``check``; its InvalidInput becomes a :class:`_Refused` under ``key``."""
    try:
        check()
    except InvalidInput as exc:
        raise _Refused(f"{key}{exc.message}", exc.hint) from None


def _rollout_options(strategy: str, options: dict[str, Any]) -> None:
    """The options as :func:`loopline.deploy` will take them with ``strategy``:
    ``fallback`` is its own keyword (a version number), the rest are
    :class:`RolloutPolicy` options, each one the strategy reads."""
    rest = dict(options)
    if "fallback" in rest:
        from loopline.training.registry_checks import require_version_number

        require_version_number(rest.pop("fallback"), field="fallback")
    try:
        RolloutPolicy.from_kwargs(rest)
    except InvalidInput as exc:
        exc.hint = f"{exc.hint}; and fallback (a version number)"
        raise
    check_options(strategy, rest)


class _Strict(BaseModel):
    # strict: values are taken as written - pydantic's lax mode read floors {auc: "0.6"}
    # as 0.6, {auc: true} as 1.0 and cooldown_seconds: "60" as 60
    model_config = ConfigDict(extra="forbid", strict=True)


class DriftMonitor(_Strict):
    """Which drift verdict triggers: any drifted feature (default) or a share of them."""

    enabled: bool = True
    share: float | None = Field(None, gt=0, le=1)


class Monitor(_Strict):
    """What the loop watches: the newest ``window_requests`` predictions of the stable
    version; ``floors`` are live metrics that trigger when they fall below, ``ceilings``
    when they rise above (metrics of :data:`~loopline.monitoring.alerts.METRICS` or
    ``business.<event>``, finite bounds). ``min_rows`` and ``min_labels`` are at most
    ``window_requests`` (left out: their default, or ``window_requests`` when smaller).

    Example:
        >>> m = Monitor.model_validate({"window_requests": 50})
        >>> m.min_rows, m.min_labels
        (50, 50)
    """

    window_requests: int = Field(1000, ge=10)
    min_rows: int = Field(200, ge=1)
    min_labels: int = Field(100, ge=1)
    drift: DriftMonitor = Field(default_factory=DriftMonitor)
    floors: dict[str, float] = Field(default_factory=dict)
    ceilings: dict[str, float] = Field(default_factory=dict)

    @field_validator("floors", "ceilings")
    @classmethod
    def _known_metrics(cls, value: dict[str, float]) -> dict[str, float]:
        # a floor on a misspelled metric would never fire, and nothing would say so
        for name, bound in value.items():
            check_metric(name)
            check_threshold(name, bound)
        return value

    @model_validator(mode="before")
    @classmethod
    def _defaults_fit_the_window(cls, data: Any) -> Any:
        # min_rows and min_labels left out take their default, or window_requests when it
        # is smaller: a window of 50 rows never held the default 200
        w = data.get("window_requests") if isinstance(data, dict) else None
        if not isinstance(w, int) or isinstance(w, bool):
            return data  # no window, or not a whole number: the defaults, or its error
        fields = cls.model_fields
        return {
            "min_rows": min(fields["min_rows"].default, w),
            "min_labels": min(fields["min_labels"].default, w),
            **data,
        }

    @model_validator(mode="after")
    def _can_fire(self) -> Monitor:
        # A window is the newest window_requests rows: it never holds more rows, nor more
        # labels, so a larger minimum said "not enough traffic yet" forever.
        w = self.window_requests
        for key, what in (("min_rows", "rows"), ("min_labels", "labels")):
            if getattr(self, key) > w:
                raise _Refused(
                    f"{key} ({getattr(self, key)}) is above window_requests ({w}): a window "
                    f"never holds that many {what}, so the loop would wait for them forever",
                    f"lower {key} to at most {w}, or raise window_requests",
                )
        return self


class Retrain(_Strict):
    """The pipeline that retrains: ``module:function`` taking the newest data version."""

    pipeline: str
    experiment: str | None = None

    @field_validator("pipeline")
    @classmethod
    def _target(cls, value: str) -> str:
        if not _TARGET.match(value):
            raise ValueError("write it as 'package.module:function'")
        return value


class Gate(_Strict):
    """The held-out dataset (its newest version) and the thresholds of ``ll.gates``."""

    dataset: str
    thresholds: dict[str, Any]


class Rollout(_Strict):
    """How a blessed challenger is deployed: a strategy and ``ll.deploy`` options."""

    strategy: Literal["canary", "direct", "blue_green", "shadow", "ab"] = "canary"
    options: dict[str, Any] = Field(default_factory=dict)


class LoopPolicy(_Strict):
    """The loop's policy for one model."""

    model: str = Field(min_length=1)
    data: str = Field(min_length=1)
    reference: str | None = None
    features: list[str] | None = None
    monitor: Monitor = Field(default_factory=Monitor)
    retrain: Retrain
    gate: Gate
    rollout: Rollout = Field(default_factory=Rollout)
    cooldown_seconds: float = Field(3600.0, ge=0)
    webhook: str | None = None
    alerts: list[AlertRule] = Field(default_factory=list)
    source: str = Field("", exclude=True)

    @field_validator("webhook")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return None if value is None else check_webhook(value)

    @model_validator(mode="after")
    def _as_the_pass_will(self) -> LoopPolicy:
        # The gate and the rollout run after a retraining: a bad threshold or option found
        # there left an orphan version (and an hour of cooldown) or a blessed challenger
        # that never deployed. Their own validators judge them now, before any pass.
        from loopline.delivery.thresholds import parse_thresholds

        _checked("", lambda: parse_thresholds(self.gate.thresholds, "gate.thresholds"))
        _checked(
            "rollout.options.",
            lambda: _rollout_options(self.rollout.strategy, self.rollout.options),
        )
        return self

    def pipeline_function(self) -> Callable[..., Any]:
        """Import the retraining function named by ``retrain.pipeline``.

        Example:
            >>> # policy.pipeline_function()(ll.datasets.get("flights"))
        """
        module_name, _, attr = self.retrain.pipeline.partition(":")
        try:
            module = importlib.import_module(module_name)
            fn = getattr(module, attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(
                f"{self.source or 'policy'}: retrain.pipeline: cannot import "
                f"{self.retrain.pipeline!r}: {exc}",
                hint="name an importable 'package.module:function'",
            ) from exc
        if not callable(fn):
            raise ConfigError(
                f"{self.source or 'policy'}: retrain.pipeline: {self.retrain.pipeline!r} "
                "is not a function"
            )
        return fn  # type: ignore[no-any-return]


#: The hint for a value of the wrong type (pydantic's strict mode refused it).
_AS_WRITTEN = (
    "values are taken as written: a number unquoted (0.6, not '0.6'), a flag true or false"
)


def _problem(err: Any) -> tuple[str, str]:
    """What one pydantic error of a policy says (``key: reason``), and its hint."""
    # a check of the whole policy (the gate's, the rollout's) names its key itself
    key = ".".join(str(p) for p in err["loc"])
    where = f"{key}: " if key else ""
    if err["type"] == "extra_forbidden":
        return f"{where}unknown key", _HINT
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"].endswith("_type"):  # text or a bool where a number goes, ...
        shown = repr(err["input"])
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        return f"{where}{msg}, got {type(err['input']).__name__} {shown}", _AS_WRITTEN
    cause = err.get("ctx", {}).get("error")
    return f"{where}{msg}", (cause.hint if isinstance(cause, _Refused) else None) or _HINT


def parse_policy(data: Any, source: str) -> LoopPolicy:
    """Validate one policy; ConfigError names ``source`` and the bad key.

    Example:
        >>> parse_policy({"model": "m"}, "p.yaml")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        loopline.errors.ConfigError: p.yaml: data: Field required (and 2 more) (hint: ...)
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a loop policy is a mapping, got {type(data).__name__}")
    try:
        policy = LoopPolicy.model_validate(data)
    except ValidationError as exc:
        # a typo shows as an unknown key and a missing one: name the typo first
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        problem, hint = _problem(errors[0])
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ConfigError(f"{source}: {problem}{more}", hint=hint) from exc
    policy.source = source
    return policy


def _loop_section(doc: dict[str, Any], toml: Path) -> dict[str, Any]:
    """The ``[loopline.loop]`` table (or a top-level ``[loop]``); ConfigError naming the
    key when ``loopline`` or ``loop`` is there but is not a table (``loop = "x"``)."""
    top = doc.get("loopline", doc)
    if not isinstance(top, dict):
        raise ConfigError(
            f"{toml}: loopline: is {type(top).__name__} {top!r}, not a table",
            hint="write the settings under a [loopline] table",
        )
    section = top.get("loop", {})
    if not isinstance(section, dict):
        key = "loopline.loop" if "loopline" in doc else "loop"
        raise ConfigError(
            f"{toml}: {key}: is {type(section).__name__} {section!r}, not a table",
            hint="write one table [loopline.loop.MODEL] per model",
        )
    return section


def _anchored(data: Any, folder: Path) -> Any:
    """A policy whose gate thresholds name a contract file relative to ``folder`` (the
    policy file's): the server reads it whatever its working directory."""
    from loopline.delivery.thresholds import anchor_paths

    gate = data.get("gate") if isinstance(data, dict) else None
    if not isinstance(gate, dict) or not isinstance(gate.get("thresholds"), dict):
        return data
    return {**data, "gate": {**gate, "thresholds": anchor_paths(gate["thresholds"], folder)}}


def load_policies(root: str | Path = ".") -> list[LoopPolicy]:
    """Every policy in ``root/policies/*.yaml`` and ``[loopline.loop.*]`` of
    ``root/loopline.toml``; ConfigError on a bad one or a model named twice.

    Example:
        >>> # [p.model for p in load_policies()]
    """
    base = Path(root)
    found: list[LoopPolicy] = []
    for path in sorted((base / "policies").glob("*.y*ml")):
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        found.append(parse_policy(_anchored(data, path.parent), str(path)))
    toml = base / "loopline.toml"
    if toml.is_file():
        try:
            doc = tomllib.loads(toml.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{toml}: not valid TOML: {exc}") from exc
        section = _loop_section(doc, toml)
        for name, data in section.items():
            if isinstance(data, dict):
                data = {"model": name, **data}
            found.append(parse_policy(_anchored(data, base), f"{toml} [loopline.loop.{name}]"))
    seen: dict[str, str] = {}
    for p in found:
        if p.model in seen:
            raise ConfigError(
                f"model {p.model!r} has two loop policies: {seen[p.model]} and {p.source}",
                hint="keep one",
            )
        seen[p.model] = p.source
    return found
