"""Keeping a view's online rows in step with its definition, and each context's online store.

The online store serves the rows of the definition a view was materialized with. When a
view is registered again with other key columns, other features or a feature of another
type, those rows would be served wrong: :func:`online_change` says how the shape changed,
:func:`_drop_online_rows` drops the rows (leaving a record that says why), and the checks
around a materialization refuse to mix rows of two definitions
(:func:`_check_incremental`) or to keep rows a registration raced with
(:func:`_check_unchanged`). Registration (:mod:`loopline.data.feature_views`) and
serving (:mod:`loopline.data.feature_serving`) both go through these, and through
:func:`_online_store`, the one online store of each context.

Example:
    >>> online_change(["user"], ["x"], ["region", "user"], ["x"])
    'key columns user -> region, user'
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping, Sequence

import orjson

from loopline.core.context import Context
from loopline.data import pit_join
from loopline.data.feature_registry import RegisteredView, load_views
from loopline.data.feature_sources import prepared_view
from loopline.data.online import OnlineStore, open_online_store
from loopline.errors import Conflict, InvalidInput, NotFound

_stores: weakref.WeakKeyDictionary[Context, OnlineStore] = weakref.WeakKeyDictionary()
_stores_lock = threading.Lock()


def _online_store(ctx: Context) -> OnlineStore:
    store = _stores.get(ctx)
    if store is None:
        with _stores_lock:
            store = _stores.get(ctx)
            if store is None:
                s = ctx.settings
                store = open_online_store(
                    s.online_store, home=s.home, busy_timeout_ms=s.sqlite_busy_timeout_ms
                )
                _stores[ctx] = store
                weakref.finalize(ctx, store.close)
    return store


def _online_types(ctx: Context, view: RegisteredView) -> dict[str, str]:
    """The types the online store would serve ``view``'s features as (writing the view's
    prepared copy if it is missing).

    Raises :class:`NotFound` or :class:`InvalidInput` when its source cannot be read.
    """
    con = pit_join.connect(ctx.settings.home / "tmp" / "duckdb")
    try:
        return pit_join.online_types(con, prepared_view(ctx, con, view, view.features))
    finally:
        con.close()


def _readable_types(ctx: Context, view: RegisteredView) -> dict[str, str] | None:
    """:func:`_online_types`, or ``None`` for a dataset source that cannot be read now
    (missing, or lacking a column): it is read, and refused, at query time."""
    try:
        return _online_types(ctx, view)
    except (NotFound, InvalidInput):
        return None


def _served_types(ctx: Context, view_name: str) -> dict[str, str] | None:
    """The feature types of the view's rows in the online store (``None``: unknown, e.g.
    rows written before types were recorded, or another process's online store)."""
    meta = _online_store(ctx).read_meta(view_name)
    if meta is None:
        return None
    types = orjson.loads(meta).get("types")
    return dict(types) if isinstance(types, dict) else None


def _materialize_hint(view_name: str) -> str:
    return (
        f"run ll.features.materialize({view_name!r}) or `loopline features materialize {view_name}`"
    )


def online_change(
    old_keys: Sequence[str],
    old_features: Sequence[str],
    keys: Sequence[str],
    features: Sequence[str],
    old_types: Mapping[str, str] | None = None,
    types: Mapping[str, str] | None = None,
) -> str | None:
    """How a view's online rows would change shape, in words; ``None`` if they would not.

    The key columns count in order (they make each key's text); the features as a set
    (their order only orders each row's dict); the type of each feature kept, when both
    ``old_types`` and ``types`` are known (an int column that became float or text would
    otherwise be served with its old values and type).

    Example:
        >>> online_change(["user"], ["x"], ["user"], ["z"])
        'features x -> z'
        >>> online_change(["user"], ["x", "y"], ["user"], ["y", "x"]) is None
        True
        >>> online_change(["user"], ["x"], ["user"], ["x"], {"x": "BIGINT"}, {"x": "DOUBLE"})
        'type of x BIGINT -> DOUBLE'
    """
    changes = []
    if tuple(old_keys) != tuple(keys):
        changes.append(f"key columns {', '.join(old_keys)} -> {', '.join(keys)}")
    if set(old_features) != set(features):
        changes.append(f"features {', '.join(old_features)} -> {', '.join(features)}")
    if old_types is not None and types is not None:
        changes.extend(
            f"type of {f} {old_types[f]} -> {types[f]}"
            for f in features
            if f in old_types and f in types and old_types[f] != types[f]
        )
    return "; ".join(changes) or None


def _drop_online_rows(
    ctx: Context, view_name: str, keys: Sequence[str], features: Sequence[str], change: str
) -> None:
    """Drop the online rows of a materialized view whose definition changed, leaving a
    record that says so (read by :func:`_empty_row` and :func:`_check_incremental`)."""
    meta = {"features": list(features), "entity": list(keys), "changed": change}
    _online_store(ctx).invalidate(view_name, meta=orjson.dumps(meta))


def _check_incremental(store: OnlineStore, view: RegisteredView, types: dict[str, str]) -> None:
    """Refuse to upsert rows of ``view``, whose features have ``types``, among online rows
    of another definition or of other feature types (e.g. a new version of its dataset
    turned a column from int to float)."""
    meta = store.read_meta(view.name)
    if meta is None:
        return
    record = orjson.loads(meta)
    change = record.get("changed") or online_change(
        record.get("entity") or view.keys,
        record["features"],
        view.keys,
        view.features,
        record.get("types"),
        types,
    )
    if change:
        raise Conflict(
            f"feature view {view.name!r} changed since its last materialization to "
            f"{store.url} ({change}); a materialization with a start would mix rows of "
            "both definitions",
            hint=f"materialize it whole first: ll.features.materialize({view.name!r}) "
            f"without start, or `loopline features materialize {view.name}` without --start",
        )


def _check_unchanged(ctx: Context, view: RegisteredView, types: dict[str, str]) -> None:
    """After writing ``view``'s rows (of feature ``types``): if it was registered again
    with other key columns, features or feature types meanwhile, drop them (the
    registration may have dropped the online rows before they were written) and raise
    :class:`Conflict`."""
    now = load_views(ctx, [view.name]).get(view.name)
    if now is None:
        return  # deleted meanwhile: log_materialization says so
    now_types = None
    if now.source != view.source:  # the same source has the same types
        now_types = _readable_types(ctx, now)
    change = online_change(view.keys, view.features, now.keys, now.features, types, now_types)
    if change:
        _drop_online_rows(ctx, view.name, now.keys, now.features, change)
        raise Conflict(
            f"feature view {view.name!r} was registered again while it was being "
            f"materialized ({change}); the rows written were dropped",
            hint=_materialize_hint(view.name),
        )
