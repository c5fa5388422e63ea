from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import loopline as ll
from loopline.core.artifacts import (
    ArtifactBatch,
    ArtifactStore,
    LocalArtifactStore,
    open_artifact_store,
)
from loopline.core.context import Context
from loopline.data import ingest as ingest_mod
from loopline.data.hashcache import FileStat, HashCache
from loopline.errors import InvalidInput, NotFound


class Reads:
    """Counts the files an ingest reads: each read is one copy-and-hash by the store."""

    def __init__(self) -> None:
        self.calls = 0
        self.before: Callable[[Path], None] | None = None


def _count_reads(monkeypatch: pytest.MonkeyPatch, store: ArtifactStore) -> Reads:
    reads = Reads()
    real_batch = store.batch

    @contextlib.contextmanager
    def counting_batch() -> Iterator[ArtifactBatch]:
        with real_batch() as batch:
            real_put = batch.put_file

            def put(path: str | os.PathLike[str]) -> tuple[str, bool]:
                reads.calls += 1
                if reads.before is not None:
                    reads.before(Path(path))
                return real_put(path)

            batch.put_file = put  # type: ignore[method-assign]
            yield batch

    monkeypatch.setattr(store, "batch", counting_batch)
    return reads


def _folder(root: Path, n: int, size: int = 256) -> Path:
    root.mkdir(parents=True)
    for i in range(n):
        (root / f"f{i:04d}.bin").write_bytes(os.urandom(size))
    # Entries are cached only for files older than the clock's tick (see hashcache).
    time.sleep(0.05)
    return root


def _objects(store: ArtifactStore) -> list[str]:
    return list(store.iter_digests())


def test_readd_of_an_unchanged_folder_reads_nothing(
    ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _folder(tmp_path / "data", 200)
    reads = _count_reads(monkeypatch, ctx.artifacts)
    v1 = ll.datasets.register("raw", folder)
    assert reads.calls == 200  # each file read once: copied and hashed in one pass
    assert v1.ingest is not None and (v1.ingest.hashed, v1.ingest.stored) == (200, 200)

    again = ll.datasets.register("raw", folder)
    assert reads.calls == 200  # not one more read
    assert again.version == 1 and not again.created_now
    assert again.ingest is not None
    assert (again.ingest.hashed, again.ingest.cached, again.ingest.stored) == (0, 200, 0)


def test_only_changed_files_are_read_and_only_new_bytes_stored(
    ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _folder(tmp_path / "data", 20)
    ll.datasets.register("raw", folder)
    reads = _count_reads(monkeypatch, ctx.artifacts)

    (folder / "f0003.bin").write_bytes(os.urandom(256))  # same size, new bytes
    time.sleep(0.05)
    v2 = ll.datasets.register("raw", folder)
    assert v2.version == 2 and reads.calls == 1
    assert v2.ingest is not None and (v2.ingest.hashed, v2.ingest.stored) == (1, 1)

    os.utime(folder / "f0004.bin")  # touched, same bytes: read again, not stored
    time.sleep(0.05)
    before = _objects(ctx.artifacts)
    v = ll.datasets.register("raw", folder)
    assert v.version == 2 and not v.created_now and reads.calls == 2
    assert v.ingest is not None and (v.ingest.hashed, v.ingest.stored) == (1, 0)

    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)  # new inodes: read, but the store has every digest
    c = ll.datasets.register("raw-copy", copy)
    assert c.hash == v2.hash and reads.calls == 22
    assert c.ingest is not None and (c.ingest.hashed, c.ingest.already_stored) == (20, 20)
    assert c.ingest.stored == 0
    assert _objects(ctx.artifacts) == before  # the copies made while hashing were dropped
    assert list((tmp_path / "artifacts" / "tmp").iterdir()) == []


def test_a_file_changing_while_read_is_refused_by_name(
    ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _folder(tmp_path / "data", 5)
    victim = folder / "f0002.bin"
    reads = _count_reads(monkeypatch, ctx.artifacts)

    def someone_appends(path: Path) -> None:
        if path == victim:
            with victim.open("ab") as f:  # a writer appends while we read
                f.write(b"more")

    reads.before = someone_appends
    with pytest.raises(InvalidInput, match=r"f0002\.bin changed while it was being stored") as info:
        ll.datasets.register("raw", folder)
    assert info.value.field == "source"
    with pytest.raises(NotFound):
        ll.datasets.get("raw")
    # Nothing of the failed ingest is kept: no object, no temp file.
    assert _objects(ctx.artifacts) == []
    assert list((tmp_path / "artifacts" / "tmp").iterdir()) == []


def test_a_file_rewritten_after_the_scan_is_refused(
    ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _folder(tmp_path / "data", 3)
    reads = _count_reads(monkeypatch, ctx.artifacts)
    reads.before = lambda path: path.write_bytes(os.urandom(256))
    with pytest.raises(InvalidInput, match="changed while it was being stored"):
        ll.datasets.register("raw", folder)


def test_a_lost_object_is_stored_again_from_a_cached_digest(
    ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _folder(tmp_path / "data", 3)
    files = ingest_mod.scan_folder(folder)
    cache = HashCache(tmp_path / "cache.db")
    store = ctx.artifacts
    entries, _ = ingest_mod.ingest(files, store, cache)
    assert isinstance(store, LocalArtifactStore)
    store.local_path(entries[0].digest).unlink()  # the store lost one object's bytes
    reads = _count_reads(monkeypatch, store)
    again, report = ingest_mod.ingest(files, store, cache)
    assert again == entries and reads.calls == 1
    assert (report.cached, report.hashed, report.stored) == (3, 0, 1)
    assert store.get_bytes(entries[0].digest) == (folder / entries[0].path).read_bytes()
    cache.close()


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


def test_a_cache_file_with_another_hashes_table_is_replaced(tmp_path: Path) -> None:
    """Valid SQLite, wrong table: every add failed with 'no such column: size'."""
    import sqlite3

    path = tmp_path / "hashcache.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE hashes (path TEXT PRIMARY KEY, digest TEXT)")
    cache = HashCache(path)
    st = FileStat(1, 2, 3, 4)
    assert cache.lookup([("/x", st)]) == {}
    assert cache.record([("/x", st, "a" * 64)]) == 1
    assert cache.lookup([("/x", st)]) == {"/x": "a" * 64}
    cache.close()


def test_a_name_that_is_not_utf8_is_named(ctx: Context, tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "ok.txt").write_text("ok")
    bad = os.fsencode(folder) + b"/caf\xe9.txt"  # Latin-1, as old zip archives write names
    with open(bad, "wb") as f:
        f.write(b"x")
    with pytest.raises(InvalidInput, match="is not valid UTF-8") as info:
        ll.datasets.register("latin", folder)
    assert "caf" in str(info.value) and "rename" in (info.value.hint or "")


def test_progress_reports_bytes(ctx: Context, tmp_path: Path) -> None:
    folder = _folder(tmp_path / "data", 30, size=1000)
    seen: list[tuple[int, int]] = []
    ll.datasets.register("raw", folder, progress=lambda done, total: seen.append((done, total)))
    assert seen and seen[-1] == (30_000, 30_000)
    assert all(a <= b for (a, _), (b, _) in itertools.pairwise(seen))


def test_the_scan_finds_nested_files_follows_file_links_and_skips_folder_links(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    (root / "b" / "c").mkdir(parents=True)
    (root / "a.txt").write_text("a")
    (root / "b" / "c" / "d.txt").write_text("d")
    (root / "skipped").mkdir()
    (root / "skipped" / "x.txt").write_text("x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "o.txt").write_text("o")
    (root / "link.txt").symlink_to(root / "a.txt")
    (root / "folder-link").symlink_to(outside)
    os.mkfifo(root / "pipe")
    files = ingest_mod.scan_folder(root, skip=[root / "skipped"])
    assert [f.rel_path for f in files] == ["a.txt", "b/c/d.txt", "link.txt"]
    assert files[2].abs_path == root.resolve() / "link.txt"  # the link, not its target
    assert files[2].stat == FileStat.of((root / "a.txt").stat())


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every folder")
def test_an_unreadable_folder_is_refused_by_name(tmp_path: Path) -> None:
    locked = tmp_path / "root" / "locked"
    locked.mkdir(parents=True)
    (locked / "a.txt").write_text("a")
    locked.chmod(0)
    try:
        with pytest.raises(InvalidInput, match="locked: permission denied"):
            ingest_mod.scan_folder(tmp_path / "root")
    finally:
        locked.chmod(0o755)


@pytest.mark.parametrize("target", ["nowhere.txt", "loop"], ids=["dangling", "loop"])
def test_a_broken_link_in_the_folder_is_named(tmp_path: Path, target: str) -> None:
    # Was "disappeared while the dataset was being added", as if the folder were changing.
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.txt").write_text("a")
    # "loop" points at itself: stat fails with ELOOP, not FileNotFoundError.
    (root / "broken").symlink_to(root / "broken" if target == "loop" else root / target)
    with pytest.raises(InvalidInput, match="broken is a broken symbolic link") as info:
        ingest_mod.scan_folder(root)
    assert info.value.field == "source"
    assert "remove the link" in (info.value.hint or "")
    assert "disappeared" not in str(info.value)
