"""Point-in-time correctness of ``ll.features.get_historical`` against a pandas reference."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import loopline as ll
from loopline.core.context import Context
from loopline.data.feature_views import FeatureView

T0 = pd.Timestamp("2024-03-01T00:00:00Z")


def _t(seconds: float, tz: str | None = "UTC") -> pd.Timestamp:
    ts = T0 + pd.Timedelta(seconds=seconds)
    return ts.tz_convert(tz) if tz else ts.tz_convert("UTC").tz_localize(None)


# -- the reference: a row-by-row scan, written for clarity, not speed -----------------


@dataclass
class RefView:
    name: str
    frame: pd.DataFrame
    keys: list[str]
    timestamp: str
    features: list[str]
    ttl: dt.timedelta | None = None
    created: str | None = None


def _utc(value: Any) -> pd.Timestamp | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def reference(entity_df: pd.DataFrame, views: Sequence[RefView], timestamp: str) -> pd.DataFrame:
    """For each entity row: the latest feature row at or before its time, within the TTL,
    same-time rows told apart by created (latest wins; missing created is oldest), then by
    position (last wins)."""
    out = entity_df.copy()
    for view in views:
        rows = list(view.frame.to_dict("records"))
        values: dict[str, list[Any]] = {f: [] for f in view.features}
        for _, entity in entity_df.iterrows():
            ets = _utc(entity[timestamp])
            best: tuple[Any, ...] | None = None
            best_row: dict[str, Any] | None = None
            for pos, row in enumerate(rows):
                fts = _utc(row[view.timestamp])
                if ets is None or fts is None:
                    continue
                if any(pd.isna(entity[k]) or entity[k] != row[k] for k in view.keys):
                    continue
                if fts > ets or (view.ttl is not None and fts < ets - view.ttl):
                    continue
                created = _utc(row[view.created]) if view.created else None
                rank = (fts, created is not None, created if created is not None else T0, pos)
                if best is None or rank > best:
                    best, best_row = rank, row
            for f in view.features:
                values[f].append(None if best_row is None else best_row[f])
        for f in view.features:
            out[f] = values[f]
    return out


def _same(a: Any, b: Any) -> bool:
    a_null = a is None or (not isinstance(a, str) and pd.isna(a))
    b_null = b is None or (not isinstance(b, str) and pd.isna(b))
    if a_null or b_null:
        return a_null and b_null
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b))
    return bool(a == b)


def assert_matches(result: pd.DataFrame, expected: pd.DataFrame, features: Sequence[str]) -> None:
    assert list(result.index) == list(expected.index)
    assert list(result.columns) == list(expected.columns)
    for col in expected.columns:
        if col in features:
            got, want = list(result[col]), list(expected[col])
            bad = [i for i, (g, w) in enumerate(zip(got, want, strict=True)) if not _same(g, w)]
            assert not bad, f"{col}: rows {bad[:5]} got {[got[i] for i in bad[:5]]} "
            f"want {[want[i] for i in bad[:5]]}"
        else:
            pd.testing.assert_series_equal(result[col], expected[col])


def _register(v: RefView) -> None:
    ll.features.register(
        FeatureView(
            name=v.name,
            entity=v.keys if len(v.keys) > 1 else v.keys[0],
            timestamp=v.timestamp,
            features=v.features,
            ttl=v.ttl,
            source=v.frame,
            created=v.created,
        )
    )


def check(
    entity_df: pd.DataFrame, views: Sequence[RefView], timestamp: str = "event_timestamp"
) -> pd.DataFrame:
    for v in views:
        _register(v)
    refs = [f"{v.name}:{f}" for v in views for f in v.features]
    result = ll.features.get_historical(entity_df, refs, timestamp=timestamp)
    features = [f for v in views for f in v.features]
    assert_matches(result, reference(entity_df, views, timestamp), features)
    return result


# -- corner cases -------------------------------------------------------------------


def test_exact_timestamp_match_is_included(embedded_ctx: Context) -> None:
    frame = pd.DataFrame(
        {"user": [1, 1], "ts": [_t(0), _t(10)], "clicks": [1.0, 2.0]},
    )
    entities = pd.DataFrame({"user": [1, 1, 1], "event_timestamp": [_t(10), _t(9), _t(0)]})
    result = check(entities, [RefView("u", frame, ["user"], "ts", ["clicks"])])
    assert result["clicks"].tolist() == [2.0, 1.0, 1.0]


def test_same_timestamp_rows_told_apart_by_created(embedded_ctx: Context) -> None:
    frame = pd.DataFrame(
        {
            "user": [1, 1, 1, 2, 2],
            "ts": [_t(5), _t(5), _t(5), _t(5), _t(5)],
            "created": [_t(7), _t(9), _t(8), None, _t(6)],
            "score": [10.0, 30.0, 20.0, 40.0, 50.0],
        }
    )
    entities = pd.DataFrame({"user": [1, 2], "event_timestamp": [_t(5), _t(6)]})
    result = check(entities, [RefView("s", frame, ["user"], "ts", ["score"], created="created")])
    # the latest created wins; a row without created counts as the oldest
    assert result["score"].tolist() == [30.0, 50.0]


def test_rows_older_than_the_ttl_are_null(embedded_ctx: Context) -> None:
    frame = pd.DataFrame({"user": [1, 2], "ts": [_t(0), _t(0)], "x": [1.0, 2.0]})
    entities = pd.DataFrame({"user": [1, 1, 2], "event_timestamp": [_t(60), _t(61), _t(59.999)]})
    ttl = dt.timedelta(seconds=60)
    result = check(entities, [RefView("t", frame, ["user"], "ts", ["x"], ttl=ttl)])
    # the TTL boundary is inclusive: exactly ttl old still counts
    assert _same(result["x"].tolist()[0], 1.0)
    assert pd.isna(result["x"].tolist()[1])
    assert result["x"].tolist()[2] == 2.0


def test_ttl_applies_after_the_asof_match(embedded_ctx: Context) -> None:
    # An older row inside the TTL must not win over a newer row that is too old... the
    # newest row is the match, and it is the only candidate that can be within the TTL.
    frame = pd.DataFrame({"user": [1, 1], "ts": [_t(0), _t(100)], "x": [1.0, 2.0]})
    entities = pd.DataFrame({"user": [1, 1], "event_timestamp": [_t(150), _t(200)]})
    result = check(
        entities, [RefView("t2", frame, ["user"], "ts", ["x"], ttl=dt.timedelta(seconds=60))]
    )
    assert result["x"].tolist()[0] == 2.0
    assert pd.isna(result["x"].tolist()[1])


def test_entity_without_feature_rows_is_null(embedded_ctx: Context) -> None:
    frame = pd.DataFrame({"user": [1], "ts": [_t(0)], "x": [1.5], "label": ["a"]})
    entities = pd.DataFrame({"user": [2, 1, 3], "event_timestamp": [_t(5), _t(5), _t(-5)]})
    result = check(entities, [RefView("n", frame, ["user"], "ts", ["x", "label"])])
    assert pd.isna(result["x"].iloc[0]) and pd.isna(result["label"].iloc[0])
    assert result["x"].iloc[1] == 1.5 and result["label"].iloc[1] == "a"


def test_entity_row_before_all_feature_rows_is_null(embedded_ctx: Context) -> None:
    frame = pd.DataFrame({"user": [1], "ts": [_t(10)], "x": [1.0]})
    entities = pd.DataFrame({"user": [1], "event_timestamp": [_t(9.999999)]})
    result = check(entities, [RefView("b", frame, ["user"], "ts", ["x"])])
    assert pd.isna(result["x"].iloc[0])


def test_duplicate_feature_rows(embedded_ctx: Context) -> None:
    frame = pd.DataFrame(
        {
            "user": [1, 1, 1, 1],
            "ts": [_t(1), _t(1), _t(2), _t(2)],
            "x": [5.0, 5.0, 6.0, 7.0],
        }
    )
    entities = pd.DataFrame({"user": [1, 1, 1], "event_timestamp": [_t(1), _t(2), _t(3)]})
    result = check(entities, [RefView("d", frame, ["user"], "ts", ["x"])])
    # exact duplicates collapse; on a full tie the row that comes last in the source wins
    assert result["x"].tolist() == [5.0, 7.0, 7.0]


def test_timestamps_in_different_time_zones(embedded_ctx: Context) -> None:
    frame = pd.DataFrame(
        {
            "user": [1, 1, 1],
            "ts": [_t(0, "Asia/Tokyo"), _t(3600, "Asia/Tokyo"), _t(7200, "Asia/Tokyo")],
            "x": [1.0, 2.0, 3.0],
        }
    )
    entities = pd.DataFrame(
        {
            "user": [1, 1, 1, 1],
            "event_timestamp": [
                _t(3599, "America/New_York"),
                _t(3600, "America/New_York"),
                _t(7199, "Europe/Paris"),
                _t(7200, "Europe/Paris"),
            ],
        }
    )
    result = check(entities, [RefView("z", frame, ["user"], "ts", ["x"])])
    assert result["x"].tolist() == [1.0, 2.0, 2.0, 3.0]
    # the entity frame's own column comes back untouched, zones and all
    assert [t.tzinfo for t in result["event_timestamp"]] == [
        t.tzinfo for t in entities["event_timestamp"]
    ]


def test_naive_timestamps_are_utc(embedded_ctx: Context) -> None:
    frame = pd.DataFrame({"user": [1, 1], "ts": [_t(0, None), _t(10, None)], "x": [1.0, 2.0]})
    entities = pd.DataFrame(
        {"user": [1, 1, 1], "event_timestamp": [_t(9, "Asia/Kolkata"), _t(10), _t(10, None)]}
    )
    result = check(entities, [RefView("nv", frame, ["user"], "ts", ["x"])])
    assert result["x"].tolist() == [1.0, 2.0, 2.0]


def test_entity_order_and_index_are_preserved(embedded_ctx: Context) -> None:
    rng = np.random.default_rng(7)
    n = 500
    frame = pd.DataFrame(
        {
            "user": rng.integers(0, 20, 300),
            "ts": [_t(int(s)) for s in rng.integers(0, 1000, 300)],
            "x": rng.normal(size=300),
        }
    )
    entities = pd.DataFrame(
        {
            "event_timestamp": [_t(int(s)) for s in rng.integers(-50, 1100, n)],
            "user": rng.integers(0, 25, n),
            "other": [f"row{i}" for i in range(n)],
        },
        index=pd.Index(rng.integers(0, 50, n), name="idx"),  # unsorted, with duplicates
    )
    result = check(
        entities, [RefView("o", frame, ["user"], "ts", ["x"], ttl=dt.timedelta(seconds=300))]
    )
    assert result["other"].tolist() == entities["other"].tolist()
    assert result.index.equals(entities.index)


def test_several_views_in_one_call(embedded_ctx: Context) -> None:
    users = pd.DataFrame(
        {
            "user": [1, 1, 2],
            "ts": [_t(0), _t(10), _t(5)],
            "clicks": [1, 2, 3],
            "tier": ["a", "b", "c"],
        }
    )
    merchants = pd.DataFrame(
        {
            "merchant": ["m1", "m2", "m1"],
            "region": ["eu", "eu", "us"],
            "updated": [_t(2), _t(3), _t(8)],
            "rate": [0.1, 0.2, 0.3],
        }
    )
    entities = pd.DataFrame(
        {
            "user": [1, 2, 1, 3],
            "merchant": ["m1", "m1", "m2", "m1"],
            "region": ["eu", "us", "eu", "us"],
            "event_timestamp": [_t(9), _t(9), _t(11), _t(9)],
        }
    )
    views = [
        RefView("users", users, ["user"], "ts", ["clicks", "tier"]),
        RefView("merchants", merchants, ["merchant", "region"], "updated", ["rate"]),
    ]
    result = check(entities, views)
    assert result["clicks"].tolist()[:3] == [1, 3, 2]
    assert pd.isna(result["clicks"].iloc[3])
    assert result["rate"].tolist()[:3] == [0.1, 0.3, 0.2]


def test_full_names_avoid_clashes(embedded_ctx: Context) -> None:
    a = pd.DataFrame({"user": [1], "ts": [_t(0)], "x": [1.0]})
    b = pd.DataFrame({"user": [1], "ts": [_t(0)], "x": [2.0]})
    _register(RefView("a", a, ["user"], "ts", ["x"]))
    _register(RefView("b", b, ["user"], "ts", ["x"]))
    entities = pd.DataFrame({"user": [1], "event_timestamp": [_t(1)]})
    with pytest.raises(ll.InvalidInput, match="'x'"):
        ll.features.get_historical(entities, ["a:x", "b:x"])
    result = ll.features.get_historical(entities, ["a:x", "b:x"], full_names=True)
    assert result[["a__x", "b__x"]].iloc[0].tolist() == [1.0, 2.0]


def test_null_keys_and_timestamps_match_nothing(embedded_ctx: Context) -> None:
    frame = pd.DataFrame({"user": pd.array([1, None], dtype="Int64"), "ts": [_t(0), _t(0)]})
    frame["x"] = [1.0, 2.0]
    entities = pd.DataFrame(
        {
            "user": pd.array([None, 1, 1], dtype="Int64"),
            "event_timestamp": [_t(1), pd.NaT, _t(1)],
        }
    )
    _register(RefView("nk", frame, ["user"], "ts", ["x"]))
    result = ll.features.get_historical(entities, ["nk:x"])
    assert pd.isna(result["x"].iloc[0]) and pd.isna(result["x"].iloc[1])
    assert result["x"].iloc[2] == 1.0


def test_empty_entity_frame(embedded_ctx: Context) -> None:
    frame = pd.DataFrame({"user": [1], "ts": [_t(0)], "x": [1.0]})
    _register(RefView("e", frame, ["user"], "ts", ["x"]))
    entities = pd.DataFrame(
        {"user": pd.Series([], dtype="int64"), "event_timestamp": pd.Series([], dtype="M8[ns]")}
    )
    result = ll.features.get_historical(entities, ["e:x"])
    assert list(result.columns) == ["user", "event_timestamp", "x"] and len(result) == 0


def test_feature_dtypes_hold_their_values_and_nulls(embedded_ctx: Context) -> None:
    frame = pd.DataFrame(
        {
            "user": [1, 2],
            "ts": [_t(0), _t(0)],
            "i": [1, 2],
            "flag": [True, False],
            "s": ["a", "b"],
            "f32": np.array([1.5, 2.5], dtype="float32"),
            "u8": np.array([1, 2], dtype="uint8"),
            "when": [_t(5), _t(6)],
            "naive": [_t(5, None), _t(6, None)],
            "day": [dt.date(2024, 1, 1), dt.date(2024, 1, 2)],
            "ni": pd.array([None, 2], dtype="Int64"),
        }
    )
    feats = [c for c in frame.columns if c not in ("user", "ts")]
    _register(RefView("dt", frame, ["user"], "ts", feats))
    refs = [f"dt:{f}" for f in feats]
    every = pd.DataFrame({"user": [2, 1], "event_timestamp": [_t(1), _t(1)]})
    result = ll.features.get_historical(every, refs)
    assert {f: str(result[f].dtype) for f in feats} == {
        "i": "int64",
        "flag": "bool",
        "s": "str",
        "f32": "float32",
        "u8": "uint8",
        "when": "datetime64[us, UTC]",
        "naive": "datetime64[us]",
        "day": "datetime64[us]",
        "ni": "Int64",
    }
    assert result.iloc[0][["i", "flag", "s", "f32", "u8", "ni"]].tolist() == [
        2,
        False,
        "b",
        2.5,
        2,
        2,
    ]
    assert result["when"].tolist() == [_t(6), _t(5)]
    # A row without a match: integers and booleans become nullable, floats hold NaN.
    some = pd.DataFrame({"user": [2, 3], "event_timestamp": [_t(1), _t(1)]})
    result = ll.features.get_historical(some, refs)
    assert {f: str(result[f].dtype) for f in ("i", "flag", "u8", "f32", "when")} == {
        "i": "Int64",
        "flag": "boolean",
        "u8": "UInt8",
        "f32": "float32",
        "when": "datetime64[us, UTC]",
    }
    assert result.iloc[0][["i", "flag", "s", "u8"]].tolist() == [2, False, "b", 2]
    assert result.iloc[1][feats].isna().all()


# -- property-based: random small data against the reference ------------------------

_keys = st.integers(min_value=0, max_value=2)
_secs = st.integers(min_value=0, max_value=8)
_zones = st.sampled_from([None, "UTC", "Asia/Tokyo", "America/Los_Angeles"])


@st.composite
def _case(draw: st.DrawFn) -> tuple[pd.DataFrame, pd.DataFrame, dt.timedelta | None, bool]:
    n = draw(st.integers(min_value=0, max_value=25))
    with_created = draw(st.booleans())
    fzone, ezone = draw(_zones), draw(_zones)
    frame = pd.DataFrame(
        {
            "k": [draw(_keys) for _ in range(n)],
            "ts": pd.Series([_t(draw(_secs), fzone) for _ in range(n)], dtype=object),
            "created": [
                _t(draw(st.integers(0, 3))) if draw(st.booleans()) else None for _ in range(n)
            ],
            "v": [float(i) for i in range(n)],
        }
    )
    frame["ts"] = pd.to_datetime(frame["ts"]) if n else pd.Series([], dtype="M8[ns]")
    m = draw(st.integers(min_value=1, max_value=15))
    entities = pd.DataFrame(
        {
            "k": [draw(st.integers(0, 3)) for _ in range(m)],
            "event_timestamp": [_t(draw(st.integers(-2, 11)), ezone) for _ in range(m)],
        }
    )
    ttl_s = draw(st.one_of(st.none(), st.integers(min_value=1, max_value=6)))
    ttl = dt.timedelta(seconds=ttl_s) if ttl_s is not None else None
    return frame, entities, ttl, with_created


@settings(
    max_examples=100,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=_case())
def test_matches_the_reference_on_random_data(
    embedded_ctx: Context,
    case: tuple[pd.DataFrame, pd.DataFrame, dt.timedelta | None, bool],
) -> None:
    frame, entities, ttl, with_created = case
    if not with_created:
        frame = frame.drop(columns=["created"])
    view = RefView(
        "prop",
        frame,
        ["k"],
        "ts",
        ["v"],
        ttl=ttl,
        created="created" if with_created else None,
    )
    check(entities, [view])


def test_large_training_set_keeps_values_with_their_rows(embedded_ctx: Context) -> None:
    # Big enough for DuckDB to scan in parallel: every fetch path (floats by NumPy, text
    # by Arrow, integers by DuckDB) must keep each value on its own entity row.
    n_keys, n_rows = 50_000, 400_000
    keys = np.arange(n_keys)
    frame = pd.DataFrame(
        {"user": keys, "ts": _t(0), "i": keys * 3, "x": keys * 0.5, "s": keys.astype(str)}
    )
    _register(RefView("big", frame, ["user"], "ts", ["i", "x", "s"]))
    users = np.random.default_rng(5).integers(0, n_keys + 5_000, n_rows)  # some unknown
    entities = pd.DataFrame({"user": users, "event_timestamp": _t(1)})
    result = ll.features.get_historical(entities, ["big:i", "big:x", "big:s"])
    known = users < n_keys
    assert result["user"].tolist() == users.tolist()
    assert result["i"].isna().to_numpy().tolist() == (~known).tolist()
    assert (result["i"][known].to_numpy() == users[known] * 3).all()
    assert (result["x"][known].to_numpy() == users[known] * 0.5).all()
    assert result["s"][known].tolist() == users[known].astype(str).tolist()
