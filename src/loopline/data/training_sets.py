"""Point-in-time training sets: :func:`get_historical`.

Checks the feature references and the entity frame, names the result columns, and hands
the join to :mod:`loopline.data.pit_join` (DuckDB, ASOF JOIN over the views' prepared
Parquet copies from :mod:`loopline.data.feature_sources`). The offline half of the
feature store, apart from the definitions (:mod:`loopline.data.feature_views`) and the
online half (:mod:`loopline.data.feature_serving`). The public face is
:mod:`loopline.data.features` (``ll.features.get_historical``).

Example:
    >>> # train = ll.features.get_historical(orders, ["user_stats:clicks_7d"])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from loopline.core.columns import duplicate_names
from loopline.core.context import get_context
from loopline.data import pit_join
from loopline.data.feature_sources import missing_columns, prepared_view
from loopline.data.feature_times import _utc_column
from loopline.data.feature_views import _views
from loopline.errors import InvalidInput, NotFound


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
