"""The feature store: feature views, point-in-time training sets, an online store.

A :class:`FeatureView` names an entity key (one column or several), an event-timestamp
column, the feature columns, a TTL and a source: a DataFrame (stored as Parquet in the
artifact store, content-addressed, by :func:`register`) or the name of a versioned dataset
(``"name"`` or ``"name@version"``, resolved through :mod:`loopline.data.datasets` at query
time).

- :func:`get_historical` builds a training set: for every entity row, in the original
  order, the latest feature row at or before the row's timestamp and within the TTL, or
  null. It runs in DuckDB (ASOF JOIN over Parquet), so views larger than memory work.
- :func:`materialize` writes the latest row per entity (as of ``end``, within the TTL) to
  the online store; :func:`get_online` reads it back in well under a millisecond.

Time zones: every timestamp is compared in UTC. A tz-aware timestamp keeps its instant
whatever its zone; a naive timestamp is taken to be UTC. Times are compared at microsecond
precision. Ties on one key and one event timestamp are broken by the ``created`` column
(the latest wins), then by position in the source (the last row wins). See
:mod:`loopline.data.pit_join` for the exact rules.

Example:
    >>> import datetime as dt, pandas as pd, loopline as ll
    >>> rows = pd.DataFrame({"user": [1, 1], "clicks": [3, 5],
    ...     "ts": pd.to_datetime(["2024-01-01", "2024-01-03"], utc=True)})
    >>> view = ll.features.FeatureView(name="user_stats", entity="user", timestamp="ts",
    ...     features=["clicks"], ttl=dt.timedelta(days=7), source=rows)
    >>> _ = ll.features.register(view)
    >>> orders = pd.DataFrame({"user": [1, 1],
    ...     "event_timestamp": pd.to_datetime(["2024-01-02", "2024-01-04"], utc=True)})
    >>> ll.features.get_historical(orders, ["user_stats:clicks"])["clicks"].tolist()
    [3, 5]
"""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import re
import tempfile
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from loopline.core.columns import duplicate_names
from loopline.core.context import Context, get_context
from loopline.data import pit_join
from loopline.data.feature_registry import (
    Materialization,
    RegisteredView,
    load_views,
    log_materialization,
    not_found,
    save_view,
)
from loopline.data.feature_sources import missing_columns, prepared_view
from loopline.data.online import OnlineStore, open_online_store
from loopline.errors import Conflict, InvalidInput, NotFound

__all__ = [
    "FeatureView",
    "Materialization",
    "RegisteredView",
    "get_historical",
    "get_online",
    "get_view",
    "list_views",
    "materialize",
    "register",
]

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")
KEY_SEP = "\x1f"
_ESC = "\x1e"
_ROW_GROUP = 128 * 1024
# In microseconds: a nanosecond epoch made every time before 1677 or after 2262 (an `end`
# of 3000-01-01: all rows, none expired) overflow when subtracted from it.
_EPOCH = pd.Timestamp(0, tz="UTC").as_unit("us")
_FIRST = pd.Timestamp(dt.datetime.min.replace(tzinfo=dt.UTC))
_LAST = pd.Timestamp(dt.datetime.max.replace(tzinfo=dt.UTC))
# The longest TTL (about 137 years): the definition stores the TTL as float seconds, which
# give back every microsecond up to here; timedelta.max would not even come back from them
# (OverflowError).
MAX_TTL = dt.timedelta(days=50_000)


def _bad(param: str, must: str, got: object, *, field: str | None = None) -> InvalidInput:
    return InvalidInput(
        f"The {param!r} parameter of FeatureView must be {must}. Got {got!r} instead.",
        field=field or param,
    )


@dataclass(frozen=True, kw_only=True, eq=False)
class FeatureView:
    """A named set of features keyed by an entity and stamped with an event time.

    ``entity`` is the key column (or a list of them); ``timestamp`` the event-time column;
    ``created`` an optional column that breaks ties between rows with the same key and
    event time (the latest wins); ``ttl`` how old a row may be and still count (``None``:
    any age); ``source`` a DataFrame or the name of a versioned dataset.

    Example:
        >>> import datetime as dt, pandas as pd
        >>> df = pd.DataFrame({"user": [1], "ts": [pd.Timestamp("2024-01-01")], "x": [0.5]})
        >>> FeatureView(name="u", entity="user", timestamp="ts", features=["x"],
        ...             ttl=dt.timedelta(days=1), source=df).keys
        ('user',)
    """

    name: str
    entity: str | Sequence[str]
    timestamp: str
    features: Sequence[str]
    source: pd.DataFrame | str
    ttl: dt.timedelta | None = None
    created: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.fullmatch(self.name):
            raise _bad("name", "1-128 letters, digits, '_', '.' or '-'", self.name)
        keys = [self.entity] if isinstance(self.entity, str) else list(self.entity)
        if (
            not keys
            or not all(isinstance(k, str) and k for k in keys)
            or len(set(keys)) < len(keys)
        ):
            raise _bad("entity", "a column name or a list of distinct column names", self.entity)
        if not isinstance(self.timestamp, str) or not self.timestamp:
            raise _bad("timestamp", "a column name", self.timestamp)
        if self.created is not None and (not isinstance(self.created, str) or not self.created):
            raise _bad("created", "a column name or None", self.created)
        feats = self.features
        if (
            isinstance(feats, str)
            or not feats
            or not all(isinstance(f, str) and f for f in feats)
            or len(set(feats)) < len(feats)
        ):
            raise _bad("features", "a non-empty list of distinct column names", feats)
        special = {*keys, self.timestamp, *([self.created] if self.created else [])}
        clash = [f for f in feats if f in special]
        if clash:
            raise _bad("features", "columns other than the key and timestamp columns", clash[0])
        reserved = [c for c in [*keys, self.timestamp, *feats] if pit_join.reserved_column(c)]
        if self.created and pit_join.reserved_column(self.created):
            reserved.append(self.created)
        if reserved:
            raise InvalidInput(
                f"column {reserved[0]!r} of feature view {self.name!r} has a name the "
                "feature store uses itself ('file_row_number' and names starting with '__ll_')",
                field=reserved[0],
                hint="rename the column in the source frame",
            )
        if self.ttl is not None and (
            not isinstance(self.ttl, dt.timedelta) or self.ttl <= dt.timedelta(0)
        ):
            raise _bad("ttl", "a positive datetime.timedelta or None", self.ttl)
        if self.ttl is not None and self.ttl > MAX_TTL:
            # The definition keeps the TTL in seconds (a float): timedelta.max does not
            # come back from it (OverflowError on every later read of the views).
            raise InvalidInput(
                f"The 'ttl' parameter of FeatureView must be at most {MAX_TTL.days} days. "
                f"Got {self.ttl!r} instead.",
                field="ttl",
                hint="pass ttl=None for rows that never expire",
            )
        object.__setattr__(self, "features", tuple(feats))
        if isinstance(self.source, pd.DataFrame):
            error = missing_columns(
                list(self.source.columns),
                self._columns(),
                f"the source of feature view {self.name!r}",
            )
            if error is not None:
                raise error
        elif not isinstance(self.source, str) or not self.source:
            raise _bad("source", "a pandas DataFrame or a dataset name", type(self.source))

    @property
    def keys(self) -> tuple[str, ...]:
        """The entity key columns, as a tuple.

        Example:
            >>> # FeatureView(name="shops", entity=["region", "shop"], ...).keys
            >>> # ('region', 'shop')
        """
        return (self.entity,) if isinstance(self.entity, str) else tuple(self.entity)

    def _columns(self) -> list[str]:
        created = [self.created] if self.created else []
        return list(dict.fromkeys([*self.keys, self.timestamp, *created, *self.features]))


def _utc_column(col: pd.Series, what: str) -> pd.Series:
    """``col`` as UTC timestamps at microsecond precision (naive values are UTC)."""
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        out = col if isinstance(col.dtype, pd.DatetimeTZDtype) else col.dt.tz_localize("UTC")
        out = out.dt.tz_convert("UTC")
    elif pd.api.types.is_numeric_dtype(col.dtype) or pd.api.types.is_bool_dtype(col.dtype):
        raise InvalidInput(
            f"{what} holds {col.dtype} values, not timestamps",
            field=str(col.name),
            hint="convert it with pd.to_datetime (tz-aware, or naive meaning UTC)",
        )
    else:
        try:
            out = pd.to_datetime(col, utc=True, format="ISO8601")
        except (ValueError, TypeError) as exc:
            raise InvalidInput(
                f"{what} holds values that are not timestamps, e.g. {_first_bad(col)!r}",
                field=str(col.name),
                hint="give ISO 8601 times, or convert the column with pd.to_datetime "
                "(tz-aware, or naive meaning UTC)",
            ) from exc
    return out.dt.floor("us").astype("datetime64[us, UTC]")


def _first_bad(col: pd.Series) -> object:
    """The first value of ``col`` that does not parse as an ISO 8601 time (for messages)."""
    try:
        parsed = pd.to_datetime(col, utc=True, format="ISO8601", errors="coerce")
        bad = col[col.notna().to_numpy() & parsed.isna().to_numpy()]
        if len(bad):
            return bad.iloc[0]
    except (ValueError, TypeError):  # values of several types: try them one by one
        pass
    for value in col:
        try:
            pd.to_datetime(pd.Series([value]), utc=True, format="ISO8601")
        except (ValueError, TypeError):
            return value
    return None


def _to_utc(value: dt.datetime | pd.Timestamp | str, param: str) -> pd.Timestamp:
    if isinstance(value, bool | int | float | Decimal | np.number):
        # pandas reads a number as nanoseconds since 1970: 1717200000 (seconds) is
        # 1970-01-01T00:00:01.7172.
        raise InvalidInput(
            f"{param}={value!r} is a number, not a timestamp",
            field=param,
            hint="pass a datetime or ISO 8601 text; for seconds since 1970 pass "
            "pd.Timestamp(seconds, unit='s', tz='UTC')",
        )
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(
            f"{param}={value!r} is not a timestamp", field=param, hint="use ISO 8601"
        ) from exc
    if pd.isna(ts):
        raise InvalidInput(f"{param} must be a timestamp, not NaT", field=param)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    if ts.unit == "ns":  # times count in microseconds (to_pydatetime warned and dropped them)
        ts = ts.floor("us")
    if not _FIRST <= ts <= _LAST:  # a Materialization's datetime could not hold it
        raise InvalidInput(
            f"{param} is in the year {ts.year}, outside the years 1 to 9999",
            field=param,
            hint="use ISO 8601",
        )
    return ts


def _epoch_us(ts: pd.Timestamp) -> int:
    return int((ts - _EPOCH) // dt.timedelta(microseconds=1))


def register(view: FeatureView) -> RegisteredView:
    """Store a feature view's definition (and its frame, for a DataFrame source).

    Registering a name again replaces its definition (audited); registering the same
    definition and data again changes nothing. When the new definition has other key
    columns, other features, or a feature of another type (its source column went from
    int to float or text) than the materialized one, the view's online rows are dropped:
    :func:`get_online` raises :class:`Conflict` until :func:`materialize` writes rows of
    the new definition (online rows of the old one would lack the new features, or hold
    values of the old type).

    Example:
        >>> # ll.features.register(ll.features.FeatureView(name="user_stats", ...))
    """
    if not isinstance(view, FeatureView):
        raise InvalidInput(
            f"register() takes a FeatureView. Got {type(view).__name__} instead.", field="view"
        )
    ctx = get_context()
    definition: dict[str, Any] = {
        "entity": list(view.keys),
        "timestamp": view.timestamp,
        "created": view.created,
        "features": list(view.features),
        "ttl_seconds": view.ttl.total_seconds() if view.ttl is not None else None,
    }
    if isinstance(view.source, pd.DataFrame):
        digest, rows = _store_frame(ctx, view)
        definition["rows"] = rows
        return _save(ctx, view, definition, source_kind="frame", digest=digest, dataset=None)
    _check_dataset_ref(view)
    return _save(ctx, view, definition, source_kind="dataset", digest=None, dataset=view.source)


def _save(
    ctx: Context,
    view: FeatureView,
    definition: dict[str, Any],
    *,
    source_kind: str,
    digest: str | None,
    dataset: str | None,
) -> RegisteredView:
    """:func:`save_view`, dropping the online rows of a materialized view whose key columns,
    features or feature types change (after the new definition was checked, so a refused
    one drops nothing).

    A frame source's prepared copy is written first (so that the first get_historical
    call does not, and a frame the join cannot read is refused before it is saved). A
    dataset source is read only when the view was materialized, for its types.
    """
    old = load_views(ctx, [view.name]).get(view.name)
    source = f"frame:{digest}" if source_kind == "frame" else f"dataset:{dataset}"
    new = RegisteredView(
        name=view.name,
        keys=view.keys,
        timestamp=view.timestamp,
        created=view.created,
        features=tuple(view.features),
        ttl=view.ttl,
        source=source,
        rows=definition.get("rows"),
        registered_at=dt.datetime.now(dt.UTC),
        updated_at=dt.datetime.now(dt.UTC),
    )
    materialized = old is not None and old.last_materialization is not None
    types = None
    if source_kind == "frame":
        types = _online_types(ctx, new)
    elif materialized:
        types = _readable_types(ctx, new)
    change = None
    if old is not None and materialized:
        served = _served_types(ctx, view.name) if types is not None else None
        change = online_change(old.keys, old.features, view.keys, view.features, served, types)
    if change:
        # Before saving, so that an unreachable online store fails the registration
        # instead of leaving rows of the old definition to be served.
        _drop_online_rows(ctx, view.name, view.keys, view.features, change)
    saved = save_view(
        ctx, view.name, definition, source_kind=source_kind, digest=digest, dataset=dataset
    )
    if change:
        # And after: a materialization that read the old definition may have written
        # since (it checks the definition again after writing, see materialize).
        _drop_online_rows(ctx, view.name, view.keys, view.features, change)
    return saved


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


def _check_dataset_ref(view: FeatureView) -> None:
    """Refuse a dataset source that is no ``name[@version]`` now, not at the first query.

    The dataset itself is looked up at query time (``name`` follows its latest version).
    """
    from loopline.data.datasets import parse_ref

    assert isinstance(view.source, str)
    try:
        parse_ref(view.source)
    except InvalidInput as exc:
        raise InvalidInput(
            f"the source {view.source!r} of feature view {view.name!r} is not a dataset "
            f"reference: {exc.args[0]}",
            field="source",
            hint="pass a DataFrame, or a dataset as NAME or NAME@VERSION (e.g. churn@3)",
        ) from exc


def _store_frame(ctx: Context, view: FeatureView) -> tuple[str, int]:
    """Write the view's columns as Parquet (UTC timestamps) to the artifact store."""
    assert isinstance(view.source, pd.DataFrame)
    frame = view.source[view._columns()].copy()
    what = f"column {view.timestamp!r} of the source of feature view {view.name!r}"
    frame[view.timestamp] = _utc_column(frame[view.timestamp], what)
    created = view.created
    # Text (pandas 3 reads it as the ``str`` dtype, not object) must become times: compared
    # as text, "10:00+05:00" is newer than "06:00Z" though it is an hour older.
    if created and (
        pd.api.types.is_datetime64_any_dtype(frame[created].dtype)
        or pd.api.types.is_object_dtype(frame[created].dtype)
        or pd.api.types.is_string_dtype(frame[created].dtype)
    ):
        what = f"column {created!r} of the source of feature view {view.name!r}"
        frame[created] = _utc_column(frame[created], what)
    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InvalidInput(
            f"the source of feature view {view.name!r} cannot be stored as Parquet: {exc}",
            field="source",
            hint="give every column one type",
        ) from exc
    with tempfile.TemporaryDirectory(prefix="loopline-fv-") as tmp:
        path = Path(tmp) / "view.parquet"
        pq.write_table(table, path, row_group_size=_ROW_GROUP)
        return ctx.artifacts.put_file(path), len(frame)


def _view_name(view_name: object) -> str:
    """The name ``view_name`` stands for: itself for a string, the ``name`` of a
    :class:`FeatureView` or :class:`RegisteredView` (Feast users pass view objects);
    anything else is :class:`InvalidInput` naming ``view_name``."""
    if isinstance(view_name, str):
        return view_name
    if isinstance(view_name, FeatureView | RegisteredView):
        return view_name.name
    raise InvalidInput(
        "The 'view_name' parameter must be a feature view's name, a FeatureView or a "
        f"RegisteredView. Got {type(view_name).__name__} instead.",
        field="view_name",
        hint="pass the view's name, e.g. 'user_stats'",
    )


def get_view(view_name: str | FeatureView | RegisteredView) -> RegisteredView:
    """The stored definition of the view ``view_name`` (a name, or a view object whose
    name is taken); :class:`NotFound` if there is none.

    Example:
        >>> # ll.features.get_view("user_stats").features
    """
    name = _view_name(view_name)
    ctx = get_context()
    found = load_views(ctx, [name]).get(name)
    if found is None:
        raise not_found(ctx, name)
    return found


def list_views() -> list[RegisteredView]:
    """Every registered feature view, by name.

    Example:
        >>> # [v.name for v in ll.features.list_views()]
    """
    return list(load_views(get_context()).values())


def _views(ctx: Context, names: Sequence[str]) -> dict[str, RegisteredView]:
    found = load_views(ctx, list(dict.fromkeys(names)))
    for name in names:
        if name not in found:
            raise not_found(ctx, name)
    return found


# -- offline: point-in-time training sets --------------------------------------------


def _parse_refs(features: Sequence[str]) -> dict[str, list[str]]:
    if isinstance(features, str) or not features:
        raise InvalidInput(
            f"features must be a non-empty list of 'view:feature' strings. Got {features!r}.",
            field="features",
        )
    by_view: dict[str, list[str]] = {}
    for ref in features:
        view, sep, feature = ref.partition(":") if isinstance(ref, str) else ("", "", "")
        if not sep or not view or not feature:
            # A view object's repr would print its whole source frame.
            shown = repr(ref) if isinstance(ref, str) else f"of type {type(ref).__name__}"
            raise InvalidInput(
                f"feature reference {shown} is not of the form 'view:feature'",
                field="features",
                hint="e.g. 'user_stats:clicks_7d'",
            )
        by_view.setdefault(view, []).append(feature)
    return by_view


def _check_output_names(
    by_view: dict[str, list[str]],
    outputs: list[list[str]],
    columns: list[str],
    full_names: bool,
) -> None:
    """Refuse result columns that would share a name, with the remedy that fits the cause."""
    refs = [(view, f) for view, feats in by_view.items() for f in feats]
    for view, feats in by_view.items():
        twice = duplicate_names(feats)
        if twice:
            raise InvalidInput(
                f"feature {twice[0]!r} of view {view!r} is listed more than once",
                field="features",
                hint="list each feature once",
            )
    flat = [o for names in outputs for o in names]
    taken = [o for o in flat if o in columns]
    if taken:
        raise InvalidInput(
            f"result column {taken[0]!r} would clash with the entity frame's column of that name",
            field="features",
            hint="rename the entity frame's column"
            + ("" if full_names else ", or pass full_names=True to name columns 'view__feature'"),
        )
    same = duplicate_names(flat)
    if same:
        clashing = [f"{v}:{f}" for (v, f), o in zip(refs, flat, strict=True) if o == same[0]]
        raise InvalidInput(
            f"features {' and '.join(map(repr, clashing))} would both be named {same[0]!r} in "
            "the result",
            field="features",
            hint=(
                "a view or feature name holding '__' makes 'view__feature' names meet: "
                "get these features in separate calls, or rename the view or the feature"
                if full_names
                else "pass full_names=True to name the columns 'view__feature'"
            ),
        )


def _plain_key(col: pd.Series) -> pd.Series:
    """A categorical key column as its categories' type (DuckDB sees a categorical as an
    ENUM, which no view's key column is); other columns as they are."""
    if not isinstance(col.dtype, pd.CategoricalDtype):
        return col
    try:
        return col.astype(col.cat.categories.dtype)
    except (TypeError, ValueError):  # integer categories and nulls: no int64 holds both
        return col.astype(object)


def get_historical(
    entity_df: pd.DataFrame,
    features: Sequence[str],
    timestamp: str = "event_timestamp",
    *,
    full_names: bool = False,
) -> pd.DataFrame:
    """A point-in-time correct training set: ``entity_df`` plus one column per feature.

    Every entity row is kept, in its original order and with its original index. Each
    feature column (named after the feature; ``view__feature`` with ``full_names=True``)
    holds, for that row's key, the latest feature value whose event time is at or before
    the row's ``timestamp`` and not older than the view's TTL; else null. Features may come
    from several views at once.

    Example:
        >>> # train = ll.features.get_historical(orders, ["user_stats:clicks_7d",
        >>> #                                             "merchant:fraud_rate"])
    """
    if not isinstance(full_names, bool):
        raise InvalidInput(
            f"full_names must be True or False. Got {type(full_names).__name__} instead.",
            field="full_names",
        )
    if not isinstance(entity_df, pd.DataFrame):
        raise InvalidInput(
            f"entity_df must be a pandas DataFrame. Got {type(entity_df).__name__} instead.",
            field="entity_df",
        )
    by_view = _parse_refs(features)
    columns = [str(c) for c in entity_df.columns]
    dupes = duplicate_names(columns)
    if dupes:
        raise InvalidInput(
            f"the entity frame has duplicate column names: {', '.join(map(repr, dupes))}",
            field=dupes[0],
            hint="rename the columns so that each name is used once",
        )
    if timestamp not in columns:
        raise InvalidInput(
            f"the entity frame has no timestamp column {timestamp!r}; "
            f"its columns: {', '.join(columns)}",
            field="timestamp",
            hint="pass timestamp='<the column with the event times>'",
        )
    ctx = get_context()
    views = _views(ctx, list(by_view))
    outputs: list[list[str]] = []
    for name, feats in by_view.items():
        view = views[name]
        for f in feats:
            if f not in view.features:
                raise NotFound(
                    f"feature view {name!r} has no feature {f!r}; "
                    f"its features: {', '.join(view.features)}",
                    hint="check the spelling, or register the view with that feature",
                )
        error = missing_columns(
            columns, list(view.keys), f"the entity frame (keys of feature view {name!r})"
        )
        if error is not None:
            raise error
        outputs.append([f"{name}__{f}" if full_names else f for f in feats])
    _check_output_names(by_view, outputs, columns, full_names)
    keys = list(dict.fromkeys(k for name in by_view for k in views[name].keys))
    what = f"timestamp column {timestamp!r} of the entity frame"
    entities = pd.DataFrame(
        {
            **{k: _plain_key(entity_df[k]).array for k in keys},
            pit_join.ENTITY_TS: _utc_column(entity_df[timestamp], what).array,
            pit_join.ROW: np.arange(len(entity_df), dtype=np.int64),
        }
    )
    con = pit_join.connect(ctx.settings.home / "tmp" / "duckdb")
    try:
        prepared = [prepared_view(ctx, con, views[n], feats) for n, feats in by_view.items()]
        feats_df = pit_join.historical(con, entities, prepared, outputs)
    finally:
        con.close()
    result = pd.concat([entity_df.reset_index(drop=True), feats_df], axis=1)
    result.index = entity_df.index
    return result


# -- online --------------------------------------------------------------------------

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


def _key_part(value: object) -> str:
    """One key value's text: a whole float as an integer, since the join matches 1.0 to 1
    (a key column with a missing value is float64 in pandas)."""
    if isinstance(value, float | np.floating) and value.is_integer():
        return str(int(value))
    return str(value)


def _joined(parts: Iterator[str]) -> str:
    """Key parts joined by KEY_SEP, escaped so that no two keys share a text: a part holding
    KEY_SEP (or the escape character) would otherwise read as two parts."""
    return KEY_SEP.join(
        p.replace(_ESC, _ESC + "0").replace(KEY_SEP, _ESC + "1") if _ESC in p or KEY_SEP in p else p
        for p in parts
    )


def encode_key(key: object) -> str:
    """The online store's text form of an entity key (a tuple for several key columns).

    Example:
        >>> encode_key(42), encode_key(42.0), encode_key(("eu", 7)) == "eu\\x1f7"
        ('42', '42', True)
    """
    if isinstance(key, tuple | list):
        return _joined(_key_part(k) for k in key)
    return _key_part(key)


def iso_duration(value: dt.timedelta) -> str:
    """A duration as ISO 8601 text, the form of ``pd.Timedelta.isoformat`` (a negative one
    with a leading ``-``); ``pd.Timedelta(text)`` reads it back.

    Example:
        >>> iso_duration(dt.timedelta(days=1, seconds=5, microseconds=500_000))
        'P1DT0H0M5.5S'
        >>> iso_duration(-dt.timedelta(seconds=1))
        '-P0DT0H0M1S'
    """
    us = value // dt.timedelta(microseconds=1)
    sign, us = ("-", -us) if us < 0 else ("", us)
    days, us = divmod(us, 86_400_000_000)
    seconds, fraction = divmod(us, 1_000_000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    digits = f".{fraction:06d}".rstrip("0") if fraction else ""
    return f"{sign}P{days}DT{hours}H{minutes}M{seconds}{digits}S"


def _json_value(value: object) -> object:
    """What orjson writes for a value it has no JSON form of (called for those only)."""
    if isinstance(value, Decimal):  # one nested in a list or struct: a float, as at the top
        return float(value)
    if isinstance(value, dt.timedelta):
        return iso_duration(value)
    return str(value)


def _special(value: Any, path: list[Any], odd: list[list[Any]]) -> Any:
    """``value`` with each value JSON has no form of replaced by None, noted in ``odd`` as
    ``[path, kind, text]``: an inf, -inf or NaN (kind ``"f"``, text ``'inf'``...) and
    bytes (kind ``"b"``, text base64)."""
    if isinstance(value, float):
        if value - value == 0:  # finite (inf - inf and NaN - NaN are NaN)
            return value
        odd.append([path, "f", repr(value)])  # 'inf', '-inf', 'nan': float() reads them
        return None
    if isinstance(value, bytes | bytearray):
        odd.append([path, "b", base64.b64encode(value).decode()])
        return None
    if isinstance(value, list | tuple):
        return [_special(v, [*path, i], odd) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _special(v, [*path, k], odd) for k, v in value.items()}
    return value


def _pack_special(row: dict[str, Any]) -> bytes:
    """A row holding inf, -inf, NaN or bytes, which JSON has no form of (orjson writes
    null for the first and refuses bytes): ``[row with nulls there, [[path, kind, text],
    ...]]``. A plain row is a JSON object, so the first byte tells the two apart
    (:func:`_unpack`)."""
    odd: list[list[Any]] = []
    clean = {k: _special(v, [k], odd) for k, v in row.items()}
    return orjson.dumps([clean, odd], default=_json_value)


def _unpack(packed: bytes) -> dict[str, Any]:
    """A row written by :func:`_pack_special`, with its floats and bytes back."""
    row, odd = orjson.loads(packed)
    for path, kind, text in odd:
        target = row
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = float(text) if kind == "f" else base64.b64decode(text)
    result: dict[str, Any] = row
    return result


def _packed_rows(
    rows: Iterator[tuple[Any, ...]], n_keys: int, features: Sequence[str]
) -> Iterator[tuple[str, bytes]]:
    """``(key text, packed row)`` of :func:`pit_join.latest_rows`'s tuples."""
    dumps, names = orjson.dumps, tuple(features)
    rows = iter(rows)
    first = next(rows, None)
    if first is None:
        return
    # A column's values all have one type: only float keys need _key_part's care.
    part: Any = _key_part if any(isinstance(k, float) for k in first[:n_keys]) else str
    for row in itertools.chain([first], rows):
        key = part(row[0]) if n_keys == 1 else _joined(map(part, row[:n_keys]))
        values = dict(zip(names, row[n_keys:-1], strict=True))
        if row[-1]:  # may hold inf, -inf, NaN or bytes
            yield key, _pack_special(values)
        else:
            yield key, dumps(values, default=_json_value)


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
