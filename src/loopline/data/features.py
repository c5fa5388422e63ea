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

The code lives in modules with one job each, and this module hands on their public
names (``ll.features``): :mod:`loopline.data.feature_views` (:class:`FeatureView`,
:func:`register`, :func:`get_view`, :func:`list_views`), :mod:`loopline.data.training_sets`
(:func:`get_historical`) and :mod:`loopline.data.feature_serving` (:func:`materialize`,
:func:`get_online`).

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

from loopline.data.feature_registry import Materialization, RegisteredView
from loopline.data.feature_serving import get_online, materialize
from loopline.data.feature_views import FeatureView, get_view, list_views, register
from loopline.data.training_sets import get_historical

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
