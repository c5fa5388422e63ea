"""Stored drift results: the drift of each window of logged predictions the loop watched.

The loop (:func:`loopline.loop.watching.watch`) computes, at every pass, the drift of the
newest window of the stable version against its reference; :func:`store_drift` keeps it in
``drift_results`` (one row per model and pass, scores as JSON) so that
``GET /api/v1/monitor/drift?model=`` and dashboards show how drift moved over time.

Example:
    >>> # store_drift("flights", window, reference="flights-train@1")
    >>> # [r.drifted for r in read_drift("flights")]
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import orjson
import sqlalchemy as sa

from loopline.core.context import Context, get_context
from loopline.core.db import reading
from loopline.errors import InvalidInput
from loopline.monitoring.performance import WindowMetrics
from loopline.monitoring.tables import drift_results

#: The most results :func:`read_drift` returns at once.
MAX_DRIFT_RESULTS = 1000


@dataclass(frozen=True)
class StoredDrift:
    """One stored window: which features drifted and every feature's drift score."""

    id: int
    model: str
    version: str
    ts: float
    window_start: float | None
    window_end: float | None
    rows: int
    reference: str | None
    drifted: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)


def store_drift(
    model: str, window: WindowMetrics, reference: str | None, ctx: Context | None = None
) -> int:
    """Keep the drift of ``window`` (of ``model``, against ``reference``); return its id.

    Example:
        >>> # store_drift("flights", window, "flights-train@1")
    """
    ctx = ctx or get_context()
    with ctx.engine.begin() as conn:
        new_id = conn.execute(
            sa.insert(drift_results)
            .values(
                model=model,
                version=str(window.version),
                ts=time.time(),
                window_start=window.start,
                window_end=window.end,
                rows=window.rows,
                reference=reference,
                drifted=orjson.dumps(list(window.drifted)).decode(),
                scores=orjson.dumps(
                    window.drift_scores, option=orjson.OPT_SERIALIZE_NUMPY
                ).decode(),
            )
            .returning(drift_results.c.id)
        ).scalar_one()
    return int(new_id)


def read_drift(model: str, *, limit: int = 100, ctx: Context | None = None) -> list[StoredDrift]:
    """The newest ``limit`` stored drift results of ``model``, newest first.

    Example:
        >>> # read_drift("flights", limit=1)[0].drifted
    """
    if not 1 <= limit <= MAX_DRIFT_RESULTS:
        raise InvalidInput(
            f"The 'limit' parameter of read_drift must be 1..{MAX_DRIFT_RESULTS}. "
            f"Got {limit!r} instead.",
            field="limit",
        )
    ctx = ctx or get_context()
    t = drift_results
    q = sa.select(t).where(t.c.model == model).order_by(t.c.id.desc()).limit(limit)
    with reading(ctx.engine) as conn:
        rows = conn.execute(q).all()
    return [
        StoredDrift(
            id=r.id,
            model=r.model,
            version=r.version,
            ts=r.ts,
            window_start=r.window_start,
            window_end=r.window_end,
            rows=r.rows,
            reference=r.reference,
            drifted=list(orjson.loads(r.drifted)),
            scores=dict(orjson.loads(r.scores)),
        )
        for r in rows
    ]
