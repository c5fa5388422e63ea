"""The loop controller: monitoring -> retraining -> gate -> canary, with no person involved.

One pass (:func:`run_once`, ``loopline loop once``) does, for every policy:

1. **follow up** the loop's last rollout: if the model servers promoted or rolled back
   the canary, record it (a rollback also raises an alert);
2. skip the model when the kill switch is on (``loopline loop pause``), it is not
   deployed, or a rollout is in progress;
3. **watch**: the newest ``window_requests`` logged predictions of the stable version,
   joined with the labels that arrived: drift of the model's features against the data
   it was trained on (from the model version's lineage), and live metrics against their
   floors;
4. **act** when a trigger fires and the cooldown has passed: raise an alert, run the
   retraining pipeline on the newest data version, register the model, gate it on the
   newest held-out data, and deploy a blessed challenger with the policy's rollout
   (a canary that the model servers promote or roll back on their own). A challenger the
   gate blocks is not deployed; an alert says why.

Every step is a row of ``loop_events`` linking the alert, the pipeline run, the model
version, the gate verdict and the deployment revision, and an audit event.

A pass that stopped half-way (its process lost the loop lock to another one, or died, or
the database failed it) leaves its last event a ``trigger``, ``retrain`` or ``gate``: the
next pass **takes it up** (:func:`~.actions._take_up`) - it records the deployment that went out if
there was one, else an ``interrupted`` event, and starts over without the cooldown (once:
an action interrupted twice in a row waits for the cooldown, so a retraining that kills its
process is not restarted every interval). Under :func:`~loopline.loop.leader.fenced` the
pass checks its leadership before each long step (watch, retrain, gate, deploy), and a
write of a deposed leader is refused (:class:`~loopline.errors.LostLeadership`).

The pieces: this module decides what a pass does for each model; :mod:`loopline.loop.records`
holds the kill switch, the cooldown and the event log (:func:`pause` and :func:`resume` are
imported from there), :mod:`loopline.loop.watching` the window and its triggers, and
:mod:`loopline.loop.actions` the follow-up, the take-up and the action itself.

Example:
    >>> # results = run_once(load_policies())
    >>> # [(r.model, r.outcome) for r in results]
"""

from __future__ import annotations

import logging
import time
from typing import Any

from loopline.core.context import Context, get_context
from loopline.errors import LooplineError, LostLeadership
from loopline.loop.actions import (
    LoopResult,
    _act,
    _follow_up,
    _take_up,
    _trained_on_newest,
)
from loopline.loop.leader import still_leading
from loopline.loop.policy import LoopPolicy
from loopline.loop.records import _state, events, is_paused, pause, record, resume
from loopline.loop.watching import watch
from loopline.monitoring.alerts import check_rules, last_details, raise_alert

__all__ = ["pause", "resume", "run_forever", "run_once", "run_policy", "status"]

log = logging.getLogger("loopline.loop")


def run_policy(policy: LoopPolicy, ctx: Context | None = None) -> LoopResult:
    """One pass of the loop for one model.

    Example:
        >>> # run_policy(policy).outcome  -> 'ok', 'deployed', 'blocked', ...
    """
    from loopline.errors import NotFound
    from loopline.serving.deploy import get_deployment

    ctx = ctx or get_context()
    model = policy.model
    still_leading()
    if is_paused(model, ctx):
        return LoopResult(model, "paused", "the kill switch is on (loopline loop resume)")
    try:
        d = get_deployment(model)
    except NotFound:
        return LoopResult(model, "idle", f"{model!r} is not deployed")
    _take_up(ctx, policy, d)
    followed = _follow_up(ctx, policy, d)
    if followed is not None:
        return followed
    if d.candidate_version is not None:
        return LoopResult(
            model,
            "rollout",
            f"a {d.phase} of version {d.candidate_version} is in progress ({d.traffic:g}%)",
        )
    still_leading()
    window, triggers = watch(policy, d.stable_version)
    summary = None if window is None else window.to_dict()
    if window is not None and policy.alerts:
        for b in check_rules(policy.alerts, [window]):
            if last_details(model, b.rule.label, ctx) == {"window": summary}:
                continue  # this very window was alerted on already: one page per breach
            raise_alert(
                model,
                b.rule.label,
                f"{b.rule.metric} = {b.value:.4g} ({b.rule.label})",
                severity=b.rule.severity,
                webhook=policy.webhook,
                details={"window": summary},
                ctx=ctx,
            )
    if not triggers:
        msg = (
            "not enough traffic yet"
            if window is None or window.rows < policy.monitor.min_rows
            else "no trigger"
        )
        return LoopResult(model, "ok", msg, window=summary)
    state = _state(ctx, model)
    last = None if state is None else state.last_trigger
    if last is not None and time.time() - last < policy.cooldown_seconds:
        wait = policy.cooldown_seconds - (time.time() - last)
        msg = f"{'; '.join(triggers)} - cooling down for {wait:.0f} s more"
        return LoopResult(model, "cooldown", msg, triggers, summary)
    stale = _trained_on_newest(policy, d.stable_version)
    if stale is not None:
        msg = f"{'; '.join(triggers)} - but version {d.stable_version} already trained on {stale}"
        alert = raise_alert(model, "no newer data", msg, webhook=policy.webhook, ctx=ctx)
        record(
            ctx, model, "no_new_data", msg, state={"last_trigger": time.time()}, alert_id=alert.id
        )
        return LoopResult(model, "no_new_data", msg, triggers, summary, alert_id=alert.id)
    return _act(ctx, policy, window, triggers)  # type: ignore[arg-type]


def run_once(policies: list[LoopPolicy], model: str | None = None) -> list[LoopResult]:
    """One pass over every policy (or ``model``'s); an error in one model's pass is
    recorded and alerted, and the others still run.

    Example:
        >>> # [(r.model, r.outcome) for r in run_once(load_policies())]
    """
    ctx = get_context()
    out = []
    for policy in policies:
        if model is not None and policy.model != model:
            continue
        try:
            out.append(run_policy(policy, ctx))
        except LostLeadership:
            raise  # the whole pass stops: another process leads now (and records nothing)
        except LooplineError as exc:
            msg = f"{type(exc).__name__}: {exc.message}"
            record(ctx, policy.model, "error", msg)
            out.append(LoopResult(policy.model, "error", msg))
    return out


def status(policies: list[LoopPolicy]) -> list[dict[str, Any]]:
    """Per model: the kill switch, the cooldown, the deployment and the last loop events.

    Example:
        >>> # status(load_policies())[0]["paused"]
    """
    from loopline.errors import NotFound
    from loopline.serving.deploy import get_deployment

    ctx = get_context()
    out = []
    for p in policies:
        state = _state(ctx, p.model)
        last = None if state is None else state.last_trigger
        left = 0.0 if last is None else max(0.0, p.cooldown_seconds - (time.time() - last))
        try:
            d = get_deployment(p.model).summary()
        except NotFound:
            d = None
        out.append(
            {
                "model": p.model,
                "paused": is_paused(p.model, ctx),
                "last_trigger": last,
                "cooldown_left_s": round(left, 1),
                "deployment": d,
                "events": events(p.model, limit=5),
                "policy": p.source,
            }
        )
    return out


def run_forever(policies: list[LoopPolicy], interval: float = 60.0, stop: Any = None) -> None:
    """Run a pass every ``interval`` seconds, as the store's loop leader, until ``stop``
    (a threading.Event) is set (see :class:`loopline.loop.runner.LoopRunner`).

    Example:
        >>> # run_forever(load_policies(), interval=300)
    """
    import threading

    from loopline.loop.runner import LoopRunner

    LoopRunner(policies, interval, stop=stop or threading.Event()).run()
