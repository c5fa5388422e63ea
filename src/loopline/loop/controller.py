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
next pass **takes it up** (:func:`_take_up`) - it records the deployment that went out if
there was one, else an ``interrupted`` event, and starts over without the cooldown (once:
an action interrupted twice in a row waits for the cooldown, so a retraining that kills its
process is not restarted every interval). Under :func:`~loopline.loop.leader.fenced` the
pass checks its leadership before each long step (watch, retrain, gate, deploy), and a
write of a deposed leader is refused (:class:`~loopline.errors.LostLeadership`).

Example:
    >>> # results = run_once(load_policies())
    >>> # [(r.model, r.outcome) for r in results]
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa

from loopline.core.context import Context, get_context
from loopline.core.db import reading
from loopline.errors import LooplineError, LostLeadership
from loopline.loop.leader import still_leading
from loopline.loop.policy import LoopPolicy
from loopline.monitoring.alerts import check_rules, last_details, raise_alert
from loopline.monitoring.drift_results import store_drift
from loopline.monitoring.performance import WindowMetrics, performance
from loopline.monitoring.tables import loop_events, loop_state

log = logging.getLogger("loopline.loop")
ALL = "*"


@dataclass
class LoopResult:
    """What one pass did for one model."""

    model: str
    outcome: str
    message: str
    triggers: list[str] = field(default_factory=list)
    window: dict[str, Any] | None = None
    alert_id: int | None = None
    run_id: str | None = None
    model_version: int | None = None
    verdict_id: int | None = None
    deployment_revision: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The result as plain data.

        Example:
            >>> LoopResult("m", "ok", "no trigger").to_dict()["outcome"]
            'ok'
        """
        return dict(self.__dict__)


# -- state: the kill switch and the cooldown -----------------------------------------------


def _state(ctx: Context, model: str) -> Any:
    with reading(ctx.engine) as conn:
        return conn.execute(sa.select(loop_state).where(loop_state.c.model == model)).first()


def _upsert(ctx: Context, model: str, **values: Any) -> None:
    with ctx.engine.begin() as conn:
        _upsert_in(conn, model, **values)


def _upsert_in(conn: sa.Connection, model: str, **values: Any) -> None:
    values["updated"] = time.time()
    done = conn.execute(
        sa.update(loop_state).where(loop_state.c.model == model).values(**values)
    ).rowcount
    if not done:
        conn.execute(
            sa.insert(loop_state).values(
                model=model,
                paused=values.get("paused", False),
                reason=values.get("reason"),
                last_trigger=values.get("last_trigger"),
                updated=values["updated"],
            )
        )


def pause(model: str = ALL, reason: str | None = None) -> None:
    """Turn the kill switch on for ``model`` (``*``: every model); audited.

    Example:
        >>> # pause("flights", reason="data migration tonight")
    """
    ctx = get_context()
    _upsert(ctx, model, paused=True, reason=reason)
    with ctx.engine.begin() as conn:
        ctx.audit(conn, action="loop.pause", object_type="loop", object_id=model, reason=reason)


def resume(model: str = ALL, reason: str | None = None) -> None:
    """Turn the kill switch off for ``model`` (``*``: the global switch); audited.

    Example:
        >>> # resume("flights")
    """
    ctx = get_context()
    _upsert(ctx, model, paused=False, reason=reason)
    with ctx.engine.begin() as conn:
        ctx.audit(conn, action="loop.resume", object_type="loop", object_id=model, reason=reason)


def is_paused(model: str, ctx: Context | None = None) -> bool:
    """Whether the loop is paused for ``model`` (or globally).

    Example:
        >>> # is_paused("flights")
    """
    ctx = ctx or get_context()
    return any((row := _state(ctx, name)) is not None and bool(row.paused) for name in (ALL, model))


def record(
    ctx: Context,
    model: str,
    kind: str,
    message: str,
    *,
    state: dict[str, Any] | None = None,
    **links: Any,
) -> int:
    """Append a loop event (and its audit event) with its links; return its id.

    ``state`` sets columns of the model's ``loop_state`` row (``last_trigger``: the
    cooldown) in the same transaction, so a pass stopped between the two cannot leave a
    cooldown without the event that explains it.

    Example:
        >>> # record(ctx, "flights", "trigger", "temp drifted", alert_id=3)
    """
    details = {"message": message, **links.pop("details", {})}
    cols = {k: links.get(k) for k in ("alert_id", "run_id", "model_version", "verdict_id")}
    cols["deployment_revision"] = links.get("deployment_revision")
    with ctx.engine.begin() as conn:
        new_id = conn.execute(
            sa.insert(loop_events)
            .values(
                model=model,
                ts=time.time(),
                kind=kind,
                details=orjson.dumps(details, option=orjson.OPT_SERIALIZE_NUMPY).decode(),
                **cols,
            )
            .returning(loop_events.c.id)
        ).scalar_one()
        ctx.audit(
            conn,
            action=f"loop.{kind}",
            object_type="model",
            object_id=model,
            after={"loop_event": new_id, **{k: v for k, v in cols.items() if v is not None}},
            reason=message,
        )
        if state is not None:
            _upsert_in(conn, model, **state)
    return int(new_id)


def events(model: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """The loop's newest events (of ``model``), oldest first, with their links.

    Example:
        >>> # [(e["kind"], e["model_version"]) for e in events("flights")]
    """
    q = sa.select(loop_events).order_by(loop_events.c.id.desc()).limit(limit)
    if model is not None:
        q = q.where(loop_events.c.model == model)
    with reading(get_context().engine) as conn:
        rows = conn.execute(q).all()
    out = []
    for r in reversed(rows):
        item = dict(r._mapping)
        item["details"] = orjson.loads(item["details"])
        out.append(item)
    return out


# -- watching ------------------------------------------------------------------------------


def _reference(policy: LoopPolicy, version: int) -> str | None:
    """The drift reference: the ``reference`` dataset version the stable model read."""
    from loopline.data import datasets
    from loopline.training import registry_reads

    if policy.reference is None:
        return None
    for item in registry_reads.get(policy.model, version).datasets:
        if item.name == policy.reference:
            return f"{item.name}@{item.version}"
    return datasets.get(policy.reference).ref


def _features(policy: LoopPolicy, version: int) -> list[str] | None:
    """The columns to test for drift: the policy's ``features``, else the registered
    signature's, else None (every column of the reference).

    Not :attr:`~loopline.training.models.LoadedModel.input_columns`: for a model logged
    without an input example the names it was fitted on live only in the model file, and
    loading (reading, hashing and unpickling) every version on each pass of the loop to
    read them is not worth it; docs/monitoring.md tells such a model's policy to list its
    ``features``.

    Example:
        >>> # _features(policy, 3)  -> ['tenure', 'spend']
    """
    from loopline.training import registry_reads

    if policy.features:
        return list(policy.features)
    signature = registry_reads.get(policy.model, version).signature
    return None if signature is None else list(signature.names or [])


def watch(policy: LoopPolicy, version: int) -> tuple[WindowMetrics | None, list[str]]:
    """The newest window of the stable ``version`` and the triggers it fires.

    Example:
        >>> # window, triggers = watch(policy, 3)
    """
    m = policy.monitor
    features = _features(policy, version)
    ref = _reference(policy, version) if m.drift.enabled else None
    windows = performance(
        policy.model,
        window=10**9,
        last=m.window_requests,
        reference=ref,
        features=features,
        positive=policy.gate.thresholds.get("positive"),  # the class the gate scores
    )
    mine = [w for w in windows if w.version == str(version)]
    if mine and ref is not None and (mine[-1].drift_scores or mine[-1].drifted):
        store_drift(policy.model, mine[-1], ref)  # a window of broken features only, too
    if not mine or mine[-1].rows < m.min_rows:
        return (mine[-1] if mine else None), []
    w = mine[-1]
    triggers = []
    if ref is not None:
        drifted = [c for c in w.drifted if features is None or c in features]
        # The window's sketch holds the features only; its share counts a missing feature
        # once, as drifted (it was drifted / tested, which could pass 1).
        share = w.value("drift_share")
        if m.drift.share is None and drifted:
            # each with why: "spend (broken: all null in current)", "temp (wasserstein ...)"
            why = [f"{c} ({w.drift_notes[c]})" if c in w.drift_notes else c for c in drifted]
            triggers.append(f"drift in {', '.join(why)}")
        elif m.drift.share is not None:
            # As DriftReport.trigger(share=...): a feature missing from the traffic, or
            # broken in it (all null, another type), triggers whatever the share; in a wide
            # model one dead feature is too few for a share, and it is the worst drift.
            dead = [c for c in drifted if _dead(w.drift_notes.get(c))]
            if share is not None and share >= m.drift.share:
                total = len(w.drift_scores.keys() | set(w.drifted))
                triggers.append(f"drift in {len(drifted)}/{total} features")
            elif dead:
                said = ", ".join(f"{c} ({w.drift_notes[c]})" for c in dead)
                triggers.append(f"drift in {said}")
    if w.labelled >= m.min_labels:
        for metric, floor in m.floors.items():
            value = w.value(metric)
            if value is not None and value < floor:
                triggers.append(f"{metric} {value:.3f} < floor {floor:g}")
    for metric, ceiling in m.ceilings.items():
        value = w.value(metric)
        if value is not None and value > ceiling:
            triggers.append(f"{metric} {value:.3g} > ceiling {ceiling:g}")
    return w, triggers


def _dead(note: str | None) -> bool:
    """Whether a drift note says the feature is missing or broken, not just drifted.

    Example:
        >>> _dead("broken: all null in current"), _dead("ks p=0.001 < 0.05")
        (True, False)
    """
    from loopline.monitoring.report import BROKEN, MISSING

    return note is not None and (note == MISSING or note.startswith(f"{BROKEN}:"))


# -- acting --------------------------------------------------------------------------------


def _trained_on_newest(policy: LoopPolicy, version: int) -> str | None:
    """The newest ``data`` version if the serving version was already trained on it."""
    from loopline.data import datasets
    from loopline.training import registry_reads

    newest = datasets.get(policy.data)
    for item in registry_reads.get(policy.model, version).datasets:
        if item.name == newest.name and str(item.version) == str(newest.version):
            return newest.ref
    return None


def _register(policy: LoopPolicy, result: Any) -> Any:
    from loopline.training import registry, registry_model_version

    if isinstance(result, registry_model_version.ModelVersion):
        return result
    return registry.register(result, policy.model, description="retrained by the loop")


#: Events after which a pass still had work to do: a later pass that finds one of them last
#: knows the pass that wrote it stopped half-way.
IN_PROGRESS = ("trigger", "retrain", "gate")


def _take_up(ctx: Context, policy: LoopPolicy, deployment: Any) -> None:
    """Close the action a stopped pass left half-done, if the model's last event is one.

    A pass runs its steps one after another and each pass of one leader starts after the
    previous one ended, so the action is not running any more: its process stopped, or
    lost the loop lock and its writes are refused. The deployment it made, if its ``deploy``
    event was lost, is recorded (the follow-up then watches it as usual); otherwise an
    ``interrupted`` event closes the action and the cooldown is lifted so the triggers can
    act again - unless the action before was interrupted too.
    """
    from loopline.serving.store import events as deployment_events

    history = events(policy.model, limit=len(IN_PROGRESS) + 1)
    if not history or history[-1]["kind"] not in IN_PROGRESS:
        return
    e = history[-1]
    before = [h["kind"] for h in history if h["kind"] not in IN_PROGRESS]
    version = e["model_version"]
    links = {k: e[k] for k in ("alert_id", "run_id", "model_version", "verdict_id")}
    if e["kind"] == "gate" and version is not None:
        for change in deployment_events(ctx.engine, policy.model):
            after = change.after or {}
            if (
                change.ts >= e["ts"]
                and change.action.startswith("deploy.")
                and version in (after.get("candidate"), after.get("stable"))
            ):
                msg = (
                    f"{change.action.removeprefix('deploy.')} of version {version} started "
                    f"(revision {change.revision}) by a pass that stopped before recording it"
                )
                links["deployment_revision"] = change.revision
                record(ctx, policy.model, "deploy", msg, **links)
                return
    again = bool(before) and before[-1] == "interrupted"
    msg = (
        f"the pass acting on this model stopped after its {e['kind']!r} event (its process lost "
        "the loop lock, died, or failed)"
        + ("; the action before was interrupted too, so the cooldown stays" if again else "")
    )
    record(
        ctx,
        policy.model,
        "interrupted",
        msg,
        state=None if again else {"last_trigger": None},
        **links,
    )


def _follow_up(ctx: Context, policy: LoopPolicy, deployment: Any) -> LoopResult | None:
    last = [
        e
        for e in events(policy.model, limit=20)
        if e["kind"] in ("deploy", "promoted", "rolled_back")
    ]
    if not last or last[-1]["kind"] != "deploy" or deployment.candidate_version is not None:
        return None
    e = last[-1]
    version = e["model_version"]
    links = {
        "model_version": version,
        "alert_id": e["alert_id"],
        "run_id": e["run_id"],
        "verdict_id": e["verdict_id"],
        "deployment_revision": deployment.revision,
    }
    if deployment.stable_version == version:
        msg = f"version {version} promoted by the rollout ({deployment.status or 'promoted'})"
        record(ctx, policy.model, "promoted", msg, **links)
        return LoopResult(policy.model, "promoted", msg, **links)
    msg = f"the rollout of version {version} was rolled back: {deployment.status}"
    alert = raise_alert(
        policy.model,
        "rollout rolled back",
        msg,
        webhook=policy.webhook,
        details={"model_version": version},
        ctx=ctx,
    )
    links["alert_id"] = alert.id
    record(ctx, policy.model, "rolled_back", msg, **links)
    return LoopResult(policy.model, "rolled_back", msg, **links)


def _act(
    ctx: Context, policy: LoopPolicy, window: WindowMetrics, triggers: list[str]
) -> LoopResult:
    from loopline.data import datasets
    from loopline.delivery import gates
    from loopline.serving.deploy import deploy

    model = policy.model
    why = "; ".join(triggers)
    alert = raise_alert(
        model,
        "loop trigger",
        f"retraining {model}: {why}",
        details={"triggers": triggers, "window": window.to_dict()},
        webhook=policy.webhook,
        ctx=ctx,
    )
    res = LoopResult(model, "triggered", why, triggers, window.to_dict(), alert_id=alert.id)
    record(
        ctx,
        model,
        "trigger",
        why,
        state={"last_trigger": time.time()},
        alert_id=alert.id,
        details={"triggers": triggers},
    )
    data = datasets.get(policy.data)
    still_leading()
    try:
        mv = _register(policy, policy.pipeline_function()(data))
    except LooplineError:
        raise
    except Exception as exc:
        msg = f"the retraining pipeline failed on {data.ref}: {type(exc).__name__}: {exc}"
        failed = raise_alert(
            model, "retraining failed", msg, severity="critical", webhook=policy.webhook, ctx=ctx
        )
        record(ctx, model, "failed", msg, alert_id=failed.id)
        res.outcome, res.message = "failed", msg
        return res
    res.run_id, res.model_version = mv.run_id, mv.version
    record(
        ctx,
        model,
        "retrain",
        f"trained version {mv.version} on {data.ref}",
        alert_id=alert.id,
        run_id=mv.run_id,
        model_version=mv.version,
        details={"dataset": data.ref},
    )
    holdout = datasets.get(policy.gate.dataset)
    still_leading()
    verdict = gates.evaluate(model, mv.version, holdout.ref, policy.gate.thresholds)
    res.verdict_id = verdict.id
    links = {
        "alert_id": alert.id,
        "run_id": mv.run_id,
        "model_version": mv.version,
        "verdict_id": verdict.id,
    }
    if not verdict.blessed:
        msg = f"the gate blocked version {mv.version}: {'; '.join(verdict.reasons)}"
        blocked = raise_alert(
            model,
            "challenger blocked",
            msg,
            severity="critical",
            details={"verdict_id": verdict.id, "metrics": verdict.metrics},
            webhook=policy.webhook,
            ctx=ctx,
        )
        record(ctx, model, "blocked", msg, **{**links, "alert_id": blocked.id})
        res.outcome, res.message, res.alert_id = "blocked", msg, blocked.id
        return res
    record(ctx, model, "gate", f"version {mv.version} blessed on {holdout.ref}", **links)
    still_leading()
    d = deploy(
        model,
        mv.version,
        strategy=policy.rollout.strategy,
        reason=f"loop: {why}",
        **policy.rollout.options,
    )
    res.deployment_revision = d.revision
    msg = f"{policy.rollout.strategy} of version {mv.version} started ({d.phase}, {d.traffic:g}%)"
    record(ctx, model, "deploy", msg, deployment_revision=d.revision, **links)
    res.outcome, res.message = "deployed", msg
    return res


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
