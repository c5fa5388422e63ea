"""The online half of the feature store: :func:`materialize` and :func:`get_online`.

:func:`materialize` writes the latest row per entity (as of ``end``, within the TTL) of a
registered view to the online store, refusing to mix rows of two definitions, and logs
the run; :func:`get_online` reads rows back by key, the serving path, in well under a
millisecond. Keys and rows are encoded by :mod:`loopline.data.online_encoding`; whether
the online rows still fit the view's definition is :mod:`loopline.data.online_consistency`'s
job. The public face is :mod:`loopline.data.features` (``ll.features``).

Example:
    >>> # ll.features.materialize("user_stats", end="2024-06-01T00:00:00Z").rows
    >>> # ll.features.get_online("user_stats", [42, 7])
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
import pandas as pd

from loopline.core.context import Context, get_context
from loopline.data import pit_join
from loopline.data.feature_registry import (
    Materialization,
    RegisteredView,
    load_views,
    log_materialization,
    not_found,
)
from loopline.data.feature_sources import prepared_view
from loopline.data.feature_times import _epoch_us, _to_utc
from loopline.data.feature_views import FeatureView, _view_name, _views
from loopline.data.online import OnlineStore
from loopline.data.online_consistency import (
    _check_incremental,
    _check_unchanged,
    _materialize_hint,
    _online_store,
)
from loopline.data.online_encoding import _packed_rows, _unpack, encode_key
from loopline.errors import Conflict, InvalidInput, NotFound


def materialize(
    view_name: str | FeatureView | RegisteredView,
    end: dt.datetime | pd.Timestamp | str | None = None,
    start: dt.datetime | pd.Timestamp | str | None = None,
) -> Materialization:
    """Write the latest row per entity, as of ``end`` (default: now), to the online store.

    Only rows with an event time at or before ``end`` and within the view's TTL of ``end``
    count. Without ``start`` the view's online rows are replaced as a whole (entities
    whose rows expired disappear); with ``start`` only entities with rows in
    ``[start, end]`` are written over, the others are kept; that is refused
    (:class:`Conflict`) when the view's key columns, features or feature types (e.g. of a
    new version of its dataset) changed since its last materialization, as it would mix
    rows of both. ``view_name`` is a view's
    name or a view object (its name is taken; the registered definition is materialized).

    Example:
        >>> # ll.features.materialize("user_stats", end="2024-06-01T00:00:00Z").rows
    """
    name = _view_name(view_name)
    ctx = get_context()
    view = _views(ctx, [name])[name]
    started = time.time()
    end_ts = _to_utc(end, "end") if end is not None else pd.Timestamp.now(tz="UTC")
    start_ts = _to_utc(start, "start") if start is not None else None
    if start_ts is not None and start_ts > end_ts:
        raise InvalidInput(
            f"start {start_ts.isoformat()} is after end {end_ts.isoformat()}", field="start"
        )
    store = _online_store(ctx)
    con = pit_join.connect(ctx.settings.home / "tmp" / "duckdb")
    try:
        prepared = prepared_view(ctx, con, view, view.features)
        types = pit_join.online_types(con, prepared)
        if start_ts is not None:
            _check_incremental(store, view, types)
        meta = orjson.dumps(
            {
                "features": list(view.features),
                "entity": list(view.keys),
                "types": types,
                "end": end_ts.isoformat(),
                "source": view.source,
            }
        )
        rows = pit_join.latest_rows(
            con,
            prepared,
            _epoch_us(end_ts),
            _epoch_us(start_ts) if start_ts is not None else None,
        )
        n = store.write(
            name,
            _packed_rows(rows, len(view.keys), view.features),
            meta=meta,
            replace=start_ts is None,
        )
    finally:
        con.close()
    _check_unchanged(ctx, view, types)
    result = Materialization(
        view=name,
        start=start_ts.to_pydatetime() if start_ts is not None else None,
        end=end_ts.to_pydatetime(),
        rows=n,
        online_store=store.url,
        source=view.source,
        started_at=dt.datetime.fromtimestamp(started, dt.UTC),
        seconds=time.time() - started,
    )
    log_materialization(ctx, result)
    return result


def get_online(
    view_name: str | FeatureView | RegisteredView, keys: Sequence[Any]
) -> list[dict[str, Any]]:
    """The materialized features of each key: one ``{feature: value}`` dict per key.

    A key is the entity key's value (a tuple for a view with several key columns); keys
    match by their text form, so ``42`` and ``"42"`` are the same entity. An entity that
    is not in the online store gets a dict of ``None`` values. A whole float is its
    integer (``42.0`` is ``42``), as in training sets. Values come back as JSON types:
    timestamps and durations as ISO 8601 strings, decimals as floats, and inf, -inf and
    NaN as floats (see docs/data.md). ``view_name`` is a view's name or a view object
    (its name is taken). :class:`Conflict` when the view's key columns, features or
    feature types were changed (:func:`register`) since its last materialization.

    Example:
        >>> # ll.features.get_online("user_stats", [42, 7])
        >>> # [{'clicks_7d': 3.0, 'spend_7d': 12.5}, {'clicks_7d': None, 'spend_7d': None}]
    """
    if not isinstance(keys, list | tuple):
        keys = _key_list(keys)
    name = view_name if isinstance(view_name, str) else _view_name(view_name)
    ctx = get_context()
    store = _online_store(ctx)
    packed = store.read(name, [encode_key(k) for k in keys])
    loads = orjson.loads
    out: list[dict[str, Any]] = []
    empty: dict[str, Any] | None = None
    entity: list[str] = []
    for key, value in zip(keys, packed, strict=True):
        if value is not None:
            # A plain row is a JSON object ('{' is 123); one with inf, NaN or bytes is not.
            out.append(loads(value) if value[0] == 123 else _unpack(value))
        else:
            if empty is None:
                empty, entity = _empty_row(ctx, store, name)
            # Checked on a miss only (a key of the wrong shape never hits), so that the
            # serving path does not pay for it.
            _check_key_parts(key, entity, name)
            out.append(dict(empty))
    return out


def _key_list(keys: object) -> list[Any]:
    """``keys`` other than a list or tuple as a list (an array, a Series, a generator,
    which the reads below go over twice); a string or no collection is refused."""
    if isinstance(keys, str | bytes):
        raise InvalidInput(
            f"keys must be a list of entity keys. Got the string {keys!r}; pass [{keys!r}].",
            field="keys",
        )
    if isinstance(keys, Mapping) or not isinstance(keys, Iterable):
        raise InvalidInput(
            f"keys must be a list of entity keys. Got {type(keys).__name__} instead.",
            field="keys",
            hint="e.g. [42, 7], or [('eu', 42)] for a view with two key columns",
        )
    return list(keys)


def _check_key_parts(key: object, entity: list[str], view_name: str) -> None:
    if isinstance(key, Mapping):
        # Feast's entity rows are dicts; here a dict's text never matches a key.
        columns = f" ({', '.join(entity)})" if entity else ""
        raise InvalidInput(
            f"key {key!r} is a dict; feature view {view_name!r} takes each key as its value",
            field="keys",
            hint=f"pass the key column's value (e.g. 42), or a tuple of the values of the key "
            f"columns{columns} in their order",
        )
    parts = len(key) if isinstance(key, tuple | list) else 1
    if entity and parts != len(entity):
        raise InvalidInput(
            f"key {key!r} has {parts} part(s), but feature view {view_name!r} has "
            f"{len(entity)} key column(s): {', '.join(entity)}",
            field="keys",
            hint="pass one value per key column"
            + (", as a tuple (e.g. ('eu', 42))" if len(entity) > 1 else ""),
        )


def _empty_row(
    ctx: Context, store: OnlineStore, view_name: str
) -> tuple[dict[str, Any], list[str]]:
    """A row of ``None`` for each feature of the materialized view, and its key columns."""
    meta = store.read_meta(view_name)
    if meta is None:
        if view_name not in load_views(ctx, [view_name]):
            raise not_found(ctx, view_name)
        raise NotFound(
            f"feature view {view_name!r} has not been materialized to {store.url}",
            hint=_materialize_hint(view_name),
        )
    record = orjson.loads(meta)
    if record.get("changed"):
        # register() dropped the rows of the old definition; every key misses, so the
        # serving path (a hit) never reads this record.
        raise Conflict(
            f"feature view {view_name!r} changed since its last materialization to "
            f"{store.url} ({record['changed']}); its online rows were dropped",
            hint=_materialize_hint(view_name),
        )
    return dict.fromkeys(record["features"]), list(record.get("entity") or [])
