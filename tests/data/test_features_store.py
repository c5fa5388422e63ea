"""Feature view definitions in the metadata store, errors, sources, schema and CLI."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from typer.testing import CliRunner

import loopline as ll
from loopline.cli.main import app
from loopline.core import audit
from loopline.core.artifacts import LocalArtifactStore
from loopline.core.context import Context
from loopline.core.db import create_engine_for
from loopline.core.db_migrations import upgrade
from loopline.core.schema import metadata
from loopline.data import feature_sources
from loopline.data.feature_tables import feature_materializations, feature_views
from loopline.data.feature_views import MAX_TTL, FeatureView
from tests.cli_run import run_cli
from tests.conftest import s3_options

T0 = pd.Timestamp("2024-03-01T00:00:00Z")


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user": [1, 1, 2],
            "ts": [T0, T0 + pd.Timedelta(hours=1), T0],
            "clicks": [1, 2, 3],
            "spend": [1.5, 2.5, 3.5],
        }
    )


def _view(**over: Any) -> FeatureView:
    args: dict[str, Any] = {
        "name": "user_stats",
        "entity": "user",
        "timestamp": "ts",
        "features": ["clicks", "spend"],
        "ttl": dt.timedelta(days=1),
        "source": _frame(),
    }
    args.update(over)
    return FeatureView(**args)


def _entities() -> pd.DataFrame:
    return pd.DataFrame({"user": [1, 2], "event_timestamp": [T0 + pd.Timedelta(hours=2)] * 2})


# -- metadata: SQLite and PostgreSQL -----------------------------------------------------


def test_register_stores_the_definition_and_the_frame(ctx: Context) -> None:
    registered = ll.features.register(_view())
    assert registered.keys == ("user",)
    assert registered.features == ("clicks", "spend")
    assert registered.ttl == dt.timedelta(days=1)
    assert registered.rows == 3
    kind, _, digest = registered.source.partition(":")
    assert kind == "frame" and ctx.artifacts.exists(digest)
    stored = pd.read_parquet(pd.io.common.BytesIO(ctx.artifacts.get_bytes(digest)))
    assert list(stored.columns) == ["user", "ts", "clicks", "spend"]
    assert str(stored["ts"].dtype) == "datetime64[us, UTC]"
    assert ll.features.get_view("user_stats") == registered
    assert [v.name for v in ll.features.list_views()] == ["user_stats"]
    assert registered.feature_refs == ["user_stats:clicks", "user_stats:spend"]


def test_register_again_is_idempotent_and_a_change_is_audited(ctx: Context) -> None:
    first = ll.features.register(_view())
    again = ll.features.register(_view())
    assert again == first
    events = audit.events(ctx.engine, object_type="feature_view", object_id="user_stats")
    assert [e.action for e in events] == ["feature_view.register"]
    changed = _frame().assign(spend=[9.0, 9.0, 9.0])
    second = ll.features.register(_view(source=changed, ttl=dt.timedelta(hours=3)))
    assert second.source != first.source and second.ttl == dt.timedelta(hours=3)
    events = audit.events(ctx.engine, object_type="feature_view", object_id="user_stats")
    assert len(events) == 2
    assert events[1].before["source"] == first.source
    assert events[1].after["definition"]["ttl_seconds"] == 3 * 3600
    result = ll.features.get_historical(_entities(), ["user_stats:spend"])
    assert result["spend"].tolist() == [9.0, 9.0]
    with ctx.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(feature_views)).scalar() == 1


def test_concurrent_registrations_audit_what_they_replaced(ctx: Context) -> None:
    # PostgreSQL: registrations of one name at once each read the same old row, so the
    # audit log said several of them replaced it (stale 'before'), and two first
    # registrations both inserted the name: a Conflict for a definition that is valid.
    errors: list[BaseException] = []

    def registrar(k: int) -> None:
        for i in range(8):
            view = FeatureView(
                name="busy",
                entity="user_id",
                timestamp="ts",
                features=[f"f{k}_{i}"],
                ttl=dt.timedelta(days=1),
                source="clicks",  # a dataset source: read at query time, not now
            )
            try:
                ll.features.register(view)
            except BaseException as exc:  # the test reports every one
                errors.append(exc)

    threads = [threading.Thread(target=registrar, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    events = audit.events(ctx.engine, object_type="feature_view", object_id="busy")
    assert len(events) == 24 and events[0].before is None
    for earlier, later in itertools.pairwise(events):
        assert later.before["definition"] == earlier.after["definition"]
    assert audit.verify(ctx.engine).ok


def test_materialization_log_on_each_backend(ctx: Context) -> None:
    ll.features.register(_view(ttl=None))
    ll.features.materialize("user_stats", end=T0 + pd.Timedelta(hours=5))
    ll.features.materialize("user_stats", end=T0 + pd.Timedelta(hours=6))
    with ctx.engine.connect() as conn:
        rows = conn.execute(sa.select(feature_materializations)).all()
    assert [r.rows for r in rows] == [2, 2]
    last = ll.features.get_view("user_stats").last_materialization
    assert last is not None and last.end == (T0 + pd.Timedelta(hours=6)).to_pydatetime()
    assert ll.features.get_online("user_stats", [1]) == [{"clicks": 2, "spend": 2.5}]
    actions = [e.action for e in audit.events(ctx.engine, object_type="feature_view")]
    assert actions == ["feature_view.register"] + ["feature_view.materialize"] * 2


def _table_of(diff: Any) -> str | None:
    if isinstance(diff, list):
        return _table_of(diff[0])
    for item in diff[1:]:
        if isinstance(item, sa.Table | sa.Index | sa.Column):
            table = item if isinstance(item, sa.Table) else item.table
            return str(table.name)
        if isinstance(item, sa.Constraint):
            return str(item.table.name)
        if isinstance(item, str) and item.startswith("feature_"):
            return item
    return None


def test_migration_matches_the_tables(db_uri: str) -> None:
    engine = create_engine_for(db_uri)
    upgrade(engine)
    ours = {"feature_views", "feature_materializations"}
    with engine.connect() as conn:
        assert ours <= set(sa.inspect(conn).get_table_names())
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    assert [d for d in diffs if _table_of(d) in ours] == []
    engine.dispose()


# -- errors ---------------------------------------------------------------------------


def test_unknown_feature_names_the_view_and_lists_its_features(embedded_ctx: Context) -> None:
    ll.features.register(_view())
    with pytest.raises(ll.NotFound) as info:
        ll.features.get_historical(_entities(), ["user_stats:click"])
    msg = str(info.value)
    assert "'user_stats'" in msg and "'click'" in msg and "clicks, spend" in msg


def test_unknown_view_is_not_found_listing_the_views(embedded_ctx: Context) -> None:
    ll.features.register(_view())
    with pytest.raises(ll.NotFound, match="no feature view named 'usr_stats'") as info:
        ll.features.get_historical(_entities(), ["usr_stats:clicks"])
    assert "user_stats" in (info.value.hint or "")
    with pytest.raises(ll.NotFound, match="'usr_stats'"):
        ll.features.get_view("usr_stats")


def test_entity_frame_without_the_timestamp_column(embedded_ctx: Context) -> None:
    ll.features.register(_view())
    entities = _entities().rename(columns={"event_timestamp": "when"})
    with pytest.raises(ll.InvalidInput) as info:
        ll.features.get_historical(entities, ["user_stats:clicks"])
    assert "'event_timestamp'" in str(info.value) and "user, when" in str(info.value)
    assert info.value.field == "timestamp"
    result = ll.features.get_historical(entities, ["user_stats:clicks"], timestamp="when")
    assert result["clicks"].tolist() == [2, 3]


def test_entity_frame_without_the_key_column(embedded_ctx: Context) -> None:
    ll.features.register(_view())
    entities = _entities().rename(columns={"user": "customer"})
    with pytest.raises(ll.InvalidInput, match="no column 'user'") as info:
        ll.features.get_historical(entities, ["user_stats:clicks"])
    assert "customer, event_timestamp" in str(info.value)
    assert info.value.field == "user"


@pytest.mark.parametrize(
    ("features", "match"),
    [
        ("user_stats:clicks", "list"),
        ([], "list"),
        (["clicks"], "'view:feature'"),
        (["user_stats:"], "'view:feature'"),
        (["user_stats:clicks", "user_stats:clicks"], "'clicks'"),
    ],
    ids=["a-string", "empty", "no-view", "no-feature", "twice"],
)
def test_bad_feature_references(embedded_ctx: Context, features: Any, match: str) -> None:
    ll.features.register(_view())
    with pytest.raises(ll.InvalidInput, match=match):
        ll.features.get_historical(_entities(), features)


def test_result_column_clashing_with_the_entity_frame(embedded_ctx: Context) -> None:
    ll.features.register(_view())
    with pytest.raises(ll.InvalidInput, match="'clicks'"):
        ll.features.get_historical(_entities().assign(clicks=0), ["user_stats:clicks"])


def _two_views_meeting_at_full_names() -> None:
    """Views 'va' (b__x, x) and 'va__b' (x): 'va:b__x' and 'va__b:x' are both 'va__b__x'."""
    frame = pd.DataFrame({"user": [1], "ts": [T0], "b__x": [1.0], "x": [2.0]})
    for name, feats in (("va", ["b__x", "x"]), ("va__b", ["x"])):
        ll.features.register(
            FeatureView(name=name, entity="user", timestamp="ts", features=feats, source=frame)
        )


@pytest.mark.parametrize(
    ("features", "full_names", "match", "hint"),
    [
        (["va:b__x", "va:b__x"], True, "'b__x' of view 'va' is listed more than once", "once"),
        (["va:b__x", "va:b__x"], False, "'b__x' of view 'va' is listed more than once", "once"),
        (
            ["va:b__x", "va__b:x"],
            True,
            "'va:b__x' and 'va__b:x' would both be named 'va__b__x'",
            "separate calls",
        ),
        (["va:x", "va__b:x"], False, "would both be named 'x'", "pass full_names=True"),
    ],
    ids=["twice-full-names", "twice", "meet-at-full-names", "same-feature-name"],
)
def test_result_columns_sharing_a_name_get_the_hint_that_fits(
    embedded_ctx: Context, features: list[str], full_names: bool, match: str, hint: str
) -> None:
    # With full_names=True already passed, the hint said "pass full_names=True".
    _two_views_meeting_at_full_names()
    with pytest.raises(ll.InvalidInput, match=match) as info:
        ll.features.get_historical(_entities(), features, full_names=full_names)
    assert hint in (info.value.hint or "") and info.value.field == "features"
    if full_names:
        assert "full_names=True" not in (info.value.hint or "")


def test_a_full_name_clashing_with_the_entity_frame_hints_a_rename(embedded_ctx: Context) -> None:
    ll.features.register(_view())
    entities = _entities().assign(user_stats__clicks=0)
    with pytest.raises(ll.InvalidInput, match="'user_stats__clicks'") as info:
        ll.features.get_historical(entities, ["user_stats:clicks"], full_names=True)
    assert info.value.hint == "rename the entity frame's column"


def test_full_names_must_be_a_bool(embedded_ctx: Context) -> None:
    ll.features.register(_view())
    with pytest.raises(ll.InvalidInput, match="full_names must be True or False") as info:
        ll.features.get_historical(_entities(), ["user_stats:clicks"], full_names="no")  # type: ignore[arg-type]
    assert info.value.field == "full_names"


def test_a_view_object_among_the_features_is_named_by_its_type(embedded_ctx: Context) -> None:
    # Its repr printed the whole source frame.
    view = _view()
    ll.features.register(view)
    with pytest.raises(ll.InvalidInput, match="of type FeatureView is not of the form"):
        ll.features.get_historical(_entities(), [view])  # type: ignore[list-item]


def test_entity_timestamps_must_be_times(embedded_ctx: Context) -> None:
    ll.features.register(_view())
    with pytest.raises(ll.InvalidInput, match="not timestamps"):
        ll.features.get_historical(_entities().assign(event_timestamp=5), ["user_stats:clicks"])
    with pytest.raises(ll.InvalidInput, match="not timestamps"):
        ll.features.get_historical(
            _entities().assign(event_timestamp="yesterday"), ["user_stats:clicks"]
        )
    iso = _entities().assign(event_timestamp=["2024-03-01T02:00:00Z", "2024-03-01T02:00:00"])
    assert ll.features.get_historical(iso, ["user_stats:clicks"])["clicks"].tolist() == [2, 3]


def test_key_types_that_cannot_match(embedded_ctx: Context) -> None:
    ll.features.register(_view())
    entities = _entities().assign(user=["1", "2"])
    with pytest.raises(ll.InvalidInput, match="key column 'user' is VARCHAR"):
        ll.features.get_historical(entities, ["user_stats:clicks"])
    as_float = _entities().assign(user=[1.0, 2.0])
    assert ll.features.get_historical(as_float, ["user_stats:clicks"])["clicks"].tolist() == [2, 3]


@pytest.mark.parametrize(
    "entities",
    [
        pd.DataFrame({"user": [], "event_timestamp": pd.to_datetime([], utc=True)}),
        pd.DataFrame(columns=["user", "event_timestamp"]),
        _entities().iloc[:0],
    ],
    ids=["empty-object-key", "no-dtypes", "empty-slice"],
)
def test_an_empty_entity_frame_gives_empty_feature_columns(
    embedded_ctx: Context, entities: pd.DataFrame
) -> None:
    # An empty object key column was "VARCHAR in the entity frame but BIGINT in the view".
    ll.features.register(_view())
    full = ll.features.get_historical(_entities(), ["user_stats:clicks", "user_stats:spend"])
    empty = ll.features.get_historical(entities, ["user_stats:clicks", "user_stats:spend"])
    assert list(empty.columns) == ["user", "event_timestamp", "clicks", "spend"]
    assert len(empty) == 0
    assert (empty["clicks"].dtype, empty["spend"].dtype) == (
        full["clicks"].dtype,
        full["spend"].dtype,
    )
    # A text key: an empty column (float64 or object) was "DOUBLE ... but VARCHAR".
    text = pd.DataFrame({"k": ["a"], "ts": [T0], "clicks": [5]})
    ll.features.register(_view(name="by_text", entity="k", features=["clicks"], source=text))
    no_rows = entities.rename(columns={"user": "k"})
    assert ll.features.get_historical(no_rows, ["by_text:clicks"])["clicks"].tolist() == []


def test_key_columns_of_nothing_but_nulls_match_nothing(embedded_ctx: Context) -> None:
    # A view with no rows (or no row with a key) has key columns whose type says nothing
    # (an empty object column is NULL to DuckDB): every entity frame was refused as having
    # keys of another type, and so was an entity key column of nothing but None.
    empty = _frame().iloc[:0].astype({"user": object})
    nulls = _frame().assign(user=None)
    ll.features.register(_view(name="empty", source=empty))
    ll.features.register(_view(name="nulls", source=nulls))
    ll.features.register(_view(name="full", source=_frame()))
    refs = ["empty:clicks", "nulls:spend", "full:clicks"]
    got = ll.features.get_historical(_entities(), refs, full_names=True)
    assert got["empty__clicks"].isna().all() and got["nulls__spend"].isna().all()
    assert got["full__clicks"].tolist() == [2, 3]
    texts = _entities().assign(user=["a", "b"])
    assert ll.features.get_historical(texts, refs[:2])[["clicks", "spend"]].isna().all().all()
    unknown = _entities().assign(user=[None, None])
    assert ll.features.get_historical(unknown, ["full:clicks"])["clicks"].isna().all()


def test_a_categorical_key_is_read_as_its_categories(embedded_ctx: Context) -> None:
    # DuckDB saw it as an ENUM, refused as a key type that cannot match.
    ll.features.register(_view())
    entities = _entities()
    for key, clicks in (([1, 2], [2, 3]), ([2, 1], [3, 2]), ([1, None], [2, None])):
        result = ll.features.get_historical(
            entities.assign(user=pd.Categorical(key)), ["user_stats:clicks"]
        )
        got = [None if pd.isna(v) else v for v in result["clicks"]]
        assert got == clicks, key
    text = pd.DataFrame({"k": ["a"], "ts": [T0], "clicks": [5]})
    ll.features.register(_view(name="by_text", entity="k", features=["clicks"], source=text))
    cat = pd.DataFrame({"k": pd.Categorical(["a", "b"]), "event_timestamp": [T0, T0]})
    result = ll.features.get_historical(cat, ["by_text:clicks"])
    assert result["clicks"].tolist()[0] == 5 and pd.isna(result["clicks"].tolist()[1])
    assert isinstance(result["k"].dtype, pd.CategoricalDtype)  # the caller's frame unchanged


def test_duplicate_entity_columns_are_named(embedded_ctx: Context) -> None:
    # Was AttributeError: 'DataFrame' object has no attribute 'array'.
    ll.features.register(_view())
    entities = pd.concat([_entities(), _entities()[["user"]]], axis=1)
    with pytest.raises(ll.InvalidInput, match="duplicate column names: 'user'") as info:
        ll.features.get_historical(entities, ["user_stats:clicks"])
    assert info.value.field == "user"


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"name": "bad name!"}, "name"),
        ({"name": "a:b"}, "name"),
        ({"entity": []}, "entity"),
        ({"entity": ["user", "user"]}, "entity"),
        ({"features": "clicks"}, "features"),
        ({"features": []}, "features"),
        ({"features": ["clicks", "clicks"]}, "features"),
        ({"features": ["user"]}, "features"),
        ({"ttl": dt.timedelta(0)}, "ttl"),
        ({"ttl": 60}, "ttl"),
        ({"ttl": dt.timedelta.max}, "ttl"),
        ({"ttl": MAX_TTL + dt.timedelta(microseconds=1)}, "ttl"),
        ({"source": 5}, "source"),
        ({"features": ["clicks", "nope"]}, "nope"),
        ({"timestamp": "when"}, "when"),
        ({"created": "made"}, "made"),
    ],
    ids=lambda v: str(v) if isinstance(v, str) else "",
)
def test_invalid_feature_views(over: dict[str, Any], field: str) -> None:
    with pytest.raises(ll.InvalidInput) as info:
        _view(**over)
    assert info.value.field == field
    assert info.value.exit_code == 2


def test_the_longest_ttl_comes_back_exactly(embedded_ctx: Context) -> None:
    ttl = MAX_TTL - dt.timedelta(microseconds=1)
    assert ll.features.register(_view(ttl=ttl)).ttl == ttl
    assert ll.features.get_view("user_stats").ttl == ttl
    result = ll.features.get_historical(_entities(), ["user_stats:clicks"])
    assert result["clicks"].tolist() == [2, 3]


def test_a_stored_ttl_too_long_for_a_timedelta_does_not_break_reads(
    embedded_ctx: Context,
) -> None:
    # timedelta.max was accepted (stored as float seconds) and then every read of the views
    # failed with OverflowError; such a stored TTL now reads as no TTL.
    ll.features.register(_view(ttl=dt.timedelta(days=1)))
    with embedded_ctx.engine.begin() as conn:
        row = conn.execute(sa.select(feature_views.c.definition)).one()
        definition = {**row.definition, "ttl_seconds": dt.timedelta.max.total_seconds()}
        conn.execute(sa.update(feature_views).values(definition=definition))
    assert [v.ttl for v in ll.features.list_views()] == [None]
    result = ll.features.get_historical(_entities(), ["user_stats:clicks"])
    assert result["clicks"].tolist() == [2, 3]


@pytest.mark.parametrize(
    "over",
    [
        {"features": ["clicks", "file_row_number"]},
        {"timestamp": "__ll_ts"},
        {"entity": ["user", "__ll_row"]},
        {"created": "__ll_cr"},
    ],
    ids=["file_row_number", "timestamp", "entity", "created"],
)
def test_columns_named_as_the_store_own_are_refused(over: dict[str, Any]) -> None:
    # A frame column file_row_number failed register with DuckDB's BinderException (after
    # the view was saved); __ll_ names are the queries' own columns.
    source = _frame().assign(file_row_number=1, __ll_ts=T0, __ll_row=1, __ll_cr=T0)
    with pytest.raises(ll.InvalidInput, match="uses itself") as info:
        _view(source=source, **over)
    assert info.value.field in ("file_row_number", "__ll_ts", "__ll_row", "__ll_cr")


def test_source_timestamps_must_be_times(embedded_ctx: Context) -> None:
    with pytest.raises(ll.InvalidInput, match="not timestamps"):
        ll.features.register(_view(source=_frame().assign(ts=[1, 2, 3])))


def _text_created_frame() -> pd.DataFrame:
    # 10:00+05:00 is 05:00 UTC, an hour older than 06:00Z: the x=2 row must win, though
    # as text "2024-01-01T10..." sorts after "2024-01-01T06...".
    return pd.DataFrame(
        {
            "user": [1, 1],
            "ts": [T0, T0],
            "made": ["2024-01-01T10:00:00+05:00", "2024-01-01T06:00:00+00:00"],
            "clicks": [1, 2],
        }
    )


@pytest.mark.parametrize("source", ["frame", "dataset"])
def test_created_as_iso_text_breaks_ties_as_times(embedded_ctx: Context, source: str) -> None:
    frame = _text_created_frame()
    if source == "dataset":
        ll.datasets.register("made", frame)
    view = _view(source=frame if source == "frame" else "made", created="made", features=["clicks"])
    ll.features.register(view)
    entities = pd.DataFrame({"user": [1], "event_timestamp": [T0 + pd.Timedelta(hours=1)]})
    assert ll.features.get_historical(entities, ["user_stats:clicks"])["clicks"].tolist() == [2]
    ll.features.materialize("user_stats", end=T0 + pd.Timedelta(hours=1))
    assert ll.features.get_online("user_stats", [1]) == [{"clicks": 2}]


@pytest.mark.parametrize("column", ["made", "ts"])
@pytest.mark.parametrize("source", ["frame", "dataset"])
def test_text_times_that_are_not_times_are_refused(
    embedded_ctx: Context, source: str, column: str
) -> None:
    frame = _text_created_frame()
    frame["ts"] = ["2024-03-01T00:00:00Z"] * 2
    frame[column] = ["2024-01-01T06:00:00Z", "not a time"]
    if source == "dataset":
        ll.datasets.register("made", frame)
    view = _view(source=frame if source == "frame" else "made", created="made", features=["clicks"])
    entities = pd.DataFrame({"user": [1], "event_timestamp": [T0 + pd.Timedelta(hours=1)]})
    with pytest.raises(ll.InvalidInput, match=r"e\.g\. 'not a time'") as info:
        ll.features.register(view)
        ll.features.get_historical(entities, ["user_stats:clicks"])  # a dataset: read here
    assert info.value.field == column
    assert f"column {column!r}" in str(info.value)


def test_corrupted_stored_frame_is_detected(embedded_ctx: Context) -> None:
    digest = ll.features.register(_view()).source.partition(":")[2]
    store = embedded_ctx.artifacts
    assert isinstance(store, LocalArtifactStore)
    path = store.local_path(digest)
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    feature_sources._verified.clear()
    with pytest.raises(ll.IntegrityError, match=digest):
        ll.features.get_historical(_entities(), ["user_stats:clicks"])


def _prepared(ctx: Context) -> dict[str, int]:
    folder = ctx.settings.home / "cache" / "features" / "prepared"
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} if folder.is_dir() else {}


def test_prepared_copy_is_written_at_register_and_reused(embedded_ctx: Context) -> None:
    ll.features.register(_view())
    first = _prepared(embedded_ctx)
    assert len(first) == 1  # written by register, not by the first training set
    result = ll.features.get_historical(_entities(), ["user_stats:clicks", "user_stats:spend"])
    assert result["clicks"].tolist() == [2, 3]
    assert _prepared(embedded_ctx) == first  # reused as it is
    # New data under the same name: a new copy; the training set sees the new data.
    ll.features.register(_view(source=_frame().assign(spend=[5.0, 6.0, 7.0])))
    assert len(_prepared(embedded_ctx)) == 2
    result = ll.features.get_historical(_entities(), ["user_stats:spend"])
    assert result["spend"].tolist() == [6.0, 7.0]
    # A changed definition over the same data (a TTL alone does not change the rows).
    ll.features.register(
        _view(source=_frame().assign(spend=[5.0, 6.0, 7.0]), created="clicks", features=["spend"])
    )
    assert len(_prepared(embedded_ctx)) == 3
    ll.features.register(_view(ttl=dt.timedelta(minutes=30)))
    assert len(_prepared(embedded_ctx)) == 3
    assert ll.features.get_historical(_entities(), ["user_stats:spend"])["spend"].isna().all()


def test_deleted_prepared_copy_is_written_again(embedded_ctx: Context) -> None:
    ll.features.register(_view())
    folder = embedded_ctx.settings.home / "cache" / "features" / "prepared"
    for path in folder.iterdir():
        path.unlink()
    result = ll.features.get_historical(_entities(), ["user_stats:spend"])
    assert result["spend"].tolist() == [2.5, 3.5]
    assert [p.suffix for p in folder.iterdir()] == [".parquet"]  # no temporary file left


def test_dataset_source_is_prepared_on_first_use_per_version(embedded_ctx: Context) -> None:
    ll.datasets.register("stats", _frame())
    ll.features.register(_view(source="stats"))
    assert _prepared(embedded_ctx) == {}  # the dataset may move on before it is used
    ll.features.get_historical(_entities(), ["user_stats:spend"])
    assert len(_prepared(embedded_ctx)) == 1
    ll.datasets.register("stats", _frame().assign(spend=[7.0, 8.0, 9.0]))
    assert ll.features.get_historical(_entities(), ["user_stats:spend"])["spend"].tolist() == [
        8.0,
        9.0,
    ]
    assert len(_prepared(embedded_ctx)) == 2


# -- sources: S3 artifacts, versioned datasets -------------------------------------------


@pytest.fixture
def s3_ctx(tmp_path: Path, s3_env: None, s3_url: str) -> Iterator[Context]:
    assert s3_options()
    context = ll.init(uri=f"sqlite:///{tmp_path / 'meta.db'}", artifacts=s3_url)
    yield context
    context.close()


def test_frames_in_s3_are_fetched_once_and_verified(s3_ctx: Context, tmp_path: Path) -> None:
    registered = ll.features.register(_view())
    result = ll.features.get_historical(_entities(), ["user_stats:clicks", "user_stats:spend"])
    assert result["clicks"].tolist() == [2, 3]
    digest = registered.source.partition(":")[2]
    cached = Path(".loopline") / "cache" / "features" / f"{digest}.parquet"
    assert cached.is_file()
    assert ll.features.materialize("user_stats", end=T0 + pd.Timedelta(hours=2)).rows == 2


def test_dataset_source_resolved_at_query_time(embedded_ctx: Context) -> None:
    ll.datasets.register("stats", _frame())
    ll.features.register(_view(source="stats"))
    ll.features.register(_view(name="pinned", source="stats@1"))
    assert ll.features.get_view("user_stats").source == "dataset:stats"
    assert ll.features.get_historical(_entities(), ["user_stats:spend"])["spend"].tolist() == [
        2.5,
        3.5,
    ]
    ll.datasets.register("stats", _frame().assign(spend=[7.0, 8.0, 9.0]))
    result = ll.features.get_historical(_entities(), ["user_stats:spend"])
    assert result["spend"].tolist() == [8.0, 9.0]  # latest version
    result = ll.features.get_historical(
        _entities(), ["user_stats:spend", "pinned:spend"], full_names=True
    )
    assert result["pinned__spend"].tolist() == [2.5, 3.5]  # version 1
    ll.features.materialize("user_stats", end=T0 + pd.Timedelta(hours=2))
    assert ll.features.get_online("user_stats", [2]) == [{"clicks": 3, "spend": 9.0}]


def test_a_dataset_of_several_files_with_a_filename_column(
    embedded_ctx: Context, tmp_path: Path
) -> None:
    # DuckDB's scan of several files added its own 'filename' column, and refused files
    # that had one (BinderException), whether the view used it or not.
    folder = tmp_path / "parts"
    folder.mkdir()
    for i, frame in enumerate([_frame().iloc[:2], _frame().iloc[2:]]):
        frame.assign(filename=f"part{i}.csv").to_parquet(folder / f"p{i}.parquet")
    ll.datasets.register("parts", str(folder))
    ll.features.register(_view(name="with_name", source="parts", features=["clicks", "filename"]))
    ll.features.register(_view(name="without", source="parts"))
    got = ll.features.get_historical(_entities(), ["with_name:clicks", "with_name:filename"])
    assert got[["clicks", "filename"]].to_dict("list") == {
        "clicks": [2, 3],
        "filename": ["part0.csv", "part1.csv"],
    }
    got = ll.features.get_historical(_entities(), ["without:spend"])
    assert got["spend"].tolist() == [2.5, 3.5]


def test_a_dataset_with_a_file_row_number_column_is_refused_naming_it(
    embedded_ctx: Context,
) -> None:
    ll.datasets.register("numbered", _frame().assign(file_row_number=[7, 8, 9]))
    ll.features.register(_view(source="numbered"))
    with pytest.raises(ll.InvalidInput, match="'file_row_number'") as info:
        ll.features.get_historical(_entities(), ["user_stats:clicks"])
    assert info.value.field == "file_row_number"


def test_nanosecond_times_of_a_dataset_are_floored_as_a_frame_s_are(
    embedded_ctx: Context,
) -> None:
    # DuckDB's cast of a nanosecond timestamp to microseconds rounds (.0000015 -> .000002,
    # -500 ns -> -1 us); times are compared with sub-microsecond digits dropped.
    ns = pd.Timedelta(nanoseconds=1)
    times = [T0 + 1500 * ns, T0 + 1400 * ns, T0 + 9500 * ns, T0 + 9500 * ns]
    frame = pd.DataFrame(
        {
            "user": [1, 2, 3, 3],
            "ts": pd.Series(times, dtype="datetime64[ns, UTC]"),
            # created 0.6 us apart in the same microsecond: a tie, the last row wins
            "created": pd.Series(
                [T0, T0, T0 + 900 * ns, T0 + 300 * ns], dtype="datetime64[ns, UTC]"
            ),
            "x": [1.0, 2.0, 3.0, 4.0],
        }
    )
    epoch = pd.Timestamp(0, tz="UTC")
    before = pd.DataFrame(
        {
            "user": [4],
            "ts": pd.Series([epoch - 400 * ns], dtype="datetime64[ns, UTC]"),
            "created": pd.Series([T0], dtype="datetime64[ns, UTC]"),
            "x": [5.0],
        }
    )
    frame = pd.concat([frame, before], ignore_index=True)
    ll.datasets.register("nanos", frame)
    entities = pd.DataFrame(
        {
            "user": [1, 2, 3, 4],
            "event_timestamp": [T0 + 1000 * ns, T0 + 1000 * ns, T0 + 9000 * ns, epoch - 1000 * ns],
        }
    )
    got = {}
    for source in ("nanos", frame):
        name = "ds" if isinstance(source, str) else "fr"
        ll.features.register(
            _view(name=name, source=source, features=["x"], created="created", ttl=None)
        )
        got[name] = ll.features.get_historical(entities, [f"{name}:x"])["x"].tolist()
    assert got["ds"] == got["fr"] == [1.0, 2.0, 4.0, 5.0]


def test_a_dataset_duration_feature_keeps_its_type_and_one_per_file_is_refused(
    embedded_ctx: Context, tmp_path: Path
) -> None:
    # DuckDB reads Arrow's duration as plain integers in the file's unit: a training set
    # gave 1 (seconds) or 1000 (milliseconds) for the same second.
    folder = tmp_path / "waits"
    folder.mkdir()
    for i, unit in enumerate(["s", "ms"]):
        part = _frame().iloc[[i]].assign(wait=pd.Series([pd.Timedelta(seconds=1)] * 1))
        part["wait"] = part["wait"].astype(f"timedelta64[{unit}]")
        part.to_parquet(folder / f"p{i}.parquet")
    ll.datasets.register("waits", str(folder))
    ll.features.register(_view(name="waits", source="waits", features=["wait"], ttl=None))
    with pytest.raises(ll.InvalidInput, match="'wait' of feature view 'waits' holds") as info:
        ll.features.get_historical(_entities(), ["waits:wait"])
    assert info.value.field == "wait"
    ll.datasets.register("wait", _frame().assign(wait=pd.to_timedelta([1, 2, 3], unit="min")))
    ll.features.register(_view(name="wait", source="wait", features=["wait"]))
    got = ll.features.get_historical(_entities(), ["wait:wait"])["wait"]
    assert str(got.dtype) == "timedelta64[us]"
    assert got.tolist() == [pd.Timedelta(minutes=2), pd.Timedelta(minutes=3)]


def test_dataset_source_missing_a_column(embedded_ctx: Context) -> None:
    ll.datasets.register("thin", _frame().drop(columns=["spend"]))
    ll.features.register(_view(source="thin"))
    with pytest.raises(ll.InvalidInput, match="no column 'spend'"):
        ll.features.get_historical(_entities(), ["user_stats:spend"])
    ll.features.register(_view(name="nowhere", source="no_such_dataset"))  # resolved lazily
    with pytest.raises(ll.NotFound, match="no_such_dataset"):
        ll.features.get_historical(_entities(), ["nowhere:clicks"])


@pytest.mark.parametrize("source", ["stats@zero", "stats@0", "stats@-1", "../stats"])
def test_a_dataset_source_that_is_no_reference_is_refused_at_register(
    embedded_ctx: Context, source: str
) -> None:
    # Was registered, and failed only at the first query.
    with pytest.raises(ll.InvalidInput, match="is not a dataset reference") as info:
        ll.features.register(_view(source=source))
    assert repr(source) in str(info.value) and info.value.field == "source"
    assert ll.features.list_views() == []


def test_a_files_dataset_source_says_a_view_needs_a_table(
    embedded_ctx: Context, tmp_path: Path
) -> None:
    # Was NotFound "has no Parquet file ... hint: register the dataset again".
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"jpg")
    ll.datasets.register("photos", folder)
    ll.features.register(_view(source="photos"))
    with pytest.raises(ll.InvalidInput, match="photos@1 is a files dataset") as info:
        ll.features.get_historical(_entities(), ["user_stats:clicks"])
    assert "table" in str(info.value) and "DataFrame, CSV or Parquet" in (info.value.hint or "")


# -- CLI ------------------------------------------------------------------------------


def test_cli_ls_show_materialize_get_online(embedded_ctx: Context) -> None:
    ll.features.register(_view(ttl=None))
    runner = CliRunner()
    out = runner.invoke(app, ["features", "ls", "--json"])
    assert out.exit_code == 0, out.output
    assert [v["name"] for v in orjson.loads(out.stdout)] == ["user_stats"]
    out = runner.invoke(app, ["features", "show", "user_stats", "--json"])
    assert orjson.loads(out.stdout)["features"] == ["clicks", "spend"]
    out = runner.invoke(
        app, ["features", "materialize", "user_stats", "--end", "2024-03-01T05:00:00Z", "--json"]
    )
    assert out.exit_code == 0, out.output
    assert orjson.loads(out.stdout)["rows"] == 2
    out = runner.invoke(app, ["features", "get-online", "user_stats", "1", "3", "--json"])
    assert orjson.loads(out.stdout) == [
        {"key": "1", "features": {"clicks": 2, "spend": 2.5}},
        {"key": "3", "features": {"clicks": None, "spend": None}},
    ]
    for args in (["ls"], ["show", "user_stats"], ["get-online", "user_stats", "2"]):
        out = runner.invoke(app, ["features", *args])
        assert out.exit_code == 0, out.output
        assert "user_stats" in out.stdout


def test_cli_get_online_json_writes_non_finite_floats_and_bytes_as_strings(
    embedded_ctx: Context,
) -> None:
    # JSON has no inf, NaN or bytes: orjson printed null (the form of a missing value) and
    # the bytes' Python repr.
    inf = float("inf")
    frame = pd.DataFrame(
        {
            "user": [1, 2],
            "ts": [T0, T0],
            "x": [inf, 1.5],
            "lst": [[-inf, 2.0], []],
            "b": [b"\x00a", b"z"],
        }
    )
    feats = ["x", "lst", "b"]
    ll.features.register(
        FeatureView(name="odd", entity="user", timestamp="ts", features=feats, source=frame)
    )
    ll.features.materialize("odd", end=T0)
    out = CliRunner().invoke(app, ["features", "get-online", "odd", "1", "2", "3", "--json"])
    assert out.exit_code == 0, out.output
    assert [r["features"] for r in orjson.loads(out.stdout)] == [
        {"x": "Infinity", "lst": ["-Infinity", 2.0], "b": "AGE="},  # bytes: base64
        {"x": 1.5, "lst": [], "b": "eg=="},
        {"x": None, "lst": None, "b": None},
    ]


def test_cli_get_online_refuses_a_key_with_the_wrong_number_of_parts(
    embedded_ctx: Context,
) -> None:
    frame = pd.DataFrame({"region": ["eu"], "shop": [1], "ts": [T0], "rate": [0.1]})
    ll.features.register(
        FeatureView(
            name="shops", entity=["region", "shop"], timestamp="ts", features=["rate"], source=frame
        )
    )
    ll.features.materialize("shops", end=T0)
    runner = CliRunner()
    out = runner.invoke(app, ["features", "get-online", "shops", "eu,1", "eu,1,extra", "--json"])
    assert isinstance(out.exception, ll.InvalidInput)  # the CLI's boundary prints it, exit 2
    assert out.exception.exit_code == 2 and out.exception.field == "keys"
    assert "key 'eu,1,extra' has 3 part(s)" in str(out.exception)
    assert "region, shop" in str(out.exception)
    out = runner.invoke(app, ["features", "get-online", "shops", "eu,1", "--json"])
    assert out.exit_code == 0, out.output
    assert orjson.loads(out.stdout) == [{"key": "eu,1", "features": {"rate": 0.1}}]


def test_cli_get_online_takes_a_key_as_a_json_array(embedded_ctx: Context) -> None:
    # A part holding ',' could not be addressed ('a,b,1' is 3 parts) and the hint printed
    # a literal "e.g. ...,...".
    frame = pd.DataFrame({"region": ["eu,west", "eu"], "shop": [1, 2], "ts": [T0] * 2})
    frame["rate"] = [0.1, 0.2]
    ll.features.register(
        FeatureView(
            name="shops", entity=["region", "shop"], timestamp="ts", features=["rate"], source=frame
        )
    )
    ll.features.materialize("shops", end=T0)
    runner = CliRunner()
    out = runner.invoke(app, ["features", "get-online", "shops", "eu,west,1"])
    assert isinstance(out.exception, ll.InvalidInput)
    hint = out.exception.hint or ""
    assert "..." not in hint
    assert "e.g. eu,42" in hint and """'["eu,west",42]'""" in hint
    keys = ['["eu,west", 1]', '["eu,west", "1"]', "eu,2", '["eu", 2]', "eu,1"]
    out = runner.invoke(app, ["features", "get-online", "shops", *keys, "--json"])
    assert out.exit_code == 0, out.output
    assert [r["features"]["rate"] for r in orjson.loads(out.stdout)] == [0.1, 0.1, 0.2, 0.2, None]


@pytest.mark.parametrize(
    ("key", "match"),
    [
        ('["eu", 1', "starts with '\\[' but is not a JSON array"),
        ("[null, 1]", "must be a JSON array of strings and numbers"),
        ('[["eu"], 1]', "must be a JSON array of strings and numbers"),
        ('["eu,west"]', "has 1 part\\(s\\)"),
    ],
    ids=["not-json", "null", "nested", "too-few"],
)
def test_cli_get_online_refuses_a_bad_json_key(embedded_ctx: Context, key: str, match: str) -> None:
    frame = pd.DataFrame({"region": ["eu"], "shop": [1], "ts": [T0], "rate": [0.1]})
    ll.features.register(
        FeatureView(
            name="shops", entity=["region", "shop"], timestamp="ts", features=["rate"], source=frame
        )
    )
    out = CliRunner().invoke(app, ["features", "get-online", "shops", key])
    assert isinstance(out.exception, ll.InvalidInput)
    assert out.exception.field == "keys"
    assert re.search(match, str(out.exception)), str(out.exception)


def test_cli_unknown_view_exits_4_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "LOOPLINE_HOME": str(tmp_path / "home")}
    result = run_cli(["features", "show", "ghost"], env=env, cwd=tmp_path, timeout=120)
    assert result.returncode == 4, result.stderr
    assert "no feature view named 'ghost'" in result.stderr
    assert "Traceback" not in result.stderr


def test_training_sets_follow_a_changed_feature_type(embedded_ctx: Context) -> None:
    # A frame registered again, and a dataset's new version, with clicks as text, then as
    # floats: each training set has the type of the rows it reads, none a stale copy's.
    ll.features.register(_view())
    assert ll.features.get_historical(_entities(), ["user_stats:clicks"])["clicks"].tolist() == [
        2,
        3,
    ]
    ll.features.register(_view(source=_frame().assign(clicks=["a", "b", "c"])))
    result = ll.features.get_historical(_entities(), ["user_stats:clicks"])
    assert result["clicks"].tolist() == ["b", "c"]
    ll.datasets.register("stats", _frame())
    ll.features.register(_view(source="stats"))
    ll.features.register(_view(name="pinned", source="stats@1"))
    ll.datasets.register("stats", _frame().assign(clicks=[0.5, 1.5, 2.5]))
    result = ll.features.get_historical(
        _entities(), ["user_stats:clicks", "pinned:clicks"], full_names=True
    )
    assert result["user_stats__clicks"].tolist() == [1.5, 2.5]
    assert result["user_stats__clicks"].dtype == "float64"
    assert result["pinned__clicks"].tolist() == [2, 3]
    assert result["pinned__clicks"].dtype == "int64"
