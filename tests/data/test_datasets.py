from __future__ import annotations

import decimal
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import loopline as ll
from loopline.core import audit
from loopline.core.artifacts import LocalArtifactStore, hash_file
from loopline.core.context import Context
from loopline.data import datasets
from loopline.data.dataset_refs import parse_version
from loopline.data.ingest import manifest_bytes
from loopline.errors import ConfigError, IntegrityError, InvalidInput, NotFound
from tests.conftest import run_python


def _frame(n: int = 100, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "id": np.arange(n),
            "age": rng.integers(18, 90, n),
            "plan": rng.choice(["basic", "pro", "team"], n),
            "score": rng.normal(0.0, 1.0, n),
        }
    )


def test_register_a_dataframe_as_a_parquet_table(ctx: Context) -> None:
    df = _frame()
    v = ll.datasets.register("churn", df, description="toy churn data")
    assert (v.name, v.version, v.kind, v.row_count) == ("churn", 1, "table", 100)
    assert v.schema == {"id": "int64", "age": "int64", "plan": "large_string", "score": "double"}
    assert [f.path for f in v.files] == ["data.parquet"]
    assert pq.ParquetFile(v.path).metadata.row_group(0).column(0).compression == "ZSTD"
    assert v.stats["age"]["min"] == int(df.age.min())
    assert v.stats["score"]["mean"] == pytest.approx(df.score.mean())
    assert v.stats["score"]["std"] == pytest.approx(df.score.std())
    assert v.stats["plan"]["distinct"] == 3
    assert sum(t["count"] for t in v.stats["plan"]["top"]) == 100
    pd.testing.assert_frame_equal(v.to_pandas(), df, check_dtype=False)
    assert ll.datasets.get("churn").description == "toy churn data"


def test_register_an_arrow_table(ctx: Context) -> None:
    table = pa.table({"x": [1.0, None, 3.0], "when": pa.array([1, 2, 3], pa.timestamp("s"))})
    v = ll.datasets.register("arrow", table)
    assert v.kind == "table"
    assert v.schema == {"x": "double", "when": "timestamp[ms]"}  # Parquet has no seconds
    assert v.stats["x"] == {
        "count": 2,
        "nulls": 1,
        "min": 1.0,
        "max": 3.0,
        "mean": 2.0,
        "std": (2.0**0.5),
        "infinite": 0,
    }
    assert v.stats["when"]["min"] == "1970-01-01T00:00:01"
    assert v.to_arrow().equals(
        table.cast(pa.schema({"x": pa.float64(), "when": pa.timestamp("ms")}))
    )


def test_register_a_csv_file_converts_it_to_parquet(ctx: Context, tmp_path: Path) -> None:
    src = tmp_path / "train.csv"
    _frame(50).to_csv(src, index=False)
    v = ll.datasets.register("csv", src)
    assert v.kind == "table" and v.row_count == 50
    assert v.files[0].path == "data.parquet"
    assert pq.read_table(v.path).num_rows == 50
    assert v.schema["plan"] == "string"


def test_register_a_parquet_file_keeps_its_bytes(ctx: Context, tmp_path: Path) -> None:
    src = tmp_path / "train.parquet"
    _frame(30).to_parquet(src, compression="snappy")
    v = ll.datasets.register("pq", src)
    assert v.kind == "table" and v.row_count == 30
    assert v.files[0].digest == hash_file(src)
    assert v.path.read_bytes() == src.read_bytes()


def test_register_another_file_is_kept_as_a_file(ctx: Context, tmp_path: Path) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(1000))
    v = ll.datasets.register("blob", src)
    assert v.kind == "files" and v.row_count is None and v.schema == {}
    assert [(f.path, f.size) for f in v.files] == [("model.bin", 1000)]
    assert (v.path / "model.bin").read_bytes() == src.read_bytes()


def _make_folder(root: Path, n: int, size: int = 512) -> Path:
    for i in range(n):
        sub = root / f"part{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"f{i:04d}.bin"
        path.write_bytes(os.urandom(size))
        # Files at rest: the hash cache rightly refuses files modified a moment ago.
        past = time.time() - 60
        os.utime(path, (past, past))
    return root


def test_register_a_folder(ctx: Context, tmp_path: Path) -> None:
    folder = _make_folder(tmp_path / "images", 12)
    v = ll.datasets.register("images", folder)
    assert v.kind == "files" and len(v.files) == 12
    assert [f.path for f in v.files] == sorted(f.path for f in v.files)
    assert v.files[0].path == "part0/f0000.bin"
    assert v.byte_size == 12 * 512
    for f in v.files:
        assert (v.path / f.path).read_bytes() == (folder / f.path).read_bytes()
    # The manifest is an artifact whose digest is the version's hash.
    manifest = ctx.artifacts.get_bytes(v.hash)
    assert manifest == manifest_bytes(list(v.files))


def test_registering_a_folder_that_holds_the_store_skips_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "proj"
    (project / "raw").mkdir(parents=True)
    (project / "raw" / "a.csv").write_text("x\n1\n")
    (project / "notes.txt").write_text("hi")
    monkeypatch.chdir(project)
    context = ll.init(uri=f"sqlite:///{tmp_path / 'meta.db'}", artifacts=str(project / "store"))
    try:
        ll.datasets.register("first", project / "notes.txt")  # creates ./.loopline and ./store
        v = ll.datasets.register("everything", ".")
        assert [f.path for f in v.files] == ["notes.txt", "raw/a.csv"]
    finally:
        context.close()


def test_same_content_returns_the_newest_version(ctx: Context, tmp_path: Path) -> None:
    df = _frame()
    v1 = ll.datasets.register("churn", df)
    again = ll.datasets.register("churn", df.copy())
    assert again.version == 1 and again.hash == v1.hash and not again.created_now
    v2 = ll.datasets.register("churn", df.iloc[:50])
    assert (v2.version, v2.created_now) == (2, True)
    # Back to the first content: a new version (newest is what was registered last).
    v3 = ll.datasets.register("churn", df)
    assert v3.version == 3 and v3.hash == v1.hash
    assert [v.version for v in ll.datasets.versions("churn")] == [1, 2, 3]
    # The same bytes are stored once whatever the number of versions.
    assert v3.ingest is not None and v3.ingest.stored == 0 and v3.ingest.already_stored == 1


def test_concurrent_registers_get_distinct_versions(ctx: Context) -> None:
    frames = [_frame(10 + i) for i in range(4)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        made = list(pool.map(lambda df: ll.datasets.register("race", df), frames))
    assert sorted(v.version for v in made) == [1, 2, 3, 4]
    assert sorted(v.row_count or 0 for v in ll.datasets.versions("race")) == [10, 11, 12, 13]


def test_every_register_is_audited_in_the_same_transaction(ctx: Context) -> None:
    v = ll.datasets.register("churn", _frame())
    ll.datasets.register("churn", _frame())  # unchanged: no new version, no event
    events = audit.events(ctx.engine, object_type="dataset")
    assert [(e.action, e.object_id) for e in events] == [("dataset.register", "churn@1")]
    assert events[0].after["hash"] == v.hash and events[0].after["rows"] == 100
    assert audit.verify(ctx.engine).ok


def test_each_version_keeps_the_description_it_was_registered_with(ctx: Context) -> None:
    # Was: one description per dataset, so April's register relabelled March's version.
    ll.datasets.register("desc", pd.DataFrame({"a": [1]}), description="March export")
    ll.datasets.register("desc", pd.DataFrame({"a": [1, 2]}), description="April export")
    ll.datasets.register("desc", pd.DataFrame({"a": [1, 2, 3]}))
    assert [(v.ref, v.description) for v in ll.datasets.versions("desc")] == [
        ("desc@1", "March export"),
        ("desc@2", "April export"),
        ("desc@3", None),
    ]
    assert ll.datasets.get("desc", 2).description == "April export"
    ll.datasets.register("other", pd.DataFrame({"b": [1]}), description="B")
    listed = {d.name: d.description for d in ll.datasets.list_datasets()}
    assert listed == {"desc": None, "other": "B"}  # the newest version's


def test_the_same_content_with_another_description_describes_that_version(
    ctx: Context,
) -> None:
    # Was: "unchanged, same version", yet every version's description changed, unaudited.
    frame = pd.DataFrame({"a": [1, 2]})
    ll.datasets.register("q", pd.DataFrame({"a": [1]}), description="first")
    ll.datasets.register("q", frame, description="draft")
    again = ll.datasets.register("q", frame.copy(), description="final")
    assert (again.version, again.created_now, again.description_updated) == (2, False, True)
    assert again.description == "final" and again.to_dict()["description_updated"] is True
    assert [v.description for v in ll.datasets.versions("q")] == ["first", "final"]
    same = ll.datasets.register("q", frame.copy())  # no description: nothing changes
    assert (same.description, same.description_updated) == ("final", False)
    same = ll.datasets.register("q", frame.copy(), description="final")
    assert (same.description, same.description_updated) == ("final", False)
    events = audit.events(ctx.engine, object_type="dataset")
    assert [(e.action, e.object_id) for e in events] == [
        ("dataset.register", "q@1"),
        ("dataset.register", "q@2"),
        ("dataset.describe", "q@2"),
    ]
    assert events[1].after["description"] == "draft"
    assert (events[2].before, events[2].after) == (
        {"description": "draft"},
        {"description": "final"},
    )
    assert audit.verify(ctx.engine).ok


@pytest.mark.parametrize(
    "name",
    ["", "../etc", "a/b", "-lead", ".hidden", "a" * 129, "sp ace", "x..y", 7],
    ids=["empty", "traversal", "slash", "dash", "dot", "long", "space", "dotdot", "int"],
)
def test_bad_names_are_invalid_input_naming_the_field(module_ctx: Context, name: object) -> None:
    with pytest.raises(InvalidInput) as info:
        ll.datasets.register(name, _frame())  # type: ignore[arg-type]
    assert info.value.field == "name"


def test_register_big_ints_durations_and_decimals(embedded_ctx: Context) -> None:
    # Each raised from the statistics: ArrowInvalid (a safe float cast of 2**53 + 1),
    # ArrowNotImplementedError (min_max of a duration), a Decimal that is not JSON.
    big = 2**53 + 1
    df = pd.DataFrame(
        {
            "id": np.array([big, 1], dtype="int64"),
            "wait": pd.to_timedelta([1, 2], unit="s"),
            "price": [decimal.Decimal("1.10"), decimal.Decimal("2.25")],
        }
    )
    v = ll.datasets.register("odd", df)
    again = ll.datasets.get("odd", 1)
    assert again.stats["id"]["max"] == big and again.stats["id"]["min"] == 1
    assert (again.stats["wait"]["min"], again.stats["wait"]["max"]) == ("PT1S", "PT2S")
    assert (again.stats["price"]["min"], again.stats["price"]["max"]) == ("1.10", "2.25")
    assert v.to_pandas()["id"].tolist() == [big, 1]


@pytest.mark.parametrize("columns", [["a", "a", "b"], [1, "1", "b"]], ids=["same", "same-as-text"])
def test_duplicate_column_names_are_named(embedded_ctx: Context, columns: list[object]) -> None:
    # Arrow's from_pandas raised a bare ValueError before the table's own check ran.
    df = pd.DataFrame([[1, 2, 3]], columns=columns)
    with pytest.raises(InvalidInput) as info:
        ll.datasets.register("dup", df)
    named = repr(str(columns[0]))
    assert str(info.value).startswith(f"the DataFrame has duplicate column names: {named}")
    assert info.value.field == "source" and "rename the columns" in (info.value.hint or "")


def test_bad_sources_say_what_to_pass(ctx: Context, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="DataFrame") as info:
        ll.datasets.register("x", [1, 2, 3])
    assert info.value.field == "source"
    with pytest.raises(InvalidInput, match="no file or folder"):
        ll.datasets.register("x", tmp_path / "missing.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput, match="holds no files"):
        ll.datasets.register("x", tmp_path / "empty")
    broken = tmp_path / "broken.csv"
    broken.write_text("a,b\n1,2\n3,4,5\n")
    with pytest.raises(InvalidInput, match=r"broken\.csv"):
        ll.datasets.register("x", broken)


def test_csv_column_of_numbers_and_words_is_typed_string(ctx: Context, tmp_path: Path) -> None:
    """A mixed column keeps every value as text: nothing silently becomes NaN."""
    src = tmp_path / "mixed.csv"
    rows = [f"{i},{i}" for i in range(300_000)] + ["300000,unknown", "300001,7"]
    src.write_text("id,code\n" + "\n".join(rows) + "\n")  # the word is past Arrow's first block
    v = ll.datasets.register("mixed", src)
    assert v.schema == {"id": "int64", "code": "string"}
    df = v.to_pandas()
    assert df["code"].isna().sum() == 0
    assert df["code"].iloc[-2:].tolist() == ["unknown", "7"]
    assert df["code"].iloc[5] == "5"


def test_get_by_number_and_latest_and_not_found(ctx: Context) -> None:
    ll.datasets.register("churn", _frame(10))
    ll.datasets.register("churn", _frame(20))
    assert ll.datasets.get("churn").version == 2
    assert ll.datasets.get("churn", 1).row_count == 10
    assert ll.datasets.get("churn", "1").row_count == 10
    with pytest.raises(NotFound, match=r"no version 7 \(versions: 1, 2\)"):
        ll.datasets.get("churn", 7)
    with pytest.raises(NotFound, match=r"no dataset named 'nope'.*churn"):
        ll.datasets.get("nope")
    with pytest.raises(InvalidInput) as info:
        ll.datasets.get("churn", "newest")
    assert info.value.field == "version"


def test_list_datasets_and_versions(ctx: Context, tmp_path: Path) -> None:
    assert ll.datasets.list_datasets() == []
    ll.datasets.register("b", _frame(10))
    ll.datasets.register("a", _make_folder(tmp_path / "f", 3))
    ll.datasets.register("b", _frame(20))
    listed = ll.datasets.list_datasets()
    assert [(d.name, d.versions, d.latest_version, d.latest_kind) for d in listed] == [
        ("a", 1, 1, "files"),
        ("b", 2, 2, "table"),
    ]
    assert listed[1].latest_row_count == 20
    assert [len(v.files) for v in ll.datasets.versions("a")] == [3]
    assert ll.datasets.versions("zzz") == []


def test_version_rows_list_and_page_versions_without_their_files(
    ctx: Context, tmp_path: Path
) -> None:
    for n in (2, 3, 4, 5):
        ll.datasets.register("f", _make_folder(tmp_path / f"f{n}", n))
    rows = ll.datasets.version_rows("f")
    assert [(r.version, r.file_count) for r in rows] == [(1, 2), (2, 3), (3, 4), (4, 5)]
    page = ll.datasets.version_rows("f", limit=2, offset=1, newest_first=True)
    assert [r.version for r in page] == [3, 2]
    assert ll.datasets.version_rows("zzz") == []
    for bad in ({"limit": 0}, {"limit": True}, {"offset": -1}, {"offset": 2**63}):
        with pytest.raises(InvalidInput) as caught:
            ll.datasets.version_rows("f", **bad)
        assert caught.value.field == next(iter(bad))


def test_diff_tables(ctx: Context) -> None:
    df = _frame(200)
    ll.datasets.register("churn", df)
    changed = df.iloc[20:].copy()  # 20 rows removed
    extra = _frame(10, seed=5).assign(id=np.arange(1000, 1010))
    changed = pd.concat([changed, extra], ignore_index=True)  # 10 rows added
    changed["age"] = changed["age"].astype("float64")
    changed.loc[:50, "age"] = None  # age gets nulls and becomes double
    changed["region"] = "eu"
    ll.datasets.register("churn", changed)
    d = ll.datasets.diff("churn@1", "churn@2")
    assert not d.same_content
    assert d.files_changed == ["data.parquet"]
    assert (d.rows_before, d.rows_after) == (200, 190)
    assert d.columns_added == ["region"] and d.columns_removed == []
    assert d.columns_type_changed == {"age": ("int64", "double")}
    assert d.rows_compared_on == ["id", "plan", "score"]
    assert (d.rows_added, d.rows_removed) == (10, 20)
    moved = {(c.column, c.statistic) for c in d.stat_changes}
    assert ("age", "null_share") in moved
    assert not {("score", "mean"), ("score", "std"), ("id", "null_share")} & moved

    ll.datasets.register("churn", changed.assign(score=changed["score"] * 3 + 1))
    d = ll.datasets.diff("churn@2", "churn@3")
    moved = {(c.column, c.statistic) for c in d.stat_changes}
    assert moved == {("score", "mean"), ("score", "std")}
    assert (d.rows_added, d.rows_removed) == (190, 190)  # every row's score changed
    same = ll.datasets.diff(ll.datasets.get("churn", 1), "churn@1")
    assert same.same_content and same.rows_added == 0 and same.stat_changes == []


def test_diff_folders(ctx: Context, tmp_path: Path) -> None:
    folder = _make_folder(tmp_path / "f", 4)
    ll.datasets.register("imgs", folder)
    (folder / "part0" / "f0000.bin").write_bytes(b"changed")
    (folder / "part1" / "f0001.bin").unlink()
    (folder / "new.txt").write_text("new")
    ll.datasets.register("imgs", folder)
    d = ll.datasets.diff("imgs@1", "imgs@2")
    assert d.files_added == ["new.txt"]
    assert d.files_removed == ["part1/f0001.bin"]
    assert d.files_changed == ["part0/f0000.bin"]
    assert d.rows_added is None and d.to_dict()["files_added"] == ["new.txt"]


def test_checkout_round_trip_is_verified(ctx: Context, tmp_path: Path) -> None:
    folder = _make_folder(tmp_path / "src", 9, size=4096)
    v = ll.datasets.register("imgs", folder)
    out = ll.datasets.checkout("imgs", 1, tmp_path / "out")
    for f in v.files:
        assert (out / f.path).read_bytes() == (folder / f.path).read_bytes()
        assert hash_file(out / f.path) == f.digest
    # A corrupted object in the store is refused, naming the artifact.
    store = ctx.artifacts
    assert isinstance(store, LocalArtifactStore)
    victim = store.local_path(v.files[0].digest)
    victim.chmod(0o644)
    victim.write_bytes(b"bit rot")
    with pytest.raises(IntegrityError, match=v.files[0].digest):
        ll.datasets.checkout("imgs", 1, tmp_path / "out2")


def test_path_is_materialised_once_with_hard_links(ctx: Context, tmp_path: Path) -> None:
    v = ll.datasets.register("imgs", _make_folder(tmp_path / "src", 3))
    folder = v.path
    assert folder == (Path(".loopline") / "checkouts" / "imgs" / "1").resolve()
    store = ctx.artifacts
    assert isinstance(store, LocalArtifactStore)
    first = folder / v.files[0].path
    assert first.stat().st_ino == store.local_path(v.files[0].digest).stat().st_ino
    assert ll.datasets.get("imgs").path == folder  # reused, not rebuilt


def test_get_records_lineage_in_the_active_run(ctx: Context) -> None:
    pytest.importorskip("loopline.tracking.api", reason="the tracking stage is not there yet")
    v = ll.datasets.register("churn", _frame(10))
    with ll.start_run(experiment="lineage") as run:  # type: ignore[attr-defined]
        ll.datasets.get("churn")
        inputs = [(i.kind, i.name, i.version, i.digest) for i in run.inputs]
    assert inputs == [("dataset", "churn", "1", v.hash)]
    ll.datasets.get("churn")  # outside a run: nothing to record, nothing fails


def test_register_on_the_s3_artifact_store(
    s3_env: None, s3_url: str, sqlite_uri: str, tmp_path: Path
) -> None:
    context = ll.init(uri=sqlite_uri, artifacts=s3_url)
    try:
        folder = _make_folder(tmp_path / "src", 5)
        v = ll.datasets.register("imgs", folder)
        assert v.ingest is not None and v.ingest.stored == 5
        again = ll.datasets.register("imgs", folder)
        assert again.version == 1 and again.ingest is not None and again.ingest.hashed == 0
        assert all(context.artifacts.exists(f.digest) for f in v.files)
        t = ll.datasets.register("table", _frame(40))
        pd.testing.assert_frame_equal(t.to_pandas(), _frame(40), check_dtype=False)
        out = ll.datasets.checkout("imgs", 1, tmp_path / "out")
        assert (out / v.files[2].path).read_bytes() == (folder / v.files[2].path).read_bytes()
        d = ll.datasets.diff("table@1", ll.datasets.register("table", _frame(40).iloc[:30]))
        assert (d.rows_added, d.rows_removed) == (0, 10)
    finally:
        context.close()


def test_a_missing_bucket_fails_the_register_naming_the_setting_and_records_nothing(
    s3_env: None, migrated_db_uri: str, tmp_path: Path
) -> None:
    context = ll.init(uri=migrated_db_uri, artifacts="s3://no-such-bucket-here/x")
    try:
        folder = _make_folder(tmp_path / "src", 3)
        for source in (folder, _frame(10)):
            with pytest.raises(ll.BackendUnavailable, match="LOOPLINE_ARTIFACTS") as info:
                ll.datasets.register("d", source)
            assert "'no-such-bucket-here'" in info.value.message
        assert ll.datasets.list_datasets() == []
    finally:
        context.close()


_CATALOG_OPENED_DURING_THE_COPY = """
import sys, threading
import loopline as ll
from loopline.data import datasets
from loopline.core import artifacts
assert "sqlalchemy" not in sys.modules, "importing ll.datasets loaded SQLAlchemy"
ll.init(home=sys.argv[1])
importers = []
def hook(event, args):
    if event == "import" and args[0] == "sqlalchemy":
        importers.append(threading.current_thread().name.split("_")[0])
sys.addaudithook(hook)
seen = []
real = artifacts.LocalArtifactStore.put_bytes
def put_bytes(self, data):  # the manifest, stored once every file is copied
    seen.append("sqlalchemy" in sys.modules)
    return real(self, data)
artifacts.LocalArtifactStore.put_bytes = put_bytes
v = datasets.register(sys.argv[2], sys.argv[2])
print(v.ref, v.created_now, seen, importers)
"""


def test_register_opens_the_catalog_while_the_bytes_are_copied(tmp_path: Path) -> None:
    # Importing ll.datasets does not load SQLAlchemy (~0.2 s of a CLI start); register loads
    # it and opens the database on a helper thread during the copy - except on first use,
    # when opening migrates a new database: that is opened before the copy.
    for folder in ("d", "e"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "a.bin").write_bytes(os.urandom(3 * 1024 * 1024))

    def register(folder: str) -> list[str]:
        done = run_python(
            _CATALOG_OPENED_DURING_THE_COPY, str(tmp_path / "h"), folder, cwd=tmp_path
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert register("d") == ["d@1", "True", "[True]", "['MainThread']"]  # a new home
    assert register("e") == ["e@1", "True", "[True]", "['catalog-open']"]


def test_a_catalog_that_cannot_be_opened_fails_the_register_and_records_nothing(
    tmp_path: Path,
) -> None:
    ll.init(uri="mysql://nowhere/db", artifacts=str(tmp_path / "store"))
    (tmp_path / "f.bin").write_bytes(b"bytes")
    with pytest.raises(ConfigError, match="LOOPLINE_URI"):
        datasets.register("d", tmp_path / "f.bin")


@pytest.mark.parametrize(
    "version", ["²", "٣", " 1", "+1", "1_0", "0", "", "v1", True, 2**31, "9" * 25]
)
def test_a_version_that_is_not_a_positive_whole_number_is_invalid_input(version: object) -> None:
    # "²" passes str.isdigit() and fails int(): it used to escape as a ValueError; a number
    # past the column's 32 bits used to reach SQLite, which could not bind it.
    with pytest.raises(InvalidInput) as info:
        parse_version(version)  # type: ignore[arg-type]
    assert info.value.field == "version"
    assert parse_version("12") == 12 and parse_version("latest") is None


def test_a_description_with_nul_is_refused_before_anything_is_stored(ctx: Context) -> None:
    # On PostgreSQL this was a raw psycopg DataError after the bytes were copied.
    frame = pd.DataFrame({"x": [1, 2]})
    with pytest.raises(InvalidInput, match="description contains a NUL character") as e:
        datasets.register("d", frame, description="Q3\x00export")
    assert e.value.field == "description"
    with pytest.raises(NotFound):
        datasets.get("d")
    assert datasets.register("d", frame, description="Q3 export").version == 1


def test_a_ref_ending_in_at_names_no_version() -> None:
    # "churn@" (the number left out) was the latest version.
    with pytest.raises(InvalidInput, match="version '' is not a version number") as info:
        datasets.parse_ref("churn@")
    assert info.value.field == "version"
    assert datasets.parse_ref("churn@latest") == datasets.parse_ref("churn") == ("churn", None)
