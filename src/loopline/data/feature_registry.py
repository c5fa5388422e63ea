"""Feature view definitions and the materialization log in the metadata database.

The public face is :mod:`loopline.data.features`; this module turns rows of
:mod:`loopline.data.feature_tables` into plain frozen dataclasses and back, so table rows
never leave it.

Example:
    >>> # save_view(ctx, definition, source_kind="frame", digest=d, dataset=None)
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from loopline.core.backup_online import OnlineCheck
from loopline.core.context import Context
from loopline.core.db import reading
from loopline.data.feature_tables import feature_materializations, feature_views
from loopline.errors import Conflict, NotFound

_ATTEMPTS = 3


def _utc(ts: float | None) -> dt.datetime | None:
    """A stored time (float seconds); one past the last or first instant a datetime holds
    (``9999-12-31T23:59:59.999999`` as a float rounds up to the year 10000) is that
    instant, instead of failing every later read of the views."""
    if ts is None:
        return None
    try:
        return dt.datetime.fromtimestamp(ts, dt.UTC)
    except (OverflowError, ValueError, OSError):
        return (dt.datetime.max if ts > 0 else dt.datetime.min).replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class Materialization:
    """One run of :func:`~loopline.data.features.materialize`."""

    view: str
    start: dt.datetime | None
    end: dt.datetime
    rows: int
    online_store: str
    source: str
    started_at: dt.datetime
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (times as ISO 8601).

        Example:
            >>> # materialize("user_stats").to_dict()["rows"]
        """
        return {
            "view": self.view,
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat(),
            "rows": self.rows,
            "online_store": self.online_store,
            "source": self.source,
            "started_at": self.started_at.isoformat(),
            "seconds": round(self.seconds, 6),
        }


@dataclass(frozen=True)
class RegisteredView:
    """A feature view as stored: its definition, where its rows are, its last materialization.

    ``source`` is ``"frame:<digest>"`` for a frame stored in the artifact store and
    ``"dataset:<name>[@version]"`` for a versioned dataset.
    """

    name: str
    keys: tuple[str, ...]
    timestamp: str
    created: str | None
    features: tuple[str, ...]
    ttl: dt.timedelta | None
    source: str
    rows: int | None
    registered_at: dt.datetime
    updated_at: dt.datetime
    last_materialization: Materialization | None = None

    @property
    def feature_refs(self) -> list[str]:
        """``["view:feature", ...]`` for every feature, ready for ``get_historical``.

        Example:
            >>> # ll.features.get_historical(df, ll.features.get_view("u").feature_refs)
        """
        return [f"{self.name}:{f}" for f in self.features]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (times as ISO 8601, the TTL in seconds).

        Example:
            >>> # ll.features.get_view("user_stats").to_dict()["features"]
        """
        return {
            "name": self.name,
            "entity": list(self.keys),
            "timestamp": self.timestamp,
            "created": self.created,
            "features": list(self.features),
            "ttl_seconds": self.ttl.total_seconds() if self.ttl is not None else None,
            "source": self.source,
            "rows": self.rows,
            "registered_at": self.registered_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "last_materialization": (
                self.last_materialization.to_dict() if self.last_materialization else None
            ),
        }


def _source_ref(row: Any) -> str:
    if row.source_kind == "frame":
        return f"frame:{row.source_digest}"
    return f"dataset:{row.source_dataset}"


def _materialization(view: str, row: Any) -> Materialization:
    started = _utc(row.started_at)
    end = _utc(row.end_ts)
    assert started is not None and end is not None
    return Materialization(
        view=view,
        start=_utc(row.start_ts),
        end=end,
        rows=int(row.rows),
        online_store=row.online_store,
        source=row.source_ref,
        started_at=started,
        seconds=float(row.finished_at - row.started_at),
    )


def _ttl(seconds: float | None) -> dt.timedelta | None:
    """The stored TTL; one too long for a timedelta (stored before such TTLs were refused,
    e.g. ``timedelta.max``) reads as no TTL, instead of failing every read of the views."""
    if seconds is None:
        return None
    try:
        return dt.timedelta(seconds=seconds)
    except OverflowError:
        return None


def _view(row: Any, last: Materialization | None) -> RegisteredView:
    d = row.definition
    registered, updated = _utc(row.created_at), _utc(row.updated_at)
    assert registered is not None and updated is not None
    ttl = d.get("ttl_seconds")
    return RegisteredView(
        name=row.name,
        keys=tuple(d["entity"]),
        timestamp=d["timestamp"],
        created=d.get("created"),
        features=tuple(d["features"]),
        ttl=_ttl(ttl),
        source=_source_ref(row),
        rows=d.get("rows"),
        registered_at=registered,
        updated_at=updated,
        last_materialization=last,
    )


def _last_materializations(conn: Connection, ids: dict[int, str]) -> dict[int, Materialization]:
    if not ids:
        return {}
    m = feature_materializations
    newest = (
        sa.select(m.c.view_id, sa.func.max(m.c.id).label("id"))
        .where(m.c.view_id.in_(list(ids)))
        .group_by(m.c.view_id)
        .subquery()
    )
    rows = conn.execute(sa.select(m).join(newest, m.c.id == newest.c.id)).all()
    return {r.view_id: _materialization(ids[r.view_id], r) for r in rows}


def load_views(ctx: Context, names: list[str] | None = None) -> dict[str, RegisteredView]:
    """Stored views by name (all of them, or those of ``names`` that exist).

    Example:
        >>> # load_views(ctx, ["user_stats"]).keys()
    """
    query = sa.select(feature_views).order_by(feature_views.c.name)
    if names is not None:
        query = query.where(feature_views.c.name.in_(names))
    with reading(ctx.engine) as conn:
        rows = conn.execute(query).all()
        last = _last_materializations(conn, {r.id: r.name for r in rows})
    return {r.name: _view(r, last.get(r.id)) for r in rows}


def view_names(ctx: Context) -> list[str]:
    """The names of all stored views, sorted.

    Example:
        >>> # view_names(ctx) -> ['merchant_stats', 'user_stats']
    """
    with reading(ctx.engine) as conn:
        return list(
            conn.execute(sa.select(feature_views.c.name).order_by(feature_views.c.name)).scalars()
        )


def not_found(ctx: Context, name: str) -> NotFound:
    """The error for a view name that does not exist, listing the ones that do.

    Example:
        >>> # raise not_found(ctx, "usr_stats")  # hint: registered views: user_stats
    """
    names = view_names(ctx)
    shown = ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
    return NotFound(
        f"no feature view named {name!r}",
        hint=(
            f"registered views: {shown}"
            if names
            else "no view is registered yet: ll.features.register(FeatureView(...))"
        ),
    )


def save_view(
    ctx: Context,
    name: str,
    definition: dict[str, Any],
    *,
    source_kind: str,
    digest: str | None,
    dataset: str | None,
) -> RegisteredView:
    """Insert or replace the view ``name``; audit the change. A no-op when unchanged.

    Example:
        >>> # save_view(ctx, "u", {...}, source_kind="frame", digest="ab12...", dataset=None)
    """
    values = {
        "definition": definition,
        "source_kind": source_kind,
        "source_digest": digest,
        "source_dataset": dataset,
    }
    for attempt in range(_ATTEMPTS):
        try:
            return _save_view(ctx, name, definition, values)
        except SAIntegrityError as exc:
            # Two first registrations of one name both inserted it; the next attempt
            # finds the other's row and locks it.
            if attempt == _ATTEMPTS - 1:
                raise Conflict(
                    f"feature view {name!r} was registered by other processes {_ATTEMPTS} "
                    "times in a row",
                    hint="register it again",
                ) from exc
    raise AssertionError("unreachable")


def _save_view(
    ctx: Context, name: str, definition: dict[str, Any], values: dict[str, Any]
) -> RegisteredView:
    fv = feature_views
    now = time.time()
    with ctx.engine.begin() as conn:
        # Locked, so that a concurrent registration waits and then audits the definition
        # it really replaced (PostgreSQL; SQLite's write lock already serializes them).
        old = conn.execute(sa.select(fv).where(fv.c.name == name).with_for_update()).one_or_none()
        before = None
        if old is not None:
            before = {
                "definition": old.definition,
                "source": _source_ref(old),
            }
            unchanged = (
                old.definition == definition
                and old.source_kind == values["source_kind"]
                and old.source_digest == values["source_digest"]
                and old.source_dataset == values["source_dataset"]
            )
            if unchanged:
                return _view(old, _last_materializations(conn, {old.id: name}).get(old.id))
            conn.execute(sa.update(fv).where(fv.c.id == old.id).values(updated_at=now, **values))
        else:
            conn.execute(sa.insert(fv).values(name=name, created_at=now, updated_at=now, **values))
        row = conn.execute(sa.select(fv).where(fv.c.name == name)).one()
        ctx.audit(
            conn,
            action="feature_view.register",
            object_type="feature_view",
            object_id=name,
            before=before,
            after={"definition": definition, "source": _source_ref(row)},
        )
        last = _last_materializations(conn, {row.id: name}).get(row.id)
    return _view(row, last)


def log_materialization(ctx: Context, m: Materialization) -> None:
    """Record a finished materialization (and audit it).

    Example:
        >>> # log_materialization(ctx, Materialization(...))
    """
    with ctx.engine.begin() as conn:
        view_id = conn.execute(
            sa.select(feature_views.c.id).where(feature_views.c.name == m.view)
        ).scalar_one_or_none()
        if view_id is not None:
            conn.execute(
                sa.insert(feature_materializations).values(
                    view_id=view_id,
                    start_ts=m.start.timestamp() if m.start else None,
                    end_ts=m.end.timestamp(),
                    rows=m.rows,
                    online_store=m.online_store,
                    source_ref=m.source,
                    started_at=m.started_at.timestamp(),
                    finished_at=m.started_at.timestamp() + m.seconds,
                )
            )
            ctx.audit(
                conn,
                action="feature_view.materialize",
                object_type="feature_view",
                object_id=m.view,
                after=m.to_dict(),
            )
    if view_id is None:  # deleted while it was being materialized
        raise not_found(ctx, m.view)


def _end_seconds(text: object) -> float | None:
    """The ``end`` of an online metadata record as float seconds (``None``: none/bad)."""
    if not isinstance(text, str):
        return None
    try:
        return dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def _online_mismatch(view: RegisteredView, meta: bytes | None) -> str | None:
    """Why the online rows described by ``meta`` are not those of ``view``'s last
    materialization; ``None`` when they are (or the view was never materialized)."""
    last = view.last_materialization
    if meta is None:
        if last is None:
            return None  # never materialized: get_online says so itself
        return f"the online store has no rows of it (last materialized to {last.online_store})"
    record = orjson.loads(meta)
    same_shape = list(record.get("entity") or []) == list(view.keys) and set(
        record.get("features") or []
    ) == set(view.features)
    if record.get("changed"):
        # register() dropped the rows of the old definition: consistent once the new
        # definition is registered (get_online then asks to materialize it).
        return None if same_shape else "its online record is of another definition"
    if not same_shape:
        return "its online rows are of another definition"
    end = _end_seconds(record.get("end"))
    if last is None:
        return "its online rows have no recorded materialization"
    if end is None or abs(end - last.end.timestamp()) > 1e-5 or record.get("source") != last.source:
        return (
            f"its online rows (as of {record.get('end')}, from {record.get('source')}) are not "
            f"those of its last recorded materialization (as of {last.end.isoformat()}, "
            f"from {last.source})"
        )
    return None


def check_online(conn: Connection, metas: Mapping[str, bytes]) -> OnlineCheck:
    """Compare the online store's metadata records with the feature views of ``conn``.

    Used by ``loopline backup`` and ``restore`` (:mod:`loopline.core.backup_online`): a
    view's online rows match when their record has the view's key columns and features
    and the end and source of its last recorded materialization.

    Example:
        >>> # check_online(conn, {"user_stats": meta}).mismatched  -> {}
    """
    rows = conn.execute(sa.select(feature_views).order_by(feature_views.c.name)).all()
    last = _last_materializations(conn, {r.id: r.name for r in rows})
    views = {r.name: _view(r, last.get(r.id)) for r in rows}
    mismatched = {}
    for name, view in views.items():
        why = _online_mismatch(view, metas.get(name))
        if why is not None:
            mismatched[name] = why
    return OnlineCheck(registered=frozenset(set(metas) & set(views)), mismatched=mismatched)
