"""Deployments: which model versions a name serves, and how traffic moves between them.

Used as ``ll.deploy(...)``::

    ll.deploy("churn", 3)                                   # direct: serve version 3
    ll.deploy("churn", 4, strategy="canary", steps=[5, 25, 50, 100], window_requests=500)
    ll.deploy("churn", 4, strategy="ab", split=20)          # sticky 80/20 by request key
    ll.deploy("churn", 4, strategy="shadow")                # mirrored, never answers
    ll.deploy("churn", 4, strategy="blue_green")            # switch now, keep 3 warm
    ll.deploy("churn", 4, fallback=3)                       # 3 answers when 4 fails
    rollback("churn", reason="p99 regression"); promote("churn")

Strategies:

* ``direct`` - the version serves everything from the next poll of the model servers;
  the previous one becomes the standby that :func:`rollback` returns to.
* ``blue_green`` - the same switch, and the model servers keep the previous version loaded
  so that :func:`rollback` switches back at once.
* ``ab`` - a fixed ``split`` percent of requests go to the new version; a request with a
  key (``X-Loopline-Key`` header or ``"key"`` field) always lands on the same side (a hash
  of the key); :func:`promote` or :func:`rollback` ends the test.
* ``canary`` - the new version gets ``steps`` percent of traffic in turn; the model
  servers judge each step over a window and promote or roll back automatically, with the
  reason recorded and audited (see :mod:`loopline.serving.policy`).
* ``shadow`` - every request is also sent to the new version after the answer went out;
  its answers are compared and logged, never returned.

A version whose newest gate verdict is not blessed is blocked, and so is one blessed
against another champion than the current one (the verdict is stale: gate it again); a
``fallback`` version, which answers clients too, must not be blocked either. Deploying
such a version needs ``force=True`` and a ``reason``, and the override is audited. Every
change is a new revision of the deployment, recorded in its history and the audit log.

Example:
    >>> # d = ll.deploy("churn", 4, strategy="canary"); d.phase, d.traffic
    >>> # ('canary', 5.0)
"""

from __future__ import annotations

import time
from typing import Any

from loopline.core.context import Context, get_context
from loopline.core.db import reading
from loopline.errors import Conflict, IntegrityError, InvalidInput, NotFound, PermissionDenied
from loopline.serving import store
from loopline.serving.policy import RolloutPolicy, check_options
from loopline.serving.store import Deployment, DeploymentEvent
from loopline.serving.tables import STRATEGIES

__all__ = [
    "Deployment",
    "DeploymentEvent",
    "RolloutPolicy",
    "deploy",
    "deployments_of_version",
    "get_deployment",
    "history",
    "list_deployments",
    "live_window",
    "promote",
    "rollback",
]


def _check_version(ctx: Context, name: str, version: int | str, what: str) -> int:
    from loopline.training import registry_checks, registry_versions

    number = registry_checks.require_version_number(version, field=what)
    registry_versions.get_model_version(ctx, name, number)  # NotFound names model and version
    return number


def _check_loadable(name: str, version: int, role: str = "version", doing: str = "deploy") -> None:
    """Refuse a version whose files the model servers could not load (IntegrityError or
    InvalidInput naming the version and the file or the reason), before the deployment or
    the alias moves; ``doing`` is the move, for the message ("promote", "roll back to").

    Accepted, it would be the deployment every server follows while none can load it: a
    server already running keeps the previous version, a new one serves nothing (503).
    ``force`` does not skip it: it overrides a gate's judgement, not missing bytes. Every
    move that makes a version serve traffic runs it (deploy, promote, a rollback to the
    standby; the model servers check a canary before they promote it on their own); it
    reads and hashes each file of the version (:func:`loopline.training.registry_reads.verify`).
    """
    from loopline.training import registry_reads

    what = f"cannot {doing} {role} {version} of {name!r}: the model servers could not load it"
    try:
        registry_reads.verify(name, version)
    except IntegrityError as exc:
        hint = exc.hint
        if doing != "deploy":  # the way out when the version cannot be repaired at once
            hint = f"{hint}; or deploy a version whose files are intact: loopline deploy {name} N"
        raise IntegrityError(f"{what}: {exc.message}", hint=hint) from exc
    except InvalidInput as exc:  # logged by the MLflow client, or of an unknown flavor
        raise InvalidInput(f"{what}: {exc.message}", field=role.split()[0], hint=exc.hint) from exc


def _gate(
    ctx: Context,
    name: str,
    version: int,
    force: bool,
    reason: str | None,
    role: str = "version",
) -> None:
    """Refuse ``version`` (to serve as ``role``) unless its newest gate verdict blesses it
    against the model's current champion; with ``force`` the override is audited instead.

    A verdict made against another champion than today's is stale: a challenger blessed
    against version 3 says nothing about the version 5 that has served since - unless
    version 5 was forced in past a verdict that blocked it. A fallback version only must
    not be blocked: it answers when the serving version fails, it does not replace it.
    """
    from loopline.delivery.gates import current_champion, latest_verdict

    verdict = latest_verdict(name, version, ctx=ctx)
    if verdict is None:
        return
    what = f"{role} {version} of {name!r}"
    if not verdict.blessed:
        why = "; ".join(verdict.reasons) or "not blessed"
        problem = f"{what} is blocked by its gate verdict #{verdict.id} on {verdict.dataset}: {why}"
        hint = "fix the model and gate it again"
    else:
        if role != "version":
            return  # a fallback is a safety net, not a challenger: it need not beat anyone
        champion = current_champion(name)
        if champion is None or champion in (version, verdict.champion_version):
            return
        own = latest_verdict(name, champion, ctx=ctx)
        if own is not None and not own.blessed:
            return  # a champion forced in past its own gate is no bar to clear
        against = (
            "no champion"
            if verdict.champion_version is None
            else f"version {verdict.champion_version}"
        )
        problem = (
            f"{what} was blessed by gate verdict #{verdict.id} against {against}, but the "
            f"champion is now version {champion}: the verdict is stale"
        )
        hint = (
            f"gate it again against the champion (`loopline gate {name} {version} "
            "--dataset ... --thresholds ...`)"
        )
    if not force:
        raise PermissionDenied(
            problem,
            hint=f"{hint}, or deploy with force=True and a reason (--force --reason ...); "
            "the override is audited",
        )
    with ctx.engine.begin() as conn:
        ctx.audit(
            conn,
            action="deployment.force",
            object_type="model_version",
            object_id=f"{name}/{version}",
            before={
                "verdict_id": verdict.id,
                "blessed": verdict.blessed,
                "reasons": verdict.reasons,
                "champion_version": verdict.champion_version,
            },
            after={"deployed": True, "as": role},
            reason=reason,
        )


def _current(ctx: Context, name: str) -> Deployment | None:
    with reading(ctx.engine) as conn:
        return store.get(conn, name)


def deploy(
    name: str,
    version: int | str,
    strategy: str = "direct",
    fallback: int | str | None = None,
    force: bool = False,
    reason: str | None = None,
    **policy: Any,
) -> Deployment:
    """Serve ``version`` of model ``name`` with a rollout ``strategy``; audited.

    ``policy`` keywords tune the rollout (``steps``, ``split``, ``window_requests``, ...,
    see :class:`RolloutPolicy`); one the strategy does not read is an InvalidInput
    (``split`` is for ``ab``, ``steps`` and the window's checks for ``canary``).
    ``fallback`` names a version that answers when the serving one raises or exceeds
    ``timeout_ms``. The files of both versions must be present and intact in the artifact
    store (their digests are checked, even with ``force``): a version the model servers
    cannot load is refused here, before any traffic or alias moves.

    Example:
        >>> # ll.deploy("churn", 4, strategy="canary", steps=[10, 50, 100], fallback=2)
    """
    ctx = get_context()
    if strategy not in STRATEGIES:
        raise InvalidInput(
            f"unknown strategy {strategy!r}",
            field="strategy",
            hint=f"use one of {', '.join(STRATEGIES)}",
        )
    if force and not (reason and reason.strip()):
        raise InvalidInput(
            "force=True needs a reason",
            field="reason",
            hint="say why the gate is overridden, e.g. reason='hotfix, INC-42'",
        )
    rollout = RolloutPolicy.from_kwargs(policy)
    check_options(strategy, policy)
    number = _check_version(ctx, name, version, "version")
    fallback_number = None if fallback is None else _check_version(ctx, name, fallback, "fallback")
    if fallback_number == number:  # it would answer for itself: no fallback at all
        raise InvalidInput(
            f"fallback version {number} is the version being deployed",
            field="fallback",
            hint="name another version to answer when this one fails, e.g. the current one",
        )
    _check_loadable(name, number)
    if fallback_number is not None:
        _check_loadable(name, fallback_number, "fallback version")
    _gate(ctx, name, number, force, reason)
    if fallback_number is not None:  # it answers clients too, when the version fails
        _gate(ctx, name, fallback_number, force, reason, role="fallback version")
    before = _current(ctx, name)
    now = time.time()
    if before is None:
        if strategy in ("ab", "canary", "shadow"):
            raise InvalidInput(
                f"{name!r} has no deployment yet, so there is nothing to compare a "
                f"{strategy} of version {number} against",
                field="strategy",
                hint=f"deploy a first version directly: ll.deploy({name!r}, {number})",
            )
        after = Deployment.new(name, strategy, number, rollout, fallback_number)
    else:
        if before.candidate_version is not None:
            raise Conflict(
                f"a {before.phase} of version {before.candidate_version} of {name!r} is in "
                "progress",
                hint=f"finish it first: `loopline deployments promote {name}` or "
                f"`loopline deployments rollback {name}`",
            )
        base = before.replace(
            strategy=strategy,
            policy=rollout,
            fallback_version=fallback_number,
            step=0,
            step_started=now,
            status=None,
        )
        if strategy in ("direct", "blue_green"):
            after = base.replace(
                stable_version=number,
                candidate_version=None,
                traffic=0.0,
                standby_version=before.stable_version
                if before.stable_version != number
                else before.standby_version,
            )
        elif number == before.stable_version:
            raise InvalidInput(
                f"version {number} of {name!r} is already the stable version",
                field="version",
                hint="deploy another version",
            )
        else:
            traffic = {"ab": rollout.split, "canary": rollout.steps[0], "shadow": 0.0}[strategy]
            after = base.replace(candidate_version=number, traffic=traffic)
    written = store.save(ctx, before, after, action=f"deploy.{strategy}", reason=reason)
    if written is None:
        raise Conflict(
            f"deployment {name!r} changed while deploying",
            hint="look at it with `loopline deployments show` and try again",
        )
    return written


def get_deployment(name: str) -> Deployment:
    """The deployment of ``name``; NotFound with a hint when there is none.

    Example:
        >>> # ll.serving.deploy.get_deployment("churn").phase
    """
    found = _current(get_context(), name)
    if found is None:
        raise NotFound(
            f"model {name!r} is not deployed",
            hint=f"deploy a version: loopline deploy {name} VERSION",
        )
    return found


def list_deployments() -> list[Deployment]:
    """Every deployment, by name.

    Example:
        >>> # [(d.name, d.stable_version, d.phase) for d in list_deployments()]
    """
    return store.load_all(get_context().engine)


def history(name: str) -> list[DeploymentEvent]:
    """Every change of the deployment of ``name``, oldest first, with reasons and analyses.

    Example:
        >>> # [(e.action, e.reason) for e in history("churn")]
    """
    get_deployment(name)
    return store.events(get_context().engine, name)


def live_window(name: str) -> dict[str, Any] | None:
    """The counters of the current rollout window summed over the model servers, or None.

    Example:
        >>> # live_window("churn")["candidate"]["error_rate"]
    """
    from loopline.serving.canary import WindowStats

    d = get_deployment(name)
    if d.candidate_version is None:
        return None
    parts = store.get_windows(get_context().engine, name, d.revision)
    return WindowStats.merge(parts).summary()


def deployments_of_version(name: str, version: int) -> list[DeploymentEvent]:
    """The events in which ``version`` of ``name`` served or was rolled out (lineage).

    Example:
        >>> # deployments_of_version("churn", 3)[0].action  -> 'deploy.direct'
    """
    ctx = get_context()
    out = []
    for e in store.events(ctx.engine, name):
        state = e.after or {}
        if version in (state.get("stable"), state.get("candidate")):
            out.append(e)
    return out


def _write(
    ctx: Context, before: Deployment, after: Deployment, action: str, reason: str | None
) -> Deployment:
    written = store.save(ctx, before, after, action=action, reason=reason)
    if written is None:
        raise Conflict(
            f"deployment {before.name!r} changed meanwhile (e.g. a canary step)",
            hint="look at it with `loopline deployments show` and try again",
        )
    return written


def rollback(name: str, reason: str | None = None) -> Deployment:
    """Drop the candidate (A/B, canary, shadow), or switch back to the standby version.

    A switch back to the standby first verifies its files as :func:`deploy` does (an
    IntegrityError names the version and the file, and nothing moves). Dropping a candidate
    checks nothing: the stable version keeps serving, it already answers most requests
    from the servers' memory, and a failing candidate must be removable at once.

    Example:
        >>> # rollback("churn", reason="error rate up after the switch")
    """
    ctx = get_context()
    before = get_deployment(name)
    now = time.time()
    if before.candidate_version is not None:
        after = before.replace(
            candidate_version=None,
            traffic=0.0,
            step=0,
            step_started=now,
            status=f"rolled back {before.phase} of version {before.candidate_version}",
        )
    elif before.standby_version is not None:
        # The standby serves everything after the switch: a new or restarted server must
        # be able to load it (a blue/green server's copy in memory does not outlive it).
        _check_loadable(name, before.standby_version, doing="roll back to")
        after = before.replace(
            stable_version=before.standby_version,
            standby_version=before.stable_version,
            step_started=now,
            status=f"switched back from version {before.stable_version}",
        )
    else:
        raise Conflict(
            f"{name!r} has nothing to roll back to: no candidate and no previous version",
            hint="deploy another version instead",
        )
    return _write(ctx, before, after, "rollback", reason)


def promote(name: str, reason: str | None = None) -> Deployment:
    """Make the candidate (A/B, canary, shadow) the stable version now.

    Its files are verified first, as :func:`deploy` does: one corrupted or missing since
    it was deployed is an IntegrityError naming the version and the file, and nothing moves.

    Example:
        >>> # promote("churn", reason="B wins the A/B test")
    """
    ctx = get_context()
    before = get_deployment(name)
    if before.candidate_version is None:
        raise Conflict(
            f"{name!r} has no candidate to promote (it serves version {before.stable_version})",
            hint="deploy a version with a strategy first",
        )
    _check_loadable(name, before.candidate_version, doing="promote")
    after = before.replace(
        stable_version=before.candidate_version,
        standby_version=before.stable_version,
        candidate_version=None,
        traffic=0.0,
        step=0,
        step_started=time.time(),
        status=f"promoted version {before.candidate_version}",
    )
    return _write(ctx, before, after, "promote", reason)
