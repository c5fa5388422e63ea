"""Alerts: threshold rules evaluated per window, stored, audited and posted to a webhook.

A rule names a metric of a :class:`~loopline.monitoring.performance.WindowMetrics`
(one of :data:`METRICS`: ``auc``, ``accuracy``, ``rmse``, ``latency_p99_ms``,
``drift_share``, ``drifted_features``, ... or ``business.<event>``, the sum of a business
event), a comparison and a finite threshold, e.g.
``AlertRule(metric="auc", op="<", threshold=0.65)``. Any other name is refused: a rule on a
misspelled metric would never fire. :func:`check_rules` returns the
breaches; :func:`raise_alert` stores one alert in ``alerts`` and the audit log (in one
transaction), then POSTs it as JSON to the webhook, with a timeout and retries (backing
off); whether the webhook took it is recorded on the alert.

Example:
    >>> rule = AlertRule(metric="latency_p99_ms", op=">", threshold=50)
    >>> rule.breached(80.0), rule.breached(None)
    (True, False)
"""

from __future__ import annotations

import functools
import logging
import math
import operator
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args
from urllib.parse import urlsplit

import orjson
import sqlalchemy as sa
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from loopline.core.context import Context, get_context
from loopline.core.db import reading
from loopline.core.text import check_no_control, check_no_nul
from loopline.errors import InvalidInput
from loopline.monitoring.tables import alerts
from loopline.monitoring.wire import finite_number

if TYPE_CHECKING:  # pandas loads with it: `loopline server` reads policies without it
    from loopline.monitoring.performance import WindowMetrics

log = logging.getLogger("loopline.monitoring")

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


#: The metrics a window has (:meth:`WindowMetrics.value`): from the labels, the traffic and
#: the drift; a business event's sum is ``business.<event>``.
METRICS = (
    "accuracy",
    "precision",
    "recall",
    "auc",
    "rmse",
    "mae",
    "latency_p50_ms",
    "latency_p99_ms",
    "throughput_rps",
    "requests",
    "rows",
    "labelled",
    "no_row_labels",
    "out_of_range_labels",
    "unscored_rows",
    "relogged_requests",
    "drift_share",
    "drifted_features",
)
BUSINESS_PREFIX = "business."

Severity = Literal["info", "warning", "critical"]
#: The severities of an alert (and of a rule).
SEVERITIES: tuple[str, ...] = get_args(Severity)
#: The most retries of a webhook post (they back off from 0.2 s, doubling: ~3.4 min).
MAX_RETRIES = 10
#: The longest rule name: the ``alerts.rule`` column's width.
MAX_RULE_CHARS = 200


def check_metric(name: str) -> str:
    """``name`` if a window has such a metric (:data:`METRICS` or ``business.<event>``), else
    ValueError listing them: a threshold on a misspelled metric would never fire.

    Example:
        >>> check_metric("auc"), check_metric("business.refund")
        ('auc', 'business.refund')
    """
    try:  # a NUL or ESC in an event name cannot name a stored event, and is shown
        check_no_control(name, "metric")
    except InvalidInput as exc:
        raise ValueError(exc.message) from None
    if name in METRICS or (name.startswith(BUSINESS_PREFIX) and name != BUSINESS_PREFIX):
        return name
    raise ValueError(
        f"unknown metric {name!r}; the metrics are {', '.join(METRICS)} "
        f"and {BUSINESS_PREFIX}<event> for a business event's sum"
    )


def check_threshold(name: str, value: float) -> float:
    """``value`` if it is a finite number, else ValueError naming the metric it bounds.

    Example:
        >>> check_threshold("auc", 0.6)
        0.6
    """
    if not math.isfinite(value):
        raise ValueError(f"the threshold of {name!r} is {value}; give a finite number")
    return value


@functools.cache
def _http_url() -> TypeAdapter[HttpUrl]:
    # Built when a webhook is first checked, not at import (~7 ms).
    return TypeAdapter(HttpUrl)


def check_webhook(url: str) -> str:
    """``url`` as written if it is an ``http://`` or ``https://`` URL with a host, else
    ValueError saying why: alerts to any other text fail only when they are raised, and are
    lost (the post is logged and the alert recorded as undelivered).

    Example:
        >>> check_webhook("https://hooks.example.com/loopline")
        'https://hooks.example.com/loopline'
        >>> check_webhook("hooks.example.com")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: 'hooks.example.com' is not an http(s) URL: ...
    """
    reason = None
    try:
        _http_url().validate_python(url)
    except ValidationError as exc:
        reason = str(exc.errors()[0]["msg"])
    # pydantic strips blanks and reads 'http:/x' as http://x/; httpx posts the text as is
    if reason is None and url != url.strip():
        reason = "blanks around it"
    elif reason is None and not urlsplit(url).netloc:
        reason = "no '//' before the host"
    if reason is not None:
        raise ValueError(
            f"{url!r} is not an http(s) URL: {reason}; write one such as "
            "https://hooks.example.com/loopline"
        )
    return url


class BadRule(InvalidInput, ValueError):
    """An :class:`AlertRule` that cannot be made (InvalidInput naming the field)."""


class AlertRule(BaseModel):
    """``metric op threshold`` on a window: e.g. ``auc < 0.65`` or ``drift_share > 0.2``.

    A bad rule is :class:`~loopline.errors.InvalidInput` naming the field: a metric no
    window has (:data:`METRICS`, ``business.<event>``) or that holds a control character,
    a threshold that is not a finite number (text such as ``"0.9"`` and bools are not
    numbers), a severity not in :data:`SEVERITIES`.
    """

    model_config = ConfigDict(extra="forbid")

    metric: str = Field(min_length=1)
    op: Literal["<", "<=", ">", ">="] = "<"
    # strict: "0.9" or True is not a threshold (an int is, as YAML writes 50)
    threshold: float = Field(strict=True)
    severity: Severity = "warning"
    name: str | None = Field(None, min_length=1, max_length=MAX_RULE_CHARS)

    def __init__(self, **data: Any) -> None:
        # A rule written in Python gets Loopline's error. Pydantic calls this __init__ for a
        # rule inside a loop policy too: being a ValueError as well, the error becomes one
        # of the policy's, which names the file and the rule's place.
        try:
            super().__init__(**data)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "rule"
            raise BadRule(
                f"AlertRule {where}: {str(err['msg']).removeprefix('Value error, ')}",
                field=where,
                hint="e.g. AlertRule(metric='auc', op='<', threshold=0.6)",
            ) from None

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        return check_metric(value)

    @field_validator("threshold")
    @classmethod
    def _finite(cls, value: float, info: ValidationInfo) -> float:
        return check_threshold(str(info.data.get("metric", "the rule")), value)

    @field_validator("name")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        if value is not None:
            try:  # the rule's label: stored with each alert, shown in pages and terminals
                check_no_control(value, "name")
            except InvalidInput as exc:
                raise ValueError(exc.message) from None
        return value

    @property
    def label(self) -> str:
        """The rule's name, or ``metric op threshold``.

        Example:
            >>> AlertRule(metric="auc", op="<", threshold=0.6).label
            'auc < 0.6'
        """
        return self.name or f"{self.metric} {self.op} {self.threshold:g}"

    def breached(self, value: float | None) -> bool:
        """Whether ``value`` crosses the threshold (a missing value never does).

        Example:
            >>> AlertRule(metric="auc", op="<", threshold=0.6).breached(0.55)
            True
        """
        return value is not None and _OPS[self.op](value, self.threshold)


@dataclass(frozen=True)
class Breach:
    """A rule crossed in a window, with the value that crossed it."""

    rule: AlertRule
    window: WindowMetrics
    value: float


@dataclass
class Alert:
    """A stored alert."""

    id: int
    model: str
    rule: str
    severity: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    delivered: bool = False
    ts: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The alert as the JSON the webhook receives.

        Example:
            >>> Alert(1, "m", "auc < 0.6", "warning", "auc fell")["rule"]
            'auc < 0.6'
        """
        return {
            "id": self.id,
            "model": self.model,
            "rule": self.rule,
            "severity": self.severity,
            "message": self.message,
            "details": self.details,
            "ts": self.ts,
            "source": "loopline",
        }

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]


def check_rules(rules: Sequence[AlertRule], windows: Sequence[WindowMetrics]) -> list[Breach]:
    """Every (rule, window) whose value crosses the rule's threshold.

    Example:
        >>> from loopline.monitoring.performance import WindowMetrics
        >>> w = WindowMetrics(0, 1, "1", 10, 10, 10, {"auc": 0.5})
        >>> [b.value for b in check_rules([AlertRule(metric="auc", threshold=0.6)], [w])]
        [0.5]
    """
    out = []
    for w in windows:
        for rule in rules:
            value = w.value(rule.metric)
            if rule.breached(value):
                assert value is not None
                out.append(Breach(rule, w, value))
    return out


def post_webhook(
    url: str, payload: dict[str, Any], *, timeout: float = 5.0, retries: int = 3
) -> bool:
    """POST ``payload`` as JSON; retry on errors and 5xx with backoff; True when a 2xx came.

    Example:
        >>> # post_webhook("http://127.0.0.1:9000/hook", {"text": "auc fell"})
    """
    import httpx

    body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    headers = {"content-type": "application/json"}
    delay = 0.2
    for attempt in range(retries + 1):
        try:
            r = httpx.post(url, content=body, headers=headers, timeout=timeout)
        except httpx.HTTPError as exc:
            log.warning("webhook %s attempt %d failed: %s", url, attempt + 1, exc)
        else:
            if r.is_success:
                return True
            log.warning("webhook %s attempt %d answered %d", url, attempt + 1, r.status_code)
            if r.status_code < 500 and r.status_code != 429:
                return False
        if attempt < retries:
            time.sleep(delay)
            delay *= 2
    return False


def _check_alert(
    model: object,
    rule: object,
    message: object,
    details: object,
    severity: object,
    webhook: object,
    timeout: object,
    retries: object,
) -> bytes:
    """Refuse what :func:`raise_alert` cannot store or post, naming the argument; return
    the details as JSON."""
    from loopline.training.registry_checks import check_name

    check_name(model, "model")  # type: ignore[arg-type]
    if not isinstance(rule, str) or not 1 <= len(rule) <= MAX_RULE_CHARS:
        raise InvalidInput(
            f"rule is {rule!r:.80}, not a name of 1-{MAX_RULE_CHARS} characters",
            field="rule",
            hint="name the rule that fired, e.g. 'auc < 0.6'",
        )
    check_no_control(rule, "rule")
    if not isinstance(message, str):
        raise InvalidInput(
            f"message is {type(message).__name__} {message!r:.80}, not a text",
            field="message",
            hint="say what happened, in words",
        )
    # Only what no store can hold: a message may quote a failure's own output, as it was.
    check_no_nul(message, "message")
    if severity not in SEVERITIES:
        raise InvalidInput(
            f"severity is {severity!r:.80}; it is one of {', '.join(SEVERITIES)}",
            field="severity",
            hint="pass severity='info', 'warning' or 'critical'",
        )
    if webhook is not None:
        try:
            check_webhook(webhook)  # type: ignore[arg-type]
        except ValueError as exc:
            raise InvalidInput(
                str(exc), field="webhook", hint="pass the https:// address of the webhook"
            ) from None
    took = finite_number(timeout)
    if took is None or took <= 0:
        raise InvalidInput(
            f"timeout is {timeout!r:.80}",
            field="timeout",
            hint="pass the seconds to wait for the webhook, a number > 0",
        )
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES:
        raise InvalidInput(
            f"retries is {retries!r:.80}",
            field="retries",
            hint=f"pass a whole number from 0 (post once) to {MAX_RETRIES}",
        )
    if details is not None and not isinstance(details, dict):
        raise InvalidInput(
            f"details is {type(details).__name__} {details!r:.80}, not a dict",
            field="details",
            hint="pass a dict of JSON values, or None",
        )
    try:
        return orjson.dumps(details or {}, option=orjson.OPT_SERIALIZE_NUMPY)
    except orjson.JSONEncodeError as exc:
        raise InvalidInput(
            f"details cannot be written as JSON: {exc}",
            field="details",
            hint="pass a dict with text keys and JSON values (numbers, text, lists, dicts)",
        ) from None


def raise_alert(
    model: str,
    rule: str,
    message: str,
    *,
    details: dict[str, Any] | None = None,
    severity: str = "warning",
    webhook: str | None = None,
    timeout: float = 5.0,
    retries: int = 3,
    ctx: Context | None = None,
) -> Alert:
    """Store an alert and its audit event, then post it to ``webhook`` (if any);
    InvalidInput naming ``webhook`` when it is not an http(s) URL.

    ``model`` is a valid model name - registered or not: a model served elsewhere logs
    its predictions here too, and an alert may come before any prediction; ``rule`` a
    name of 1-200 characters; ``severity`` one of :data:`SEVERITIES`; ``webhook`` an
    http(s) URL (:func:`check_webhook`); ``timeout`` seconds > 0; ``retries`` from 0 to
    :data:`MAX_RETRIES`. Anything else is :class:`~loopline.errors.InvalidInput` naming
    the argument, before anything is stored.

    Example:
        >>> # raise_alert("flights", "auc < 0.6", "live AUC 0.55 over 500 labels",
        >>> #             webhook="https://hooks.example.com/loopline")
    """
    body = _check_alert(model, rule, message, details, severity, webhook, timeout, retries)
    ctx = ctx or get_context()
    now = time.time()
    info = details or {}
    with ctx.engine.begin() as conn:
        new_id = conn.execute(
            sa.insert(alerts)
            .values(
                model=model,
                rule=rule,
                severity=severity,
                message=message,
                details=body.decode(),
                delivered=False,
                ts=now,
            )
            .returning(alerts.c.id)
        ).scalar_one()
        ctx.audit(
            conn,
            action="alert.raise",
            object_type="model",
            object_id=model,
            after={"alert_id": new_id, "rule": rule, "severity": severity, **info},
            reason=message,
        )
    alert = Alert(int(new_id), model, rule, severity, message, info, False, now)
    if webhook:
        alert.delivered = post_webhook(webhook, alert.to_dict(), timeout=timeout, retries=retries)
        with ctx.engine.begin() as conn:
            conn.execute(
                sa.update(alerts).where(alerts.c.id == alert.id).values(delivered=alert.delivered)
            )
    return alert


def last_details(model: str, rule: str, ctx: Context | None = None) -> dict[str, Any] | None:
    """The details of the newest alert of ``model`` under ``rule``, or None.

    Example:
        >>> # last_details("flights", "auc < 0.6")["window"]["end"]
    """
    ctx = ctx or get_context()
    q = (
        sa.select(alerts.c.details)
        .where(alerts.c.model == model, alerts.c.rule == rule)
        .order_by(alerts.c.id.desc())
        .limit(1)
    )
    with reading(ctx.engine) as conn:
        found = conn.execute(q).scalar()
    return None if found is None else dict(orjson.loads(found))


def list_alerts(model: str | None = None, limit: int = 100) -> list[Alert]:
    """The newest alerts (of ``model``), newest first.

    Example:
        >>> # [a.rule for a in list_alerts("flights")]
    """
    q = sa.select(alerts).order_by(alerts.c.id.desc()).limit(limit)
    if model is not None:
        q = q.where(alerts.c.model == model)
    with reading(get_context().engine) as conn:
        rows = conn.execute(q).all()
    return [
        Alert(
            r.id, r.model, r.rule, r.severity, r.message, orjson.loads(r.details), r.delivered, r.ts
        )
        for r in rows
    ]
