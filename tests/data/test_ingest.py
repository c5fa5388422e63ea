from __future__ import annotations

import itertools
import os
import shutil
import time
from pathlib import Path

import pytest

import loopline as ll
from loopline.core.artifacts import ArtifactStore, open_artifact_store
from loopline.core.context import Context
from loopline.data import ingest as ingest_mod
from loopline.data.hashcache import FileStat, HashCache
from loopline.errors import InvalidInput, NotFound


class Counter:
    """Wraps a function and counts the calls."""

    def __init__(self, fn: object) -> None:
        self.fn = fn
        self.calls = 0

    def __call__(self, *args: object) -> object:
        self.calls += 1
        return self.fn(*args)  # type: ignore[operator]


def _folder(root: Path, n: int, size: int = 256) -> Path:
    root.mkdir(parents=True)
    for i in range(n):
        (root / f"f{i:04d}.bin").write_bytes(os.urandom(size))
    # Entries are cached only for files older than the clock's tick (see hashcache).
    time.sleep(0.05)
    return root


def _count_io(monkeypatch: pytest.MonkeyPatch, store: ArtifactStore) -> tuple[Counter, Counter]:
    hashes = Counter(ingest_mod.hash_file)
    monkeypatch.setattr(ingest_mod, "hash_file", hashes)
    puts = Counter(store.put_file)
    monkeypatch.setattr(store, "put_file", puts)
    return hashes, puts


def test_readd_of_an_unchanged_folder_hashes_and_copies_nothing(
    ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _folder(tmp_path / "data", 200)
    hashes, puts = _count_io(monkeypatch, ctx.artifacts)
    v1 = ll.datasets.register("raw", folder)
    assert (hashes.calls, puts.calls) == (200, 200)
    assert v1.ingest is not None and (v1.ingest.hashed, v1.ingest.stored) == (200, 200)

    again = ll.datasets.register("raw", folder)
    assert (hashes.calls, puts.calls) == (200, 200)  # not one more hash, not one more copy
    assert again.version == 1 and not again.created_now
    assert again.ingest is not None
    assert (again.ingest.hashed, again.ingest.cached, again.ingest.stored) == (0, 200, 0)


def test_only_changed_files_are_hashed_and_only_new_bytes_stored(
    ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _folder(tmp_path / "data", 20)
    ll.datasets.register("raw", folder)
    hashes, puts = _count_io(monkeypatch, ctx.artifacts)

    (folder / "f0003.bin").write_bytes(os.urandom(256))  # same size, new bytes
    time.sleep(0.05)
    v2 = ll.datasets.register("raw", folder)
    assert v2.version == 2 and (hashes.calls, puts.calls) == (1, 1)

    os.utime(folder / "f0004.bin")  # touched, same bytes: hashed again, not stored
    time.sleep(0.05)
    v = ll.datasets.register("raw", folder)
    assert v.version == 2 and not v.created_now and (hashes.calls, puts.calls) == (2, 1)

    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)  # new inodes: hashed, but the store has every digest
    c = ll.datasets.register("raw-copy", copy)
    assert c.hash == v2.hash and puts.calls == 1
    assert c.ingest is not None and (c.ingest.hashed, c.ingest.already_stored) == (20, 20)


def test_a_file_changing_while_hashed_is_refused_by_name(
    ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _folder(tmp_path / "data", 5)
    victim = folder / "f0002.bin"
    real = ingest_mod.hash_file

    def hash_while_someone_appends(path: str | os.PathLike[str]) -> str:
        if Path(path) == victim:
            with victim.open("ab") as f:  # a writer appends while we read
                f.write(b"more")
        return real(path)

    monkeypatch.setattr(ingest_mod, "hash_file", hash_while_someone_appends)
    with pytest.raises(InvalidInput, match=r"f0002\.bin changed while it was being hashed") as info:
        ll.datasets.register("raw", folder)
    assert info.value.field == "source"
    with pytest.raises(NotFound):
        ll.datasets.get("raw")


def test_a_file_changing_between_hash_and_copy_is_refused(
    ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _folder(tmp_path / "data", 3)
    store = ctx.artifacts
    real = store.put_file

    def put_after_a_rewrite(path: str | os.PathLike[str]) -> str:
        Path(path).write_bytes(os.urandom(256))
        return real(path)

    monkeypatch.setattr(store, "put_file", put_after_a_rewrite)
    with pytest.raises(InvalidInput, match="changed while it was being stored"):
        ll.datasets.register("raw", folder)


def test_recently_written_files_are_not_cached(tmp_path: Path) -> None:
    assert FileStat(1, 5_000_000_000_123, 0, 1).is_racy(5_000_000_000_123 + 10_000_000)
    assert not FileStat(1, 5_000_000_000_123, 0, 1).is_racy(5_000_000_000_123 + 30_000_000)
    # A whole-second mtime suggests a coarse file system: 2 s of caution.
    assert FileStat(1, 5_000_000_000, 0, 1).is_racy(5_000_000_000 + 1_500_000_000)

    src = tmp_path / "f.bin"
    src.write_bytes(b"x" * 100)
    future = time.time_ns() + 10_000_000_000
    os.utime(src, ns=(future, future))
    cache = HashCache(tmp_path / "cache.db")
    files = [ingest_mod.single_file(src, "f.bin")]
    store = open_artifact_store(str(tmp_path / "store"))
    entries, report = ingest_mod.ingest(files, store, cache)
    assert report.hashed == 1 and entries[0].size == 100
    assert ingest_mod.cached_digests(files, cache) == {}  # racy: not recorded
    os.utime(src, ns=(future - 20_000_000_000, future - 20_000_000_000))
    files = [ingest_mod.single_file(src, "f.bin")]
    ingest_mod.ingest(files, store, cache)
    assert ingest_mod.cached_digests(files, cache) == {"f.bin": entries[0].digest}
    cache.close()


def test_a_damaged_cache_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "hashcache.db"
    path.write_bytes(b"this is not a sqlite database" * 100)
    cache = HashCache(path)
    st = FileStat(1, 2, 3, 4)
    assert cache.lookup([("/x", st)]) == {}
    assert cache.record([("/x", st, "a" * 64)]) == 1
    assert cache.lookup([("/x", st)]) == {"/x": "a" * 64}
    assert cache.lookup([("/x", FileStat(1, 2, 3, 5))]) == {}  # another inode: a miss
    cache.close()


def test_progress_reports_bytes(ctx: Context, tmp_path: Path) -> None:
    folder = _folder(tmp_path / "data", 30, size=1000)
    seen: list[tuple[int, int]] = []
    ll.datasets.register("raw", folder, progress=lambda done, total: seen.append((done, total)))
    assert seen and seen[-1] == (30_000, 30_000)
    assert all(a <= b for (a, _), (b, _) in itertools.pairwise(seen))
