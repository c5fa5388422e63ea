"""The online feature store's rows in a backup: real stores (a SQLite file, the test Redis),
views registered and materialized through the SDK, read back with ``get_online``."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

import loopline as ll
from loopline.core.artifacts import open_artifact_store
from loopline.core.backup import backup
from loopline.core.backup_format import Manifest
from loopline.core.backup_online import OnlinePart
from loopline.core.backup_restore import restore
from loopline.core.context import Context
from loopline.core.db import create_engine_for
from loopline.data.feature_registry import check_online
from loopline.data.feature_views import FeatureView
from loopline.data.online import OnlineStore, open_online_store
from loopline.errors import Conflict

T0 = pd.Timestamp("2024-03-01T00:00:00Z")
USERS = list(range(70))


@pytest.fixture
def source(online_url: str, tmp_path: Path) -> Iterator[Context]:
    ctx = ll.init(
        uri=f"sqlite:///{tmp_path / 'src.db'}",
        artifacts=str(tmp_path / "src-art"),
        online_store=online_url,
    )
    yield ctx
    ctx.close()


def _frame(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 300
    return pd.DataFrame(
        {
            "user": rng.integers(0, 60, n),
            "ts": T0 + pd.to_timedelta(rng.integers(0, 100, n), unit="s"),
            "x": rng.normal(size=n),
            # inf and NaN: rows packed in the online store's special form
            "y": np.where(rng.random(n) < 0.1, np.inf, rng.normal(size=n)),
            "label": [f"l{i} ☃" for i in range(n)],
        }
    )


def _view(name: str, seed: int, features: list[str]) -> None:
    ll.features.register(
        FeatureView(
            name=name, entity="user", timestamp="ts", features=features, source=_frame(seed)
        )
    )


def _features(ctx: Context) -> dict[str, Any]:
    """A materialized view, one materialized twice (whole, then incrementally), one whose
    definition changed since (its rows dropped), and one never materialized."""
    _view("u", 1, ["x", "y", "label"])
    ll.features.materialize("u", end=T0 + pd.Timedelta(seconds=80))
    _view("w", 2, ["x", "label"])
    ll.features.materialize("w", end=T0 + pd.Timedelta(seconds=40))
    ll.features.materialize(
        "w", start=T0 + pd.Timedelta(seconds=40), end=T0 + pd.Timedelta(seconds=90)
    )
    _view("changed", 3, ["x"])
    ll.features.materialize("changed", end=T0 + pd.Timedelta(seconds=90))
    _view("changed", 3, ["x", "y"])
    _view("never", 4, ["x"])
    return {v: ll.features.get_online(v, USERS) for v in ("u", "w")}


def _part(url: str) -> OnlinePart:
    return OnlinePart(open_online_store(url), check_online)


def _target(tmp_path: Path) -> tuple[str, str]:
    tag = uuid.uuid4().hex[:6]
    return f"sqlite:///{tmp_path / f'dst-{tag}.db'}", str(tmp_path / f"dst-art-{tag}")


def _flush(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


def _views(store: OnlineStore) -> list[str]:
    with store.snapshot() as snap:
        return sorted(snap.metas)


def _restore_into_new(
    tmp_path: Path, bk: Path, online_url: str, *, open_after: bool = False, **kw: Any
) -> Any:
    """Restore ``bk`` into a new database and artifact folder with the online store
    ``online_url``; with ``open_after``, make that restored store the current one."""
    uri, art = _target(tmp_path)
    engine = create_engine_for(uri)
    try:
        report = restore(engine, open_artifact_store(art), str(bk), online=_part(online_url), **kw)
    finally:
        engine.dispose()
    if open_after:
        ll.init(uri=uri, artifacts=art, online_store=online_url)
    return report


@pytest.mark.parametrize("into", ["same backend", "sqlite"])
def test_online_rows_are_backed_up_and_restored(
    source: Context, online_url: str, into: str, tmp_path: Path
) -> None:
    before = _features(source)
    made = backup(source.engine, source.artifacts, str(tmp_path / "bk"), online=_part(online_url))
    assert (made.online_views, made.online_mismatched) == (3, {})  # u, w, changed
    assert made.online_rows == sum(1 for v in before.values() for r in v if r["x"] is not None)
    manifest = Manifest.from_json((tmp_path / "bk" / "manifest.json").read_bytes(), "bk")
    assert manifest.format_version == 2 and manifest.online is not None
    assert manifest.online.store.split(":")[0] == online_url.split(":")[0]
    source.close()

    target_online = f"sqlite:///{tmp_path / 'dst-online.db'}"
    if into == "same backend" and online_url.startswith("redis"):
        _flush(online_url)  # restore into the emptied Redis
        target_online = online_url
    report = _restore_into_new(tmp_path, tmp_path / "bk", target_online, open_after=True)
    assert report.online_in_backup and report.online_rows == made.online_rows
    assert report.online_rematerialize == {}
    for view, rows in before.items():
        assert ll.features.get_online(view, USERS) == rows, view
    with pytest.raises(Conflict, match="changed since its last materialization"):
        ll.features.get_online("changed", [10_000])
    with pytest.raises(ll.NotFound, match="has not been materialized"):
        ll.features.get_online("never", [1])


@pytest.mark.parametrize("old", ["format 1", "no online store given"])
def test_a_backup_without_online_rows_restores_and_names_the_views_to_materialize(
    source: Context, old: str, tmp_path: Path
) -> None:
    _features(source)
    bk = tmp_path / "bk"
    backup(source.engine, source.artifacts, str(bk))  # no online part: "online": null
    if old == "format 1":  # as an older Loopline wrote it
        manifest = orjson.loads((bk / "manifest.json").read_bytes())
        del manifest["online"]
        manifest["format_version"] = 1
        (bk / "manifest.json").write_bytes(orjson.dumps(manifest))
    report = _restore_into_new(tmp_path, bk, f"sqlite:///{tmp_path / 'dst-online.db'}")
    assert not report.online_in_backup and report.online_rows == 0
    # materialized views only: "never" was not, and get_online already says so
    assert sorted(report.online_rematerialize) == ["changed", "u", "w"]
    assert "has no rows of it" in report.online_rematerialize["u"]


def test_a_manifest_of_a_newer_format_is_refused(source: Context, tmp_path: Path) -> None:
    backup(source.engine, source.artifacts, str(tmp_path / "bk"))
    manifest = orjson.loads((tmp_path / "bk" / "manifest.json").read_bytes())
    manifest["format_version"] = 3
    (tmp_path / "bk" / "manifest.json").write_bytes(orjson.dumps(manifest))
    with pytest.raises(ll.IntegrityError, match=r"format_version 3 is not one of \[1, 2\]"):
        _restore_into_new(tmp_path, tmp_path / "bk", f"sqlite:///{tmp_path / 'o.db'}")


def test_restore_refuses_an_online_store_with_views_unless_forced(
    source: Context, online_url: str, tmp_path: Path
) -> None:
    before = _features(source)
    bk = tmp_path / "bk"
    backup(source.engine, source.artifacts, str(bk), online=_part(online_url))
    _view("other", 5, ["x"])
    ll.features.materialize("other", end=T0 + pd.Timedelta(seconds=90))
    held = _views(open_online_store(online_url))
    assert held == ["changed", "other", "u", "w"]
    uri, art = _target(tmp_path)
    engine = create_engine_for(uri)
    with pytest.raises(Conflict, match="already holds feature views: changed, other, u, w"):
        restore(engine, open_artifact_store(art), str(bk), online=_part(online_url))
    assert _views(open_online_store(online_url)) == held  # untouched
    report = restore(
        engine, open_artifact_store(art), str(bk), online=_part(online_url), force=True
    )
    engine.dispose()
    assert report.online_replaced == held and report.online_rematerialize == {}
    assert _views(open_online_store(online_url)) == ["changed", "u", "w"]
    source.close()
    ll.init(uri=uri, artifacts=art, online_store=online_url)
    for view, rows in before.items():
        assert ll.features.get_online(view, USERS) == rows, view


def test_online_rows_no_materialization_recorded_are_backed_up_and_named(
    source: Context, online_url: str, tmp_path: Path
) -> None:
    """A materialization killed between writing its rows and recording them: the rows
    stay as they are (get_online serves them), and both backup and restore say so."""
    _features(source)
    store = open_online_store(online_url)
    meta = orjson.loads(store.read_meta("u") or b"")
    meta["end"] = (T0 + pd.Timedelta(seconds=95)).isoformat()
    store.write(
        "u", [("1", b'{"x":1.0,"y":2.0,"label":"new"}')], meta=orjson.dumps(meta), replace=False
    )
    expected = ll.features.get_online("u", USERS)
    made = backup(source.engine, source.artifacts, str(tmp_path / "bk"), online=_part(online_url))
    assert list(made.online_mismatched) == ["u"]
    assert "not those of its last recorded materialization" in made.online_mismatched["u"]
    source.close()
    target_online = f"sqlite:///{tmp_path / 'dst-online.db'}"
    report = _restore_into_new(tmp_path, tmp_path / "bk", target_online, open_after=True)
    assert list(report.online_rematerialize) == ["u"]
    assert ll.features.get_online("u", USERS) == expected


def test_a_materialization_during_the_backup_leaves_a_consistent_copy(
    source: Context, online_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A materialization writes its rows, then records them. A backup whose metadata
    snapshot fell between the two saw rows newer than its last record: it takes both
    snapshots again, and the copy holds the new rows with their record."""
    _features(source)
    from loopline.data import feature_serving

    written, release = threading.Event(), threading.Event()
    log = feature_serving.log_materialization

    def slow_log(ctx: Context, m: Any) -> None:
        written.set()  # the rows are in the online store, the record not yet
        release.wait(30)
        log(ctx, m)

    monkeypatch.setattr(feature_serving, "log_materialization", slow_log)
    end = T0 + pd.Timedelta(seconds=95)
    thread = threading.Thread(target=ll.features.materialize, args=("u",), kwargs={"end": end})
    thread.start()
    assert written.wait(30)
    threading.Timer(0.05, release.set).start()  # recorded during the backup's first pause
    made = backup(source.engine, source.artifacts, str(tmp_path / "bk"), online=_part(online_url))
    thread.join()
    assert made.online_mismatched == {}
    expected = ll.features.get_online("u", USERS)
    source.close()
    target_online = f"sqlite:///{tmp_path / 'dst-online.db'}"
    report = _restore_into_new(tmp_path, tmp_path / "bk", target_online, open_after=True)
    assert report.online_rematerialize == {}
    assert ll.features.get_online("u", USERS) == expected
    last = ll.features.get_view("u").last_materialization
    assert last is not None and last.end == end.to_pydatetime()
