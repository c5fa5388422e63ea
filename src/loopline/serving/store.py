"""SQL for deployments, their events, canary windows and labels handed between workers.

Rows leave as plain dataclasses (or tuples).

Every change is a compare-and-set on the deployment's ``revision``: a writer that read
revision 7 writes revision 8 only if the row still says 7, so two model-server workers
judging the same canary step, or a person rolling back while a step is promoted, never
both win. Each change appends a ``deployment_events`` row and an audit event in the same
transaction.

Example:
    >>> import tempfile, loopline
    >>> ctx = loopline.init(uri="sqlite:///:memory:", artifacts=tempfile.mkdtemp())
    >>> d = Deployment.new("churn", "direct", 1, RolloutPolicy())
    >>> save(ctx, None, d, action="deploy", reason=None).revision
    1
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from loopline.core.context import Context
from loopline.core.db import reading
from loopline.errors import Conflict
from loopline.serving.policy import RolloutPolicy
from loopline.serving.tables import canary_windows, deployment_events, deployments, feedback_labels


@dataclass(frozen=True)
class Deployment:
    """What a model name serves: its stable version and any candidate being rolled out.

    ``traffic`` is the candidate's percent of requests (A/B, canary); ``standby_version``
    the version a rollback switches back to (blue/green, direct); ``phase`` is ``stable``
    when there is no candidate, else the strategy (``ab``, ``canary``, ``shadow``).
    """

    name: str
    strategy: str
    stable_version: int
    candidate_version: int | None
    standby_version: int | None
    fallback_version: int | None
    traffic: float
    step: int
    step_started: float
    policy: RolloutPolicy
    status: str | None
    revision: int
    created: float
    updated: float

    @classmethod
    def new(
        cls,
        name: str,
        strategy: str,
        version: int,
        policy: RolloutPolicy,
        fallback: int | None = None,
    ) -> Deployment:
        """A first deployment of ``name`` serving ``version``.

        Example:
            >>> Deployment.new("churn", "direct", 3, RolloutPolicy()).phase
            'stable'
        """
        now = time.time()
        return cls(
            name, strategy, version, None, None, fallback, 0.0, 0, now, policy, None, 0, now, now
        )

    @property
    def phase(self) -> str:
        """``stable`` without a candidate, else ``ab``, ``canary`` or ``shadow``.

        Example:
            >>> Deployment.new("m", "canary", 1, RolloutPolicy()).phase
            'stable'
        """
        return "stable" if self.candidate_version is None else self.strategy

    def versions(self) -> list[int]:
        """The versions model servers keep loaded: stable, candidate, fallback, and the
        standby of a blue/green switch (so that switching back is instant).

        Example:
            >>> Deployment.new("churn", "direct", 3, RolloutPolicy(), fallback=1).versions()
            [3, 1]
        """
        standby = self.standby_version if self.strategy == "blue_green" else None
        out = [self.stable_version]
        for v in (self.candidate_version, standby, self.fallback_version):
            if v is not None and v not in out:
                out.append(v)
        return out

    def replace(self, **changes: Any) -> Deployment:
        """A copy with ``changes`` applied.

        Example:
            >>> d = Deployment.new("m", "direct", 1, RolloutPolicy())
            >>> d.replace(stable_version=2).stable_version
            2
        """
        return dataclasses.replace(self, **changes)

    def summary(self) -> dict[str, Any]:
        """The routing facts (for events and the audit log).

        Example:
            >>> Deployment.new("m", "direct", 1, RolloutPolicy()).summary()["stable"]
            1
        """
        return {
            "strategy": self.strategy,
            "phase": self.phase,
            "stable": self.stable_version,
            "candidate": self.candidate_version,
            "traffic": self.traffic,
            "standby": self.standby_version,
            "fallback": self.fallback_version,
            "step": self.step,
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON.

        Example:
            >>> Deployment.new("m", "direct", 1, RolloutPolicy()).to_dict()["name"]
            'm'
        """
        return {
            "name": self.name,
            **self.summary(),
            "policy": self.policy.model_dump(),
            "status": self.status,
            "revision": self.revision,
            "created": self.created,
            "updated": self.updated,
            "step_started": self.step_started,
        }


@dataclass(frozen=True)
class DeploymentEvent:
    """One change of a deployment: who, when, what, why, and the analysis behind it."""

    id: int
    name: str
    revision: int
    ts: float
    actor: str
    action: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    reason: str | None
    analysis: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON.

        Example:
            >>> DeploymentEvent(1, "m", 1, 0.0, "ci", "deploy", None, None, None, None
            ...                 ).to_dict()["action"]
            'deploy'
        """
        return dataclasses.asdict(self)


def _from_row(r: Any) -> Deployment:
    return Deployment(
        name=r.name,
        strategy=r.strategy,
        stable_version=r.stable_version,
        candidate_version=r.candidate_version,
        standby_version=r.standby_version,
        fallback_version=r.fallback_version,
        traffic=float(r.traffic),
        step=r.step,
        step_started=float(r.step_started),
        policy=RolloutPolicy.model_validate_json(r.policy),
        status=r.status,
        revision=r.revision,
        created=float(r.created),
        updated=float(r.updated),
    )


def _values(d: Deployment) -> dict[str, Any]:
    return {
        "strategy": d.strategy,
        "stable_version": d.stable_version,
        "candidate_version": d.candidate_version,
        "standby_version": d.standby_version,
        "fallback_version": d.fallback_version,
        "traffic": d.traffic,
        "step": d.step,
        "step_started": d.step_started,
        "policy": d.policy.to_json(),
        "status": d.status,
        "updated": d.updated,
    }


def get(conn: Connection, name: str) -> Deployment | None:
    """The deployment of ``name``, or None.

    Example:
        >>> # with reading(ctx.engine) as conn: get(conn, "churn")
    """
    row = conn.execute(sa.select(deployments).where(deployments.c.name == name)).one_or_none()
    return None if row is None else _from_row(row)


def load_all(engine: Engine) -> list[Deployment]:
    """Every deployment, by name.

    Example:
        >>> # [d.name for d in load_all(ctx.engine)]
    """
    with reading(engine) as conn:
        rows = conn.execute(sa.select(deployments).order_by(deployments.c.name)).all()
    return [_from_row(r) for r in rows]


def revisions(engine: Engine) -> dict[str, int]:
    """Name -> revision of every deployment: the cheap query model servers poll.

    Example:
        >>> # revisions(ctx.engine) -> {"churn": 7}
    """
    with reading(engine) as conn:
        rows = conn.execute(sa.select(deployments.c.name, deployments.c.revision)).all()
    return {r.name: int(r.revision) for r in rows}


def save(
    ctx: Context,
    before: Deployment | None,
    after: Deployment,
    *,
    action: str,
    reason: str | None,
    actor: str | None = None,
    analysis: dict[str, Any] | None = None,
) -> Deployment | None:
    """Write ``after`` if the stored row is still ``before``; None when another writer won.

    Appends the event and the audit entry in the same transaction. ``before=None`` creates
    the deployment (:class:`Conflict` if it was created meanwhile).

    Example:
        >>> # save(ctx, current, current.replace(traffic=25.0), action="canary.step", reason=..)
    """
    if reason is not None and "\x00" in reason:
        from loopline.core.text import check_no_nul

        check_no_nul(reason, "reason")  # before the event row, which PostgreSQL would refuse
    now = time.time()
    who = actor or ctx.settings.actor_name
    revision = 1 if before is None else before.revision + 1
    written = after.replace(revision=revision, updated=now)
    try:
        with ctx.engine.begin() as conn:
            if before is None:
                conn.execute(
                    deployments.insert().values(
                        name=after.name, revision=revision, created=now, **_values(written)
                    )
                )
            else:
                result = conn.execute(
                    deployments.update()
                    .where(
                        (deployments.c.name == after.name)
                        & (deployments.c.revision == before.revision)
                    )
                    .values(revision=revision, **_values(written))
                )
                if result.rowcount != 1:
                    return None
            prior = None if before is None else before.summary()
            moves_champion = written.stable_version != (
                None if before is None else before.stable_version
            )
            named = _newly_named(before, written)
            if (moves_champion or named) and _lock_model(conn, after.name):
                _check_versions_exist(conn, after.name, named)
            conn.execute(
                deployment_events.insert().values(
                    name=after.name,
                    revision=revision,
                    ts=now,
                    actor=who,
                    action=action,
                    before=None if prior is None else orjson.dumps(prior).decode(),
                    after=orjson.dumps(written.summary()).decode(),
                    reason=reason,
                    analysis=None
                    if analysis is None
                    else orjson.dumps(analysis, option=orjson.OPT_SERIALIZE_NUMPY).decode(),
                )
            )
            ctx.audit(
                conn,
                actor=who,
                action=f"deployment.{action}",
                object_type="deployment",
                object_id=after.name,
                before=prior,
                after=written.summary(),
                reason=reason,
            )
            if moves_champion:
                _follow_champion(ctx, conn, written, action, who)
    except SAIntegrityError as exc:
        raise Conflict(
            f"deployment {after.name!r} was created by another writer meanwhile",
            hint="look at it with `loopline deployments show` and try again",
        ) from exc
    return written


def _lock_model(conn: Connection, name: str) -> bool:
    """Lock the registered model's row before the audit head, the order every registry
    writer takes them in (:func:`registry_models.lock_model`): moving ``champion`` after
    the audit event would otherwise deadlock with a person moving the alias. False when
    the registry has no such model (only the low-level store writes such deployments)."""
    from loopline.training import registry_models

    return registry_models.lock_model(conn, name)


def _newly_named(before: Deployment | None, after: Deployment) -> set[int]:
    """The versions ``after`` serves in some role that ``before`` named in none."""

    def named(d: Deployment | None) -> set[int]:
        if d is None:
            return set()
        roles = (d.stable_version, d.candidate_version, d.standby_version, d.fallback_version)
        return {v for v in roles if v is not None}

    return named(after) - named(before)


def _check_versions_exist(conn: Connection, name: str, versions: set[int]) -> None:
    """Conflict when a version the deployment is about to serve was deleted meanwhile.

    ``deploy`` checks its versions exist before this transaction; a delete that ran in
    between (it holds the same model lock, and refuses versions a committed deployment
    names) would leave the deployment naming a version no model server can load.
    """
    from loopline.training import registry_versions

    for version in sorted(versions):
        if not registry_versions.version_exists(conn, name, version):
            raise Conflict(
                f"version {version} of {name!r} was deleted while it was being deployed",
                hint=f"deploy an existing version; see `loopline models show {name}`",
            )


def _follow_champion(ctx: Context, conn: Connection, d: Deployment, action: str, who: str) -> None:
    """Point the model's ``champion`` alias at the version now serving as stable.

    The gates judge a challenger against ``champion``, so once a canary is promoted (or a
    blue/green switch is rolled back) the next challenger must be compared with what
    really serves, not with the model that was replaced. Same transaction as the
    deployment change, so the alias never disagrees with the deployment. A deployment of a
    version the registry does not know (only the low-level store allows it) moves nothing.
    """
    # Imported here: the model server imports this module and must start fast.
    from loopline.training import registry_aliases, registry_versions

    if not registry_versions.version_exists(conn, d.name, d.stable_version):
        return
    registry_aliases.move_alias(
        ctx,
        conn,
        d.name,
        "champion",
        d.stable_version,
        reason=f"serves as the stable version of deployment {d.name!r} after {action}",
        actor=who,
    )


def set_status(engine: Engine, name: str, revision: int, status: str) -> None:
    """Record a human-readable status (e.g. why a step waits) without a new revision.

    Example:
        >>> # set_status(ctx.engine, "churn", 7, "waiting: 12/50 requests")
    """
    with engine.begin() as conn:
        conn.execute(
            deployments.update()
            .where((deployments.c.name == name) & (deployments.c.revision == revision))
            .values(status=status)
        )


def events(engine: Engine, name: str) -> list[DeploymentEvent]:
    """The history of ``name``, oldest first.

    Example:
        >>> # [e.action for e in events(ctx.engine, "churn")]
    """
    with reading(engine) as conn:
        rows = conn.execute(
            sa.select(deployment_events)
            .where(deployment_events.c.name == name)
            .order_by(deployment_events.c.id)
        ).all()
    return [
        DeploymentEvent(
            r.id,
            r.name,
            r.revision,
            r.ts,
            r.actor,
            r.action,
            None if r.before is None else orjson.loads(r.before),
            None if r.after is None else orjson.loads(r.after),
            r.reason,
            None if r.analysis is None else orjson.loads(r.analysis),
        )
        for r in rows
    ]


def put_window(engine: Engine, name: str, revision: int, worker: str, stats: bytes) -> None:
    """Store one worker's counters for one revision of a deployment (replacing them).

    Example:
        >>> # put_window(ctx.engine, "churn", 7, "host-123", stats_json_bytes)
    """
    key = (
        (canary_windows.c.name == name)
        & (canary_windows.c.revision == revision)
        & (canary_windows.c.worker == worker)
    )
    text = stats.decode()
    now = time.time()
    with engine.begin() as conn:
        updated = conn.execute(canary_windows.update().where(key).values(stats=text, updated=now))
        if updated.rowcount == 0:
            conn.execute(
                canary_windows.insert().values(
                    name=name, revision=revision, worker=worker, stats=text, updated=now
                )
            )


def get_windows(engine: Engine, name: str, revision: int) -> list[dict[str, Any]]:
    """Every worker's counters for one revision of a deployment.

    Example:
        >>> # get_windows(ctx.engine, "churn", 7)
    """
    with reading(engine) as conn:
        rows = conn.execute(
            sa.select(canary_windows.c.stats).where(
                (canary_windows.c.name == name) & (canary_windows.c.revision == revision)
            )
        ).all()
    return [orjson.loads(r.stats) for r in rows]


def prune_windows(engine: Engine, name: str, below: int) -> None:
    """Drop counters of revisions older than ``below`` (they were judged already).

    Example:
        >>> # prune_windows(ctx.engine, "churn", 7)
    """
    with engine.begin() as conn:
        conn.execute(
            canary_windows.delete().where(
                (canary_windows.c.name == name) & (canary_windows.c.revision < below)
            )
        )


#: A label as ``/feedback`` reads it: (request id, row or None, label).
Label = tuple[str, int | None, Any]
#: A label handed over by another worker: (id, deployment name, revision, request id, row
#: or None, label).
HandedOff = tuple[int, str, int, str, int | None, Any]


def hand_off_labels(
    engine: Engine, name: str, revision: int, worker: str, labels: Sequence[Label]
) -> None:
    """Store labels ``worker`` received for revision ``revision`` of deployment ``name`` but
    did not answer the request of, for the worker that did (one insert; durable on return).

    Example:
        >>> # hand_off_labels(ctx.engine, "churn", 7, "host-123", [("r-1", None, 1)])
    """
    now = time.time()
    rows = [
        {
            "name": name,
            "revision": revision,
            "worker": worker,
            "request_id": rid,
            "row": row,
            "label": orjson.dumps(label).decode(),
            "received": now,
        }
        for rid, row, label in labels
    ]
    if rows:
        with engine.begin() as conn:
            conn.execute(sa.insert(feedback_labels), rows)


def last_label_id(engine: Engine) -> int:
    """The id of the newest label handed between workers (0: none).

    Example:
        >>> # last_label_id(ctx.engine)  -> 42
    """
    with reading(engine) as conn:
        found = conn.execute(sa.select(sa.func.max(feedback_labels.c.id))).scalar()
    return int(found or 0)


def handed_off_labels(
    engine: Engine, revisions: Collection[tuple[str, int]], after: int, not_from: str
) -> list[HandedOff]:
    """The labels other workers than ``not_from`` handed over for these (name, revision)
    pairs, with an id above ``after``, oldest first.

    Example:
        >>> # handed_off_labels(ctx.engine, [("churn", 7)], after=40, not_from="host-123")
    """
    if not revisions:
        return []
    t = feedback_labels
    which = sa.or_(*[(t.c.name == name) & (t.c.revision == rev) for name, rev in revisions])
    query = (
        sa.select(t.c.id, t.c.name, t.c.revision, t.c.request_id, t.c.row, t.c.label)
        .where((t.c.id > after) & (t.c.worker != not_from) & which)
        .order_by(t.c.id)
    )
    with reading(engine) as conn:
        rows = conn.execute(query).all()
    return [
        (int(r.id), r.name, int(r.revision), r.request_id, r.row, orjson.loads(r.label))
        for r in rows
    ]


def drop_labels(engine: Engine, ids: Collection[int]) -> None:
    """Delete the handed-off labels with these ids (scored by the worker that answered).

    Example:
        >>> # drop_labels(ctx.engine, [12, 13])
    """
    if ids:
        with engine.begin() as conn:
            conn.execute(feedback_labels.delete().where(feedback_labels.c.id.in_(sorted(ids))))


def expire_labels(engine: Engine, before: float) -> list[HandedOff]:
    """Delete the labels handed between workers before ``before`` (epoch seconds) and
    return them: one ``DELETE ... RETURNING``, so among workers expiring at once each row
    is returned to one of them only.

    Example:
        >>> # expire_labels(ctx.engine, time.time() - 600)  -> [(12, "churn", 7, "r-1", None, 1)]
    """
    t = feedback_labels
    with engine.begin() as conn:
        rows = conn.execute(
            t.delete()
            .where(t.c.received < before)
            .returning(t.c.id, t.c.name, t.c.revision, t.c.request_id, t.c.row, t.c.label)
        ).all()
    return sorted(
        (int(r.id), r.name, int(r.revision), r.request_id, r.row, orjson.loads(r.label))
        for r in rows
    )
