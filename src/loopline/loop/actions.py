"""What a pass does to a model besides watching it, and what it reports
(:class:`LoopResult`): following up the loop's last rollout (promoted or rolled back),
taking up the action a stopped pass left half-done, and acting on a trigger - retrain,
register, gate and deploy.

Separate from :mod:`loopline.loop.controller`, which decides which of these a pass runs
(the kill switch, a rollout in progress, the cooldown, whether newer data exists): each
action here records its steps as loop events (:mod:`loopline.loop.records`).

Example:
    >>> LoopResult("m", "deployed", "canary of version 2 started").outcome
    'deployed'
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from loopline.core.context import Context
from loopline.errors import LooplineError
from loopline.loop.leader import still_leading
from loopline.loop.policy import LoopPolicy
from loopline.loop.records import events, record
from loopline.monitoring.alerts import raise_alert
from loopline.monitoring.performance import WindowMetrics


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
