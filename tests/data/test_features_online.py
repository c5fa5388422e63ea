"""The online store: one conformance suite per backend, then materialize + get_online."""

from __future__ import annotations

import datetime as dt
import math
import signal
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import loopline as ll
from loopline.core.context import Context
from loopline.data import feature_views, online_consistency, pit_join
from loopline.data.feature_views import FeatureView
from loopline.data.online import (
    OnlineStore,
    RedisOnlineStore,
    SQLiteOnlineStore,
    open_online_store,
)
from tests.conftest import run_python

T0 = pd.Timestamp("2024-03-01T00:00:00Z")


@pytest.fixture
def store(online_url: str) -> Iterator[OnlineStore]:
    s = open_online_store(online_url)
    yield s
    s.close()


# -- conformance: every OnlineStore backend -------------------------------------------


def _rows(n: int, tag: str = "a") -> list[tuple[str, bytes]]:
    return [(str(i), orjson.dumps({"x": i, "tag": tag})) for i in range(n)]


def test_unwritten_view_reads_as_absent(store: OnlineStore) -> None:
    assert store.read("nothing", ["1", "2"]) == [None, None]
    assert store.read_meta("nothing") is None
    assert store.count("nothing") == 0


def test_write_then_read_in_key_order(store: OnlineStore) -> None:
    assert store.write("v", _rows(3), meta=b'{"m":1}', replace=True) == 3
    got = store.read("v", ["2", "missing", "0"])
    assert [orjson.loads(g)["x"] if g else None for g in got] == [2, None, 0]
    assert store.read("v", ["1"]) == [orjson.dumps({"x": 1, "tag": "a"})]
    assert store.read("v", []) == []
    assert store.read_meta("v") == b'{"m":1}'
    assert store.count("v") == 3


def test_many_keys_keep_their_order(store: OnlineStore) -> None:
    store.write("v", _rows(3000), meta=b"{}", replace=True)
    keys = [str(i) for i in np.random.default_rng(1).permutation(3500)]
    got = store.read("v", keys)
    assert [None if g is None else orjson.loads(g)["x"] for g in got] == [
        int(k) if int(k) < 3000 else None for k in keys
    ]


def test_replace_drops_rows_not_written_again(store: OnlineStore) -> None:
    store.write("v", _rows(5), meta=b"{}", replace=True)
    store.write("v", _rows(2, "b"), meta=b'{"m":2}', replace=True)
    assert store.count("v") == 2
    assert store.read("v", ["4"]) == [None]
    assert orjson.loads(store.read("v", ["1"])[0] or b"")["tag"] == "b"
    store.write("v", [], meta=b'{"m":3}', replace=True)
    assert store.count("v") == 0
    assert store.read_meta("v") == b'{"m":3}'


def test_upsert_keeps_other_rows(store: OnlineStore) -> None:
    store.write("v", _rows(3), meta=b"{}", replace=True)
    store.write("v", [("1", b'{"x":10}'), ("9", b'{"x":9}')], meta=b"{}", replace=False)
    got = store.read("v", ["0", "1", "9"])
    assert [orjson.loads(g or b"null") for g in got] == [
        {"x": 0, "tag": "a"},
        {"x": 10},
        {"x": 9},
    ]


def test_views_are_separate(store: OnlineStore) -> None:
    store.write("a", [("1", b"A")], meta=b"ma", replace=True)
    store.write("b", [("1", b"B")], meta=b"mb", replace=True)
    assert store.read("a", ["1"]) == [b"A"]
    assert store.read("b", ["1"]) == [b"B"]
    assert (store.read_meta("a"), store.read_meta("b")) == (b"ma", b"mb")


def test_snapshot_reads_every_view_as_of_its_start(store: OnlineStore) -> None:
    store.write("a", _rows(3), meta=b"ma", replace=True)
    store.write("b", [("1", b"B")], meta=b"mb", replace=True)
    store.invalidate("b", meta=b"changed")
    with store.snapshot() as snap:
        assert snap.metas == {"a": b"ma", "b": b"changed"}
        store.write("a", _rows(1, "later"), meta=b"ma2", replace=True)
        meta, rows = snap.read_view("a")
        assert snap.read_view("b") == (b"changed", [])  # invalidated: no rows
        assert snap.read_view("nothing") == (None, [])
    if isinstance(store, SQLiteOnlineStore):  # one read transaction: as of its start
        assert (meta, rows) == (b"ma", sorted(_rows(3)))
    else:  # Redis: each view as of its read, with the record that goes with it
        assert (meta, rows) == (b"ma2", _rows(1, "later"))


def test_a_snapshot_of_a_sqlite_store_never_written_creates_no_file(tmp_path: Path) -> None:
    store = SQLiteOnlineStore(tmp_path / "online.db")
    with store.snapshot() as snap:
        assert snap.metas == {} and snap.read_view("v") == (None, [])
    assert not (tmp_path / "online.db").exists()


def test_delete_drops_rows_and_record(store: OnlineStore) -> None:
    store.write("a", _rows(3), meta=b"ma", replace=True)
    store.write("b", [("1", b"B")], meta=b"mb", replace=True)
    assert store.delete("a") is True
    assert (store.read("a", ["1"]), store.read_meta("a"), store.count("a")) == ([None], None, 0)
    assert store.read("b", ["1"]) == [b"B"]
    assert store.delete("a") is False


def test_failed_write_leaves_the_old_rows(store: OnlineStore) -> None:
    store.write("v", _rows(3), meta=b"old", replace=True)

    def broken() -> Iterator[tuple[str, bytes]]:
        yield from _rows(20_001, "new")  # past the first chunk
        raise RuntimeError("source failed half way")

    with pytest.raises(RuntimeError, match="half way"):
        store.write("v", broken(), meta=b"new", replace=True)
    assert store.count("v") == 3
    assert store.read_meta("v") == b"old"
    assert orjson.loads(store.read("v", ["0"])[0] or b"")["tag"] == "a"


def test_invalidate_drops_the_rows_of_a_written_view_only(store: OnlineStore) -> None:
    store.write("v", _rows(3), meta=b"old", replace=True)
    store.write("w", _rows(2), meta=b"w", replace=True)
    assert store.invalidate("v", meta=b"changed") is True
    assert store.read("v", ["0", "1"]) == [None, None]
    assert (store.count("v"), store.read_meta("v")) == (0, b"changed")
    assert (store.count("w"), store.read_meta("w")) == (2, b"w")
    # a view never written stays so: no metadata record appears
    assert store.invalidate("nothing", meta=b"changed") is False
    assert store.read_meta("nothing") is None
    # rows written after it are read as usual
    store.write("v", _rows(1, "new"), meta=b"new", replace=True)
    assert orjson.loads(store.read("v", ["0"])[0] or b"")["tag"] == "new"


_KILLED_WRITER = """
import os, signal, sys
from loopline.data.online import open_online_store

def rows():
    for i in range(25_000):
        if i == 21_000:  # two chunks are written: SIGKILL, as a killed process gets it
            os.kill(os.getpid(), signal.SIGKILL)
        yield (str(i), b'{"tag": "new"}')

open_online_store(sys.argv[1]).write("v", rows(), meta=b"new", replace=True)
"""


def test_a_writer_killed_midway_leaves_the_old_rows_and_nothing_forever(
    store: OnlineStore, online_url: str, tmp_path: Path
) -> None:
    store.write("v", _rows(3), meta=b"old", replace=True)
    for _ in range(2):
        killed = run_python(_KILLED_WRITER, online_url, cwd=tmp_path)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert store.count("v") == 3
    assert store.read_meta("v") == b"old"
    assert orjson.loads(store.read("v", ["0"])[0] or b"")["tag"] == "a"
    if isinstance(store, RedisOnlineStore):
        # Each killed write left a full staging copy of the view that no one deleted.
        client = store._client
        left = [k for k in client.scan_iter() if b":staging:" in k]
        assert len(left) == 2
        assert all(0 < client.ttl(k) <= RedisOnlineStore.STAGING_TTL_S for k in left)
        store.write("v", _rows(4, "b"), meta=b"next", replace=True)
        assert client.ttl(store._key("v")) == -1  # the live hash never expires
    else:
        store.write("v", _rows(4, "b"), meta=b"next", replace=True)
    assert store.count("v") == 4


def test_readers_see_the_old_or_the_new_set_never_a_mix(store: OnlineStore) -> None:
    store.write("v", _rows(2000, "a"), meta=b"{}", replace=True)
    seen: list[set[str]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                got = store.read("v", ["0", "999", "1999"])
                seen.append({orjson.loads(g)["tag"] if g else "none" for g in got})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for tag in ("b", "c", "d"):
        store.write("v", _rows(2000, tag), meta=b"{}", replace=True)
    stop.set()
    for t in threads:
        t.join(10)
    assert not errors
    assert seen and all(len(s) == 1 and "none" not in s for s in seen)


def test_store_reconnects_after_close(store: OnlineStore) -> None:
    store.write("v", _rows(1), meta=b"{}", replace=True)
    store.close()
    assert store.read("v", ["0"])[0] is not None


def test_backends_by_url(tmp_path: Path, redis_url: str) -> None:
    assert isinstance(open_online_store(None, home=tmp_path), SQLiteOnlineStore)
    default = open_online_store(None, home=tmp_path)
    assert isinstance(default, SQLiteOnlineStore) and default.path == tmp_path / "online.db"
    assert isinstance(open_online_store(redis_url), RedisOnlineStore)
    with pytest.raises(ll.ConfigError, match="LOOPLINE_ONLINE_STORE"):
        open_online_store("mongodb://x")
    with pytest.raises(ll.ConfigError, match="LOOPLINE_ONLINE_STORE"):
        open_online_store("sqlite:///:memory:")


def test_sqlite_store_is_wal(tmp_path: Path) -> None:
    s = SQLiteOnlineStore(tmp_path / "o.db")
    s.write("v", _rows(1), meta=b"{}", replace=True)
    assert s._conn().execute("PRAGMA journal_mode").fetchone() == ("wal",)
    s.close()


def test_unreachable_redis_names_the_setting() -> None:
    s = open_online_store("redis://127.0.0.1:1/0")
    with pytest.raises(ll.BackendUnavailable, match="LOOPLINE_ONLINE_STORE"):
        s.read("v", ["1"])


# -- materialize + get_online through the SDK -----------------------------------------


@pytest.fixture
def fs_ctx(online_url: str, tmp_path: Path) -> Iterator[Context]:
    """The embedded metadata store with the online store on each backend."""
    context = ll.init(
        uri=f"sqlite:///{tmp_path / 'meta.db'}",
        artifacts=str(tmp_path / "artifacts"),
        online_store=None if online_url.startswith("sqlite") else online_url,
    )
    yield context
    context.close()


def _random_view(name: str, seed: int, *, ttl_s: int | None = 50) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 400
    frame = pd.DataFrame(
        {
            "user": rng.integers(0, 60, n),
            "ts": T0 + pd.to_timedelta(rng.integers(0, 100, n), unit="s"),
            "created": T0 + pd.to_timedelta(rng.integers(0, 3, n), unit="s"),
            "x": rng.normal(size=n),
            "label": [f"l{i}" for i in range(n)],
        }
    )
    ll.features.register(
        FeatureView(
            name=name,
            entity="user",
            timestamp="ts",
            features=["x", "label"],
            ttl=dt.timedelta(seconds=ttl_s) if ttl_s else None,
            source=frame,
            created="created",
        )
    )
    return frame


@pytest.mark.parametrize("end_s", [30, 75, 99, 500], ids=lambda s: f"end+{s}s")
def test_online_rows_equal_the_training_set_at_end(fs_ctx: Context, end_s: int) -> None:
    _random_view("u", seed=end_s)
    end = T0 + pd.Timedelta(seconds=end_s)
    result = ll.features.materialize("u", end=end.to_pydatetime())
    users = list(range(65))
    online = ll.features.get_online("u", users)
    entities = pd.DataFrame({"user": users, "event_timestamp": [end] * len(users)})
    offline = ll.features.get_historical(entities, ["u:x", "u:label"])
    for row, got in zip(offline.itertuples(), online, strict=True):
        want = {
            "x": None if pd.isna(row.x) else row.x,
            "label": None if pd.isna(row.label) else row.label,
        }
        assert got == want, row.user
    assert result.rows == sum(1 for g in online if g["x"] is not None)


def test_missing_entity_gets_none_values(fs_ctx: Context) -> None:
    _random_view("u", seed=3, ttl_s=None)
    ll.features.materialize("u", end=T0 + pd.Timedelta(seconds=200))
    got = ll.features.get_online("u", [10_000, "nope"])
    assert got == [{"x": None, "label": None}, {"x": None, "label": None}]


def test_keys_match_by_text(fs_ctx: Context) -> None:
    frame = _random_view("u", seed=4, ttl_s=None)
    ll.features.materialize("u", end=T0 + pd.Timedelta(seconds=200))
    user = int(frame["user"].iloc[0])
    assert ll.features.get_online("u", [user]) == ll.features.get_online("u", [str(user)])
    assert ll.features.get_online("u", [np.int64(user)])[0]["x"] is not None


def test_composite_keys(fs_ctx: Context) -> None:
    frame = pd.DataFrame(
        {
            "region": ["eu", "eu", "us"],
            "shop": [1, 2, 1],
            "ts": [T0, T0, T0],
            "rate": [0.1, 0.2, 0.3],
        }
    )
    ll.features.register(
        FeatureView(
            name="shops", entity=["region", "shop"], timestamp="ts", features=["rate"], source=frame
        )
    )
    ll.features.materialize("shops", end=T0)
    got = ll.features.get_online("shops", [("us", 1), ("eu", 2), ("us", 2)])
    assert got == [{"rate": 0.3}, {"rate": 0.2}, {"rate": None}]


def test_a_float_key_matches_its_integer_as_in_training_sets(fs_ctx: Context) -> None:
    # A key column with a missing value is float64 in pandas; the join matches 1 to 1.0,
    # but the online store keyed the row by '1.0', so get_online(1) read all-None.
    frame = pd.DataFrame({"user": [1.0, 2.0, None, 2.5], "ts": [T0] * 4, "x": [0.1, 0.2, 0.3, 0.4]})
    ll.features.register(
        FeatureView(name="fk", entity="user", timestamp="ts", features=["x"], source=frame)
    )
    ll.features.materialize("fk", end=T0)
    entities = pd.DataFrame({"user": [1, 2], "event_timestamp": [T0, T0]})
    assert ll.features.get_historical(entities, ["fk:x"])["x"].tolist() == [0.1, 0.2]
    got = ll.features.get_online("fk", [1, 2, 1.0, np.float64(2.0), "1", 2.5, 3])
    assert [g["x"] for g in got] == [0.1, 0.2, 0.1, 0.2, 0.1, 0.4, None]


def test_key_parts_holding_the_separator_do_not_collide(fs_ctx: Context) -> None:
    # ('a\x1fb', 'c') and ('a', 'b\x1fc') were both stored as 'a\x1fb\x1fc': one row
    # overwrote the other and both keys read its values.
    sep, esc = "\x1f", "\x1e"
    keys = [(f"a{sep}b", "c"), ("a", f"b{sep}c"), (f"a{esc}1b", "c"), (f"a{esc}", "0"), ("a", "b")]
    frame = pd.DataFrame(
        {
            "p": [k[0] for k in keys],
            "q": [k[1] for k in keys],
            "ts": [T0] * len(keys),
            "v": list(range(len(keys))),
        }
    )
    ll.features.register(
        FeatureView(name="sep", entity=["p", "q"], timestamp="ts", features=["v"], source=frame)
    )
    assert ll.features.materialize("sep", end=T0).rows == len(keys)
    got = ll.features.get_online("sep", [*keys, ("a", f"b{sep}")])
    assert [g["v"] for g in got] == [0, 1, 2, 3, 4, None]


def _same(a: object, b: object) -> bool:
    """Equal, with NaN equal to NaN (at any depth)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b and type(a) is type(b)


def test_non_finite_floats_come_back_as_in_training_sets(fs_ctx: Context, tmp_path: Path) -> None:
    # orjson writes inf, -inf and NaN as null: get_online gave None where the training
    # set had inf. A dataset source, so that NaN (not null) reaches the view.
    nan, inf = float("nan"), float("inf")
    table = pa.table(
        {
            "u": [1, 2, 3, 4, 5],
            "ts": pa.array([T0] * 5, pa.timestamp("us", "UTC")),
            "x": pa.array([inf, -inf, nan, 1.5, None], pa.float64(), from_pandas=False),
            "f": pa.array([nan, 1.0, None, -inf, 2.0], pa.float32(), from_pandas=False),
            "lst": pa.array([[1.0, inf], [nan], None, [], [2.0, None]], pa.list_(pa.float64())),
            "st": pa.array(
                [
                    {"a": inf, "b": "s"},
                    {"a": 1.0, "b": "inf"},
                    None,
                    {"a": None, "b": None},
                    {"a": -inf, "b": "nan"},
                ]
            ),
        }
    )
    pq.write_table(table, tmp_path / "nf.parquet")
    ll.datasets.register("nf", str(tmp_path / "nf.parquet"))
    feats = ["x", "f", "lst", "st"]
    ll.features.register(
        FeatureView(name="nf", entity="u", timestamp="ts", features=feats, source="nf")
    )
    ll.features.materialize("nf", end=T0)
    got = ll.features.get_online("nf", [1, 2, 3, 4, 5, 6])
    want = [
        {"x": inf, "f": nan, "lst": [1.0, inf], "st": {"a": inf, "b": "s"}},
        {"x": -inf, "f": 1.0, "lst": [nan], "st": {"a": 1.0, "b": "inf"}},
        {"x": nan, "f": None, "lst": None, "st": None},
        {"x": 1.5, "f": -inf, "lst": [], "st": {"a": None, "b": None}},
        {"x": None, "f": 2.0, "lst": [2.0, None], "st": {"a": -inf, "b": "nan"}},
        dict.fromkeys(feats),
    ]
    assert _same(got, want), got
    entities = pd.DataFrame({"u": [1, 2, 3, 4, 5], "event_timestamp": [T0] * 5})
    offline = ll.features.get_historical(entities, ["nf:x", "nf:f"])
    for column in ("x", "f"):  # a null is NaN in a float column of a training set
        assert _same(
            offline[column].tolist(), [nan if g[column] is None else g[column] for g in got[:5]]
        )


def test_decimals_are_the_nearest_float_online_and_offline(fs_ctx: Context) -> None:
    # get_online gave Decimal("1.50") as the text '1.50' where the training set had 1.5;
    # and DuckDB's df() turned about a quarter of the decimals of a DECIMAL(18, 4) into a
    # float an ulp away from the nearest one.
    rng = np.random.default_rng(7)
    values = [Decimal("1.50"), Decimal("2")] + [
        Decimal(int(v)).scaleb(-4) for v in rng.integers(-(10**17), 10**17, 60)
    ]
    frame = pd.DataFrame(
        {
            "u": range(len(values)),
            "ts": [T0] * len(values),
            "d": pd.Series(values, dtype=pd.ArrowDtype(pa.decimal128(18, 4))),
        }
    )
    ll.features.register(
        FeatureView(name="dec", entity="u", timestamp="ts", features=["d"], source=frame)
    )
    ll.features.materialize("dec", end=T0)
    want = [float(v) for v in values]
    online = [g["d"] for g in ll.features.get_online("dec", list(range(len(values))))]
    assert online == want and all(type(v) is float for v in online)
    entities = pd.DataFrame({"u": range(len(values)), "event_timestamp": [T0] * len(values)})
    offline = ll.features.get_historical(entities, ["dec:d"])["d"]
    assert offline.dtype == np.float64 and offline.tolist() == want


def test_bytes_come_back_as_bytes(fs_ctx: Context) -> None:
    # orjson has no form of bytes: the default=str fallback stored their Python repr, so
    # get_online gave the text "b'\\x00ab'" where the training set had the bytes.
    blobs = [b"\x00ab", b"", None, bytes(range(256))]
    frame = pd.DataFrame(
        {
            "u": [1, 2, 3, 4],
            "ts": [T0] * 4,
            "b": blobs,
            "bl": [[b"x", None], [], None, [b"\xff"]],
            "x": [1.5, 2.5, 3.5, 4.5],
        }
    )
    feats = ["b", "bl", "x"]
    ll.features.register(
        FeatureView(name="blob", entity="u", timestamp="ts", features=feats, source=frame)
    )
    ll.features.materialize("blob", end=T0)
    got = ll.features.get_online("blob", [1, 2, 3, 4, 5])
    assert got == [
        {"b": b"\x00ab", "bl": [b"x", None], "x": 1.5},
        {"b": b"", "bl": [], "x": 2.5},
        {"b": None, "bl": None, "x": 3.5},
        {"b": bytes(range(256)), "bl": [b"\xff"], "x": 4.5},
        dict.fromkeys(feats),
    ]
    assert all(type(g["b"]) is bytes for g in got[:4] if g["b"] is not None)
    entities = pd.DataFrame({"u": [1, 2, 3, 4], "event_timestamp": [T0] * 4})
    offline = ll.features.get_historical(entities, ["blob:b"])["b"]
    assert [None if pd.isna(v) else v for v in offline] == blobs


def test_durations_keep_their_type(fs_ctx: Context) -> None:
    # DuckDB reads Arrow's duration as a plain integer: training sets and the online store
    # gave 1000000 for one second.
    ns = pd.Timedelta(nanoseconds=1)
    frame = pd.DataFrame(
        {
            "u": [1, 2, 3],
            "ts": [T0] * 3,
            "s": pd.Series(pd.to_timedelta([1, -90061, None], unit="s"), dtype="timedelta64[s]"),
            "us": pd.to_timedelta([1.5, 0, 86_400], unit="s").astype("timedelta64[us]"),
            "nano": pd.Series([1500 * ns, -1500 * ns, None], dtype="timedelta64[ns]"),
        }
    )
    feats = ["s", "us", "nano"]
    ll.features.register(
        FeatureView(name="dur", entity="u", timestamp="ts", features=feats, source=frame)
    )
    entities = pd.DataFrame({"u": [1, 2, 3, 4], "event_timestamp": [T0] * 4})
    offline = ll.features.get_historical(entities, [f"dur:{f}" for f in feats])
    assert all(offline[f].dtype == "timedelta64[us]" for f in feats)
    sec, us = pd.Timedelta(seconds=1), pd.Timedelta(microseconds=1)
    assert offline["s"].tolist()[:2] == [sec, -90061 * sec]
    assert offline["us"].tolist()[:3] == [1.5 * sec, 0 * sec, 86_400 * sec]
    # sub-microsecond digits floored, as for timestamps
    assert offline["nano"].tolist()[:2] == [us, -2 * us]
    assert offline[["s", "nano"]].iloc[2:].isna().all().all() and pd.isna(offline["us"][3])
    ll.features.materialize("dur", end=T0)
    online = ll.features.get_online("dur", [1, 2, 3, 4])
    assert online[:3] == [
        {"s": "P0DT0H0M1S", "us": "P0DT0H0M1.5S", "nano": "P0DT0H0M0.000001S"},
        {"s": "-P1DT1H1M1S", "us": "P0DT0H0M0S", "nano": "-P0DT0H0M0.000002S"},
        {"s": None, "us": "P1DT0H0M0S", "nano": None},
    ]
    for row, got in zip(offline.itertuples(), online, strict=True):
        for f in feats:
            value = getattr(row, f)
            assert (None if pd.isna(value) else value) == (
                None if got[f] is None else pd.Timedelta(got[f])
            )


def test_keys_with_the_wrong_number_of_parts_are_refused(fs_ctx: Context) -> None:
    # They matched nothing and read as all-null rows, as if the entity were unknown.
    frame = pd.DataFrame({"region": ["eu"], "shop": [1], "ts": [T0], "rate": [0.1]})
    ll.features.register(
        FeatureView(
            name="shops", entity=["region", "shop"], timestamp="ts", features=["rate"], source=frame
        )
    )
    ll.features.materialize("shops", end=T0)
    for key in (("eu", 1, "extra"), ("eu",), "eu", ["eu", 1, 2]):
        with pytest.raises(ll.InvalidInput, match=r"has 2 key column\(s\): region, shop") as info:
            ll.features.get_online("shops", [("eu", 1), key])
        assert f"key {key!r} has" in str(info.value) and info.value.field == "keys"
    assert ll.features.get_online("shops", [("eu", 1), ["eu", 2]]) == [
        {"rate": 0.1},
        {"rate": None},
    ]
    _random_view("u", seed=6, ttl_s=None)
    ll.features.materialize("u", end=T0 + pd.Timedelta(seconds=200))
    with pytest.raises(ll.InvalidInput, match=r"key \(1, 2\) has 2 part\(s\)"):
        ll.features.get_online("u", [(1, 2)])


def test_incremental_materialize_upserts(fs_ctx: Context) -> None:
    frame = pd.DataFrame(
        {
            "user": [1, 2, 1],
            "ts": [T0, T0, T0 + pd.Timedelta(hours=2)],
            "x": [1.0, 2.0, 3.0],
        }
    )
    ll.features.register(
        FeatureView(name="inc", entity="user", timestamp="ts", features=["x"], source=frame)
    )
    ll.features.materialize("inc", end=T0 + pd.Timedelta(hours=1))
    assert ll.features.get_online("inc", [1, 2]) == [{"x": 1.0}, {"x": 2.0}]
    step = ll.features.materialize(
        "inc", start=T0 + pd.Timedelta(hours=1), end=T0 + pd.Timedelta(hours=3)
    )
    assert step.rows == 1
    assert ll.features.get_online("inc", [1, 2]) == [{"x": 3.0}, {"x": 2.0}]
    # a window that does not reach entity 2's row leaves it alone
    ll.features.materialize("inc", start=T0 + pd.Timedelta(hours=2), end=T0 + pd.Timedelta(hours=3))
    assert ll.features.get_online("inc", [1, 2]) == [{"x": 3.0}, {"x": 2.0}]


def test_expired_entities_disappear_on_full_materialize(fs_ctx: Context) -> None:
    frame = pd.DataFrame({"user": [1, 2], "ts": [T0, T0 + pd.Timedelta(days=5)], "x": [1.0, 2.0]})
    ll.features.register(
        FeatureView(
            name="exp",
            entity="user",
            timestamp="ts",
            features=["x"],
            ttl=dt.timedelta(days=2),
            source=frame,
        )
    )
    ll.features.materialize("exp", end=T0 + pd.Timedelta(days=1))
    assert ll.features.get_online("exp", [1, 2]) == [{"x": 1.0}, {"x": None}]
    ll.features.materialize("exp", end=T0 + pd.Timedelta(days=6))
    assert ll.features.get_online("exp", [1, 2]) == [{"x": None}, {"x": 2.0}]


def test_online_errors(fs_ctx: Context) -> None:
    _random_view("u", seed=5)
    with pytest.raises(ll.NotFound, match="has not been materialized") as info:
        ll.features.get_online("u", [1])
    assert "materialize" in (info.value.hint or "")
    with pytest.raises(ll.NotFound, match="no feature view named 'ghost'") as info2:
        ll.features.get_online("ghost", [1])
    assert "u" in (info2.value.hint or "")
    with pytest.raises(ll.NotFound, match="no feature view named 'ghost'"):
        ll.features.materialize("ghost")
    with pytest.raises(ll.InvalidInput, match="keys"):
        ll.features.get_online("u", "42")
    with pytest.raises(ll.InvalidInput, match="after end"):
        ll.features.materialize("u", start="2024-02-01", end="2024-01-01")
    with pytest.raises(ll.InvalidInput, match="end"):
        ll.features.materialize("u", end="not a time")


def test_materialize_default_end_is_now(fs_ctx: Context) -> None:
    now = pd.Timestamp.now(tz="UTC")
    frame = pd.DataFrame(
        {"user": [1, 2], "ts": [now - pd.Timedelta(hours=1), now + pd.Timedelta(days=1)]}
    )
    frame["x"] = [1.0, 2.0]
    ll.features.register(
        FeatureView(name="now", entity="user", timestamp="ts", features=["x"], source=frame)
    )
    result = ll.features.materialize("now")
    assert abs((result.end - now.to_pydatetime()).total_seconds()) < 60
    assert ll.features.get_online("now", [1, 2]) == [{"x": 1.0}, {"x": None}]


def test_materialization_is_logged(fs_ctx: Context) -> None:
    _random_view("u", seed=6)
    result = ll.features.materialize("u", end=T0 + pd.Timedelta(seconds=80))
    last = ll.features.get_view("u").last_materialization
    assert last is not None
    assert (last.rows, last.end, last.online_store) == (
        result.rows,
        result.end,
        result.online_store,
    )
    assert last.online_store.startswith(("sqlite:///", "redis://"))


# -- a view object for its name -------------------------------------------------------


def _small_view(name: str = "ik", features: tuple[str, ...] = ("v",)) -> FeatureView:
    frame = pd.DataFrame({"k": [1], "ts": [T0], "v": [1.0], "w": [2.0], "j": ["a"]})
    return FeatureView(name=name, entity="k", timestamp="ts", features=features, source=frame)


def test_a_view_object_stands_for_its_name(fs_ctx: Context) -> None:
    # Feast users pass view objects; they reached SQLAlchemy and the online store.
    view = _small_view()
    ll.features.register(view)
    assert ll.features.materialize(view, end=T0).rows == 1
    registered = ll.features.get_view(view)
    assert ll.features.get_view(registered).name == "ik"
    assert ll.features.get_online(view, [1]) == [{"v": 1.0}]
    assert ll.features.get_online(registered, [1, 2]) == [{"v": 1.0}, {"v": None}]
    assert ll.features.materialize(registered, end=T0).view == "ik"


@pytest.mark.parametrize("bad", [None, 3, b"ik", ["ik"]], ids=["none", "int", "bytes", "list"])
@pytest.mark.parametrize("call", ["get_view", "materialize", "get_online"])
def test_a_view_name_that_is_no_string_is_invalid_input(
    fs_ctx: Context, call: str, bad: object
) -> None:
    ll.features.register(_small_view())
    ll.features.materialize("ik", end=T0)
    fn = getattr(ll.features, call)
    with pytest.raises(ll.InvalidInput, match="'view_name' parameter") as info:
        fn(bad, [1]) if call == "get_online" else fn(bad)
    assert info.value.field == "view_name"
    assert type(bad).__name__ in str(info.value)


# -- a view registered again with other features or keys ------------------------------


def test_get_online_after_the_features_changed_raises_until_materialized(
    fs_ctx: Context,
) -> None:
    # It returned the old rows: [{'x': 1.0}], a feature no longer in the view, and no z.
    frame = pd.DataFrame({"k": [1, 2], "ts": [T0, T0], "x": [1.0, 3.0], "z": [2.0, 4.0]})
    ll.features.register(
        FeatureView(name="rr", entity="k", timestamp="ts", features=["x"], source=frame)
    )
    ll.features.materialize("rr", end=T0)
    assert ll.features.get_online("rr", [1]) == [{"x": 1.0}]
    ll.features.register(
        FeatureView(name="rr", entity="k", timestamp="ts", features=["z"], source=frame)
    )
    for keys in ([1], [1, 9], [9]):
        with pytest.raises(ll.Conflict, match="changed since its last materialization") as info:
            ll.features.get_online("rr", keys)
        assert "features x -> z" in str(info.value)
        assert "materialize('rr')" in (info.value.hint or "")
    ll.features.materialize("rr", end=T0)
    assert ll.features.get_online("rr", [1, 2, 9]) == [{"z": 2.0}, {"z": 4.0}, {"z": None}]


def test_get_online_after_the_key_columns_changed_raises(fs_ctx: Context) -> None:
    frame = pd.DataFrame({"region": ["eu"], "shop": [1], "ts": [T0], "rate": [0.1]})
    ll.features.register(
        FeatureView(name="shops", entity="shop", timestamp="ts", features=["rate"], source=frame)
    )
    ll.features.materialize("shops", end=T0)
    ll.features.register(
        FeatureView(
            name="shops", entity=["region", "shop"], timestamp="ts", features=["rate"], source=frame
        )
    )
    with pytest.raises(ll.Conflict, match="key columns shop -> region, shop"):
        ll.features.get_online("shops", [("eu", 1)])
    ll.features.materialize("shops", end=T0)
    assert ll.features.get_online("shops", [("eu", 1)]) == [{"rate": 0.1}]


def test_new_data_or_reordered_features_keep_the_online_rows(fs_ctx: Context) -> None:
    # Re-registering fresh data of the same shape is routine: serving must not stop.
    ll.features.register(_small_view(features=("v", "w")))
    ll.features.materialize("ik", end=T0)
    newer = pd.DataFrame({"k": [1], "ts": [T0], "v": [5.0], "w": [6.0], "j": ["b"]})
    ll.features.register(
        FeatureView(
            name="ik",
            entity="k",
            timestamp="ts",
            features=["w", "v"],
            source=newer,
            ttl=dt.timedelta(days=3),
        )
    )
    assert ll.features.get_online("ik", [1, 2]) == [{"v": 1.0, "w": 2.0}, {"v": None, "w": None}]


def test_a_refused_registration_keeps_the_online_rows(fs_ctx: Context) -> None:
    ll.features.register(_small_view())
    ll.features.materialize("ik", end=T0)
    bad = pd.DataFrame({"k": [1], "ts": ["not a time"], "v": [1.0], "j": ["a"]})
    with pytest.raises(ll.InvalidInput, match="not timestamps"):
        ll.features.register(
            FeatureView(name="ik", entity="k", timestamp="ts", features=["j"], source=bad)
        )
    assert ll.features.get_online("ik", [1]) == [{"v": 1.0}]


def test_a_registration_the_online_store_cannot_follow_saves_nothing(
    fs_ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    ll.features.register(_small_view())
    ll.features.materialize("ik", end=T0)

    def down(self: OnlineStore, view: str, *, meta: bytes) -> bool:
        raise ll.BackendUnavailable("the online store does not answer")

    monkeypatch.setattr(type(online_consistency._online_store(fs_ctx)), "invalidate", down)
    with pytest.raises(ll.BackendUnavailable):
        ll.features.register(_small_view(features=("w",)))
    assert ll.features.get_view("ik").features == ("v",)
    assert ll.features.get_online("ik", [1]) == [{"v": 1.0}]


def test_incremental_materialize_after_a_change_is_refused(fs_ctx: Context) -> None:
    ll.features.register(_small_view())
    ll.features.materialize("ik", end=T0)
    ll.features.register(_small_view(features=("v", "w")))
    with pytest.raises(ll.Conflict, match="would mix rows of both definitions") as info:
        ll.features.materialize("ik", start=T0, end=T0)
    assert "without start" in (info.value.hint or "")
    ll.features.materialize("ik", end=T0)
    assert ll.features.materialize("ik", start=T0, end=T0).rows == 1
    assert ll.features.get_online("ik", [1]) == [{"v": 1.0, "w": 2.0}]


def test_incremental_materialize_over_rows_of_another_shape_is_refused(
    fs_ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    # e.g. registered by a process whose online store is another one: nothing was dropped
    ll.features.register(_small_view())
    ll.features.materialize("ik", end=T0)
    monkeypatch.setattr(feature_views, "_drop_online_rows", lambda *a, **k: None)
    ll.features.register(_small_view(features=("w",)))
    # The registration dropped nothing (else the refusal below is the dropped rows' record)
    assert ll.features.get_online("ik", [1]) == [{"v": 1.0}]
    with pytest.raises(ll.Conflict, match=r"features v -> w\); a materialization with a start"):
        ll.features.materialize("ik", start=T0, end=T0)


def test_a_registration_during_a_materialization_drops_what_it_wrote(
    fs_ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    # materialize reads the definition, then writes; a registration in between dropped
    # the online rows before they were written.
    ll.features.register(_small_view())
    ll.features.materialize("ik", end=T0)
    real = pit_join.latest_rows

    def register_meanwhile(*args: Any, **kwargs: Any) -> Any:
        ll.features.register(_small_view(features=("w",)))
        return real(*args, **kwargs)

    monkeypatch.setattr(pit_join, "latest_rows", register_meanwhile)
    with pytest.raises(ll.Conflict, match="registered again while it was being materialized"):
        ll.features.materialize("ik", end=T0)
    with pytest.raises(ll.Conflict, match="changed since its last materialization"):
        ll.features.get_online("ik", [1])
    monkeypatch.setattr(pit_join, "latest_rows", real)
    ll.features.materialize("ik", end=T0)
    assert ll.features.get_online("ik", [1]) == [{"w": 2.0}]


def test_keys_that_are_no_collection_are_invalid_input(fs_ctx: Context) -> None:
    # None and 42 failed with TypeError inside; a generator was read twice (ValueError).
    ll.features.register(_small_view())
    ll.features.materialize("ik", end=T0)
    for bad in (None, 42, {1: "a"}):
        with pytest.raises(ll.InvalidInput, match="keys must be a list") as info:
            ll.features.get_online("ik", bad)  # type: ignore[arg-type]
        assert info.value.field == "keys"
    want = [{"v": 1.0}, {"v": None}]
    assert ll.features.get_online("ik", (k for k in (1, 2))) == want  # type: ignore[arg-type]
    assert ll.features.get_online("ik", np.array([1, 2])) == want  # type: ignore[arg-type]
    assert ll.features.get_online("ik", pd.Series([1, 2])) == want


# -- a feature whose type changed ----------------------------------------------------------


def _typed_view(values: list[Any], *, name: str = "ty") -> FeatureView:
    frame = pd.DataFrame({"k": [1, 2], "ts": [T0, T0], "x": values})
    return FeatureView(name=name, entity="k", timestamp="ts", features=["x"], source=frame)


@pytest.mark.parametrize(
    ("values", "new_type"),
    [([1.5, 2.0], "DOUBLE"), (["a", "b"], "VARCHAR")],
    ids=["int-to-float", "int-to-text"],
)
def test_get_online_after_a_feature_type_changed_raises_until_materialized(
    fs_ctx: Context, values: list[Any], new_type: str
) -> None:
    # Same names, same entity, another type: get_online served the old ints ({'x': 1}).
    ll.features.register(_typed_view([1, 2]))
    ll.features.materialize("ty", end=T0)
    assert ll.features.get_online("ty", [1]) == [{"x": 1}]
    ll.features.register(_typed_view(values))
    with pytest.raises(ll.Conflict, match="changed since its last materialization") as info:
        ll.features.get_online("ty", [1])
    assert f"type of x BIGINT -> {new_type}" in str(info.value)
    with pytest.raises(ll.Conflict, match="would mix rows"):
        ll.features.materialize("ty", start=T0, end=T0)
    ll.features.materialize("ty", end=T0)
    got = ll.features.get_online("ty", [1, 2])
    assert got == [{"x": values[0]}, {"x": values[1]}]
    assert type(got[0]["x"]) is type(values[0])


def test_new_data_of_the_same_type_keeps_the_online_rows(fs_ctx: Context) -> None:
    ll.features.register(_typed_view([1, 2]))
    ll.features.materialize("ty", end=T0)
    ll.features.register(_typed_view([5, 6]))  # other values, same type: keep serving
    assert ll.features.get_online("ty", [1]) == [{"x": 1}]
    assert ll.features.materialize("ty", start=T0, end=T0).rows == 2
    assert ll.features.get_online("ty", [1]) == [{"x": 5}]


def test_a_dataset_version_of_another_type(fs_ctx: Context) -> None:
    ll.datasets.register("typed", _typed_view([1, 2]).source)
    view = FeatureView(name="dv", entity="k", timestamp="ts", features=["x"], source="typed")
    ll.features.register(view)
    ll.features.materialize("dv", end=T0)
    ll.datasets.register("typed", _typed_view([1.5, 2.5]).source)
    # The online store holds the last materialization (of version 1) until the next one.
    assert ll.features.get_online("dv", [1]) == [{"x": 1}]
    with pytest.raises(ll.Conflict, match=r"type of x BIGINT -> DOUBLE\); a materialization"):
        ll.features.materialize("dv", start=T0, end=T0)
    assert ll.features.get_online("dv", [1]) == [{"x": 1}]  # the refusal wrote nothing
    ll.features.materialize("dv", end=T0)
    assert ll.features.get_online("dv", [1, 2]) == [{"x": 1.5}, {"x": 2.5}]
    assert ll.features.materialize("dv", start=T0, end=T0).rows == 2
    # Pointing the view at version 1 again (ints) drops the online rows of version 2.
    ll.features.register(
        FeatureView(name="dv", entity="k", timestamp="ts", features=["x"], source="typed@1")
    )
    with pytest.raises(ll.Conflict, match="type of x DOUBLE -> BIGINT"):
        ll.features.get_online("dv", [1])


def test_a_registration_with_another_type_during_a_materialization_drops_what_it_wrote(
    fs_ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    ll.features.register(_typed_view([1, 2]))
    ll.features.materialize("ty", end=T0)
    real = pit_join.latest_rows

    def register_meanwhile(*args: Any, **kwargs: Any) -> Any:
        ll.features.register(_typed_view(["a", "b"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(pit_join, "latest_rows", register_meanwhile)
    with pytest.raises(ll.Conflict, match="type of x BIGINT -> VARCHAR"):
        ll.features.materialize("ty", end=T0)
    with pytest.raises(ll.Conflict, match="changed since its last materialization"):
        ll.features.get_online("ty", [1])
    monkeypatch.setattr(pit_join, "latest_rows", real)
    ll.features.materialize("ty", end=T0)
    assert ll.features.get_online("ty", [1]) == [{"x": "a"}]


def test_materialize_as_of_times_far_from_now(fs_ctx: Context) -> None:
    # An end after 2262 or a start before 1677 failed with OutOfBoundsDatetime (exit 1 in
    # the CLI); datetime.max as end then made every later read of the views fail.
    ll.features.register(_small_view())
    assert ll.features.materialize("ik", end="3000-01-01").rows == 1
    assert ll.features.get_online("ik", [1]) == [{"v": 1.0}]
    assert ll.features.materialize("ik", end="1000-01-01").rows == 0
    assert ll.features.materialize("ik", start="1000-01-01", end=T0).rows == 1
    last = dt.datetime.max.replace(tzinfo=dt.UTC)
    assert ll.features.materialize("ik", end=last).end == last
    assert ll.features.get_view("ik").last_materialization.end == last  # type: ignore[union-attr]
    assert [v.name for v in ll.features.list_views()] == ["ik"]
    beyond = pd.Timestamp("9999-12-31T00:00:00Z") + pd.Timedelta(days=2)
    with pytest.raises(ll.InvalidInput, match="year 10000, outside the years 1 to 9999") as info:
        ll.features.materialize("ik", end=beyond)
    assert info.value.field == "end"


def test_a_number_for_a_time_and_a_dict_for_a_key_are_refused(fs_ctx: Context) -> None:
    # end=1717200000 (seconds) was read as nanoseconds: rows as of 1970-01-01T00:00:01.7,
    # none written; a Feast-style {"k": 1} key read as a missing entity (all None).
    ll.features.register(_small_view())
    for bad in (1_717_200_000, 1.5e9, np.int64(5), Decimal(5)):
        with pytest.raises(ll.InvalidInput, match="is a number, not a timestamp") as info:
            ll.features.materialize("ik", end=bad)  # type: ignore[arg-type]
        assert info.value.field == "end"
    with pytest.raises(ll.InvalidInput, match="is a number") as info:
        ll.features.materialize("ik", start=0, end=T0)  # type: ignore[arg-type]
    assert info.value.field == "start"
    ll.features.materialize("ik", end=pd.Timestamp("2024-03-01T00:00:00.000000999Z"))
    assert ll.features.get_view("ik").last_materialization.end == T0  # type: ignore[union-attr]
    with pytest.raises(ll.InvalidInput, match="is a dict") as info:
        ll.features.get_online("ik", [1, {"k": 1}])
    assert info.value.field == "keys" and "(k)" in (info.value.hint or "")
    assert ll.features.get_online("ik", [1]) == [{"v": 1.0}]


# -- a password in LOOPLINE_ONLINE_STORE ------------------------------------------------


@pytest.fixture
def redis_with_password(redis_url: str) -> Iterator[tuple[str, str]]:
    """The test Redis through a user of its own with a password: (URL, password)."""
    import uuid

    import redis

    admin = redis.Redis.from_url(redis_url)
    user, password = f"t-{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    admin.execute_command("ACL", "SETUSER", user, "on", f">{password}", "~*", "&*", "+@all")
    host_db = redis_url.removeprefix("redis://")
    try:
        yield f"redis://{user}:{password}@{host_db}", password
    finally:
        admin.execute_command("ACL", "DELUSER", user)
        admin.close()


def test_a_redis_password_is_never_shown_nor_recorded(
    redis_with_password: tuple[str, str], migrated_db_uri: str, tmp_path: Path
) -> None:
    url, password = redis_with_password
    context = ll.init(uri=migrated_db_uri, artifacts=str(tmp_path / "art"), online_store=url)
    try:
        _random_view("u", seed=8)
        with pytest.raises(ll.NotFound) as never:
            ll.features.get_online("u", [1])
        result = ll.features.materialize("u", end=T0 + pd.Timedelta(seconds=80))
        last = ll.features.get_view("u").last_materialization
        assert last is not None and ll.features.get_online("u", [10_000])[0]["x"] is None
        shown = [str(never.value), result.online_store, last.online_store]
        assert all(password not in text for text in shown), shown
        assert result.online_store == last.online_store == url.replace(password, "***")
    finally:
        context.close()
    down = open_online_store(url.rsplit(":", 1)[0] + ":1/0")  # same password, no server
    with pytest.raises(ll.BackendUnavailable) as unreachable:
        down.read("v", ["1"])
    assert password not in str(unreachable.value) and "***" in str(unreachable.value)
