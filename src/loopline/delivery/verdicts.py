"""Gate verdicts: what :func:`loopline.delivery.gates.evaluate` decided, stored and read back.

A verdict is a row of ``gate_verdicts``, a tag ``loopline.gate = blessed|blocked`` on the
model version, and an audit event (``gate.evaluate``), written together.

Example:
    >>> GateCheck("data", "contract", True, "data: holdout@2 meets the contract").passed
    True
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa

from loopline.core.context import Context, get_context
from loopline.core.db import reading
from loopline.delivery.tables import gate_verdicts

GATE_TAG = "loopline.gate"


@dataclass(frozen=True)
class GateCheck:
    """One check of a gate: ``gate`` is ``data`` or ``performance``; ``check`` its name."""

    gate: str
    check: str
    passed: bool
    message: str

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON.

        Example:
            >>> GateCheck("data", "contract", True, "ok").to_dict()["passed"]
            True
        """
        return {
            "gate": self.gate,
            "check": self.check,
            "passed": self.passed,
            "message": self.message,
        }


@dataclass(frozen=True)
class GateVerdict:
    """The outcome of :func:`evaluate`: ``blessed`` or not, and why.

    ``reasons`` lists the failed checks when blocked and the passed ones when blessed;
    ``metrics`` holds ``challenger`` and ``champion`` (None without a champion) metric
    values, their ``change`` and, with a bootstrap, the change's ``intervals``.
    """

    name: str
    version: int
    blessed: bool
    reasons: list[str]
    metrics: dict[str, Any]
    checks: list[GateCheck]
    champion_version: int | None
    dataset: str
    thresholds: dict[str, Any]
    id: int | None = None
    created: float = 0.0
    actor: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON.

        Example:
            >>> # ll.gates.evaluate(...).to_dict()["blessed"]
        """
        return {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "blessed": self.blessed,
            "reasons": self.reasons,
            "metrics": self.metrics,
            "checks": [c.to_dict() for c in self.checks],
            "champion_version": self.champion_version,
            "dataset": self.dataset,
            "thresholds": self.thresholds,
            "created": self.created,
            "actor": self.actor,
        }


# -- storage ------------------------------------------------------------------------------


def store_verdict(ctx: Context, verdict: GateVerdict) -> GateVerdict:
    """Insert the verdict, tag the model version and audit it, in that order; return it with
    its id.

    Example:
        >>> # store_verdict(ctx, verdict).id
    """
    from loopline.training import registry_versions

    row = {
        "name": verdict.name,
        "version": verdict.version,
        "blessed": verdict.blessed,
        "champion_version": verdict.champion_version,
        "dataset": verdict.dataset,
        "reasons": orjson.dumps(verdict.reasons).decode(),
        "metrics": orjson.dumps(
            {**verdict.metrics, "checks": [c.to_dict() for c in verdict.checks]},
            option=orjson.OPT_SERIALIZE_NUMPY,
        ).decode(),
        "thresholds": orjson.dumps(verdict.thresholds).decode(),
        "actor": verdict.actor,
        "created": verdict.created,
    }
    with ctx.engine.begin() as conn:
        key = conn.execute(gate_verdicts.insert().values(**row)).inserted_primary_key
        assert key is not None
        new_id = key[0]
        ctx.audit(
            conn,
            action="gate.evaluate",
            object_type="model_version",
            object_id=f"{verdict.name}/{verdict.version}",
            after={
                "blessed": verdict.blessed,
                "dataset": verdict.dataset,
                "champion_version": verdict.champion_version,
                "verdict_id": int(new_id),
            },
            reason="; ".join(verdict.reasons),
        )
    registry_versions.set_model_version_tag(
        ctx, verdict.name, verdict.version, GATE_TAG, "blessed" if verdict.blessed else "blocked"
    )
    return dataclasses.replace(verdict, id=int(new_id))


def _from_row(r: Any) -> GateVerdict:
    stored = orjson.loads(r.metrics)
    checks = [GateCheck(**c) for c in stored.pop("checks", [])]
    return GateVerdict(
        name=r.name,
        version=r.version,
        blessed=bool(r.blessed),
        reasons=orjson.loads(r.reasons),
        metrics=stored,
        checks=checks,
        champion_version=r.champion_version,
        dataset=r.dataset,
        thresholds=orjson.loads(r.thresholds),
        id=r.id,
        created=r.created,
        actor=r.actor,
    )


def verdicts(
    name: str, version: int | None = None, ctx: Context | None = None
) -> list[GateVerdict]:
    """Stored verdicts of model ``name`` (of one version if given), newest first.

    Example:
        >>> # [v.blessed for v in ll.gates.verdicts("churn", 4)]
    """
    context = ctx or get_context()
    query = sa.select(gate_verdicts).where(gate_verdicts.c.name == name)
    if version is not None:
        query = query.where(gate_verdicts.c.version == int(version))
    with reading(context.engine) as conn:
        rows = conn.execute(query.order_by(gate_verdicts.c.id.desc())).all()
    return [_from_row(r) for r in rows]


def latest_verdict(name: str, version: int, ctx: Context | None = None) -> GateVerdict | None:
    """The newest verdict of one model version, or None if it was never gated.

    Example:
        >>> # ll.gates.latest_verdict("churn", 4).blessed
    """
    context = ctx or get_context()
    query = (
        sa.select(gate_verdicts)
        .where((gate_verdicts.c.name == name) & (gate_verdicts.c.version == int(version)))
        .order_by(gate_verdicts.c.id.desc())
        .limit(1)
    )
    with reading(context.engine) as conn:
        row = conn.execute(query).one_or_none()
    return None if row is None else _from_row(row)
