"""Feature view definitions: :class:`FeatureView`, registering one, looking views up.

:class:`FeatureView` checks a definition when it is made (names, keys, TTL, the columns of
a frame source); :func:`register` stores it (a frame source as Parquet in the artifact
store, content-addressed), and, when the definition changes what the online store holds,
drops the view's online rows (:mod:`loopline.data.online_consistency`);
:func:`get_view` and :func:`list_views` read the stored definitions back. Kept apart from
the training sets (:mod:`loopline.data.training_sets`) and the online store
(:mod:`loopline.data.feature_serving`), which take views by name from here. The public
face is :mod:`loopline.data.features` (``ll.features``).

Example:
    >>> # ll.features.register(ll.features.FeatureView(name="user_stats", ...))
"""

from __future__ import annotations

import datetime as dt
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from loopline.core.context import Context, get_context
from loopline.data import pit_join
from loopline.data.feature_registry import RegisteredView, load_views, not_found, save_view
from loopline.data.feature_sources import missing_columns
from loopline.data.feature_times import _utc_column
from loopline.data.online_consistency import (
    _drop_online_rows,
    _online_types,
    _readable_types,
    _served_types,
    online_change,
)
from loopline.errors import InvalidInput

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")
_ROW_GROUP = 128 * 1024
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


def _check_dataset_ref(view: FeatureView) -> None:
    """Refuse a dataset source that is no ``name[@version]`` now, not at the first query.

    The dataset itself is looked up at query time (``name`` follows its latest version).
    """
    from loopline.data.dataset_refs import parse_ref

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
