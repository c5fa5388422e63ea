"""What the loop keeps in the database: each model's kill switch and cooldown (the
``loop_state`` row) and the loop's event log (``loop_events``, each event with its links
and an audit event).

Separate from the controller, which decides what a pass does: these are the reads and
writes every step of a pass (and ``loopline loop pause``/``resume``) goes through, and a
pass stopped half-way is recognised by the events written here.

Example:
    >>> # pause("flights", reason="data migration tonight"); is_paused("flights")  -> True
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import sqlalchemy as sa

from loopline.core.context import Context, get_context
from loopline.core.db import reading
from loopline.monitoring.tables import loop_events, loop_state

ALL = "*"


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
