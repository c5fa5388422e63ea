"""``loopline.data.checkout``: a failed download stops the queued ones; what is in the way."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from loopline.core.artifacts import LocalArtifactStore
from loopline.core.context import Context
from loopline.data.checkout import checkout
from loopline.data.ingest import WORKERS, FileEntry
from loopline.errors import BackendUnavailable, InvalidInput


def test_a_failed_download_stops_the_queued_ones(tmp_path: Path) -> None:
    calls: list[str] = []

    class DeadStore(LocalArtifactStore):
        """A real local store whose every download fails after a wait, like a dead S3."""

        def get_file(self, digest: str, dest: str | os.PathLike[str]) -> Path:
            calls.append(digest)
            time.sleep(0.2)
            raise BackendUnavailable("the store does not answer", hint="test")

    store = DeadStore(tmp_path / "art")
    entries = []
    for i in range(64):
        data = f"file {i}".encode()
        entries.append(FileEntry(f"f{i}.txt", store.put_bytes(data), len(data)))
    with pytest.raises(BackendUnavailable, match="does not answer"):
        checkout(store, entries, tmp_path / "out")
    # The downloads running at the failure (a worker may start one more before the pool is
    # shut down), not all 64 one after the other.
    assert 0 < len(calls) < 2 * WORKERS < len(entries)


def _store_with_files(tmp_path: Path) -> tuple[LocalArtifactStore, list[FileEntry]]:
    store = LocalArtifactStore(tmp_path / "art")
    entries = []
    for path in ("a.txt", "sub/b.txt"):
        data = path.encode()
        entries.append(FileEntry(path, store.put_bytes(data), len(data)))
    return store, entries


@pytest.mark.parametrize(
    ("make", "culprit", "problem"),
    [
        (lambda out: (out / "a.txt").mkdir(), "a.txt", "is a folder, where the dataset has"),
        (lambda out: (out / "sub").write_text("x"), "sub", "is a file, where the dataset has"),
        (
            lambda out: (out / "a.txt").symlink_to(out.parent / "elsewhere.txt"),
            "a.txt",
            "is a symbolic link",
        ),
        (lambda out: (out / "sub").symlink_to(out.parent), "sub", "is a symbolic link"),
    ],
    ids=["folder-for-a-file", "file-for-a-folder", "symlink-file", "symlink-folder"],
)
def test_an_entry_in_the_way_is_named_before_anything_is_written(
    tmp_path: Path, make: Callable[[Path], object], culprit: str, problem: str
) -> None:
    # Were IsADirectoryError, FileExistsError, and "the metadata database was tampered
    # with" (the symlink resolved outside the folder).
    store, entries = _store_with_files(tmp_path)
    (tmp_path / "elsewhere.txt").write_text("keep me")
    out = tmp_path / "out"
    out.mkdir()
    make(out)
    with pytest.raises(InvalidInput, match=problem) as info:
        checkout(store, entries, out)
    assert str(out / culprit) in str(info.value)
    assert info.value.field == "dest_dir" and "empty or new folder" in (info.value.hint or "")
    assert (tmp_path / "elsewhere.txt").read_text() == "keep me"
    assert not (tmp_path / "b.txt").exists()
    # --force removes what is in the way (a link, never what it points to), then writes.
    checkout(store, entries, out, force=True)
    assert _tree(out) == {"a.txt": b"a.txt", "sub/b.txt": b"sub/b.txt"}
    assert (tmp_path / "elsewhere.txt").read_text() == "keep me"
    assert not (tmp_path / "b.txt").exists()


def test_checkout_over_local_edits_is_refused_naming_them(tmp_path: Path) -> None:
    # Was: the edited file silently overwritten and mine.txt left beside the version.
    store, entries = _store_with_files(tmp_path)
    out = tmp_path / "out"
    checkout(store, entries, out)
    (out / "a.txt").write_text("edited")
    (out / "mine.txt").write_text("mine")
    with pytest.raises(InvalidInput, match="without losing local changes") as info:
        checkout(store, entries, out)
    message = str(info.value)
    assert "1 file(s) differ from the version and would be overwritten (a.txt)" in message
    assert "1 file(s) are not in the version and would be left beside it (mine.txt)" in message
    assert info.value.field == "dest_dir" and "--force" in (info.value.hint or "")
    assert (out / "a.txt").read_text() == "edited"
    assert (out / "mine.txt").read_text() == "mine"


def test_force_makes_the_folder_exactly_the_version(tmp_path: Path) -> None:
    store, entries = _store_with_files(tmp_path)
    out = tmp_path / "out"
    checkout(store, entries, out)
    (out / "a.txt").write_text("edited")
    (out / "mine.txt").write_text("mine")
    (out / "old" / "deep").mkdir(parents=True)
    (out / "old" / "deep" / "x.bin").write_bytes(b"x")
    (out / "empty").mkdir()
    checkout(store, entries, out, force=True)
    assert _tree(out) == {"a.txt": b"a.txt", "sub/b.txt": b"sub/b.txt"}
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "sub"]


def test_a_long_refusal_names_a_few_files_and_counts_the_rest(tmp_path: Path) -> None:
    store, entries = _store_with_files(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    for i in range(12):
        (out / f"x{i:02}.txt").write_text("x")
    with pytest.raises(InvalidInput) as info:
        checkout(store, entries, out)
    assert "12 file(s) are not in the version" in str(info.value)
    assert "(x00.txt, x01.txt, x02.txt, x03.txt, x04.txt and 7 more)" in str(info.value)


def test_a_folder_holding_the_version_is_left_as_it_is(tmp_path: Path) -> None:
    store, entries = _store_with_files(tmp_path)
    out = tmp_path / "out"
    checkout(store, entries, out)
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.rglob("*")}
    time.sleep(0.05)  # so that a rewrite would show in the mtime too
    checkout(store, entries, out)
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.rglob("*")} == before


def test_an_identical_folder_is_recognised_from_the_hash_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loopline.data import checkout as module
    from loopline.data.hashcache import HashCache

    store, entries = _store_with_files(tmp_path)
    out = tmp_path / "out"
    cache = HashCache(tmp_path / "hashcache.db")
    checkout(store, entries, out, cache=cache)
    time.sleep(0.05)  # past the cache's racy window
    checkout(store, entries, out, cache=cache)  # hashes once, remembers
    hashed: list[object] = []
    monkeypatch.setattr(module, "hash_file", lambda p: hashed.append(p) or "0" * 64)
    checkout(store, entries, out, cache=cache)
    assert hashed == []
    cache.close()


def test_only_missing_files_are_written_without_force(tmp_path: Path) -> None:
    store, entries = _store_with_files(tmp_path)
    out = tmp_path / "out"
    checkout(store, entries, out)
    (out / "sub" / "b.txt").unlink()
    checkout(store, entries, out)
    assert _tree(out) == {"a.txt": b"a.txt", "sub/b.txt": b"sub/b.txt"}


def test_force_removes_links_and_never_follows_them(tmp_path: Path) -> None:
    store, entries = _store_with_files(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep me")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").symlink_to(outside / "keep.txt")
    (out / "sub").symlink_to(outside)
    (out / "link-to-dir").symlink_to(outside)
    (out / "link-to-file").symlink_to(outside / "keep.txt")
    (out / "dangling").symlink_to(tmp_path / "nothing")
    checkout(store, entries, out, force=True)
    assert _tree(out) == {"a.txt": b"a.txt", "sub/b.txt": b"sub/b.txt"}
    assert not any(p.is_symlink() for p in out.rglob("*"))
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]
    assert (outside / "keep.txt").read_text() == "keep me"


def test_force_never_touches_loopline_s_own_folders(tmp_path: Path) -> None:
    store, entries = _store_with_files(tmp_path)
    out = tmp_path / "project"
    home = out / ".loopline"
    (home / "tmp").mkdir(parents=True)
    (home / "loopline.db").write_text("metadata")
    (out / "mine.txt").write_text("mine")
    checkout(store, entries, out, force=True, skip=[home])
    assert (home / "loopline.db").read_text() == "metadata" and (home / "tmp").is_dir()
    assert sorted(p.name for p in out.iterdir()) == [".loopline", "a.txt", "sub"]
    # A version whose file would go where the home is: refused even with force.
    own = [FileEntry(".loopline", store.put_bytes(b"x"), 1)]
    with pytest.raises(InvalidInput, match="one of Loopline's own files"):
        checkout(store, own, out, force=True, skip=[home])
    assert (home / "loopline.db").read_text() == "metadata"


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink()
    }


def test_a_copied_checkout_added_again_never_writes_into_the_store(
    embedded_ctx: Context, tmp_path: Path
) -> None:
    """A folder copied from a version's .path holds its marker file; added again, the marker
    was stored as data, and opening the new version wrote the marker into the store's
    object through its hard link: every dataset sharing those bytes was corrupted."""
    import shutil

    import loopline as ll
    from loopline.data.ingest import CHECKOUT_MARKER

    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a")
    (src / "empty").write_text("")
    first = ll.datasets.get(ll.datasets.register("orig", src).name)
    assert first.path.is_dir()
    copy = tmp_path / "copy"
    shutil.copytree(first.path, copy)
    assert (copy / CHECKOUT_MARKER).is_file()
    (copy / "b.txt").write_text("b")
    again = ll.datasets.register("copied", copy)
    assert sorted(f.path for f in again.files) == ["a.txt", "b.txt", "empty"]
    assert ll.datasets.get("copied").path.is_dir()
    # A marker that is no version hash is data like any other file.
    (copy / CHECKOUT_MARKER).write_text("my notes")
    kept = ll.datasets.register("copied", copy)
    assert CHECKOUT_MARKER in {f.path for f in kept.files}
    opened = ll.datasets.get("copied").path
    assert (opened / CHECKOUT_MARKER).read_text() == ll.datasets.get("copied").hash
    for name in ("orig", "copied"):  # every stored object still hashes to its name
        checkout_dir = tmp_path / f"out-{name}"
        ll.datasets.checkout(name, 1, checkout_dir)
    assert (tmp_path / "out-orig" / "empty").read_text() == ""


def test_a_name_near_the_length_limit_checks_out(embedded_ctx: Context, tmp_path: Path) -> None:
    """The temporary name added 39 bytes to the file's: past 255, checkout failed."""
    import loopline as ll

    src = tmp_path / "src"
    src.mkdir()
    long_name = "n" * 250 + ".txt"
    (src / long_name).write_text("long")
    ll.datasets.register("long", src)
    out = ll.datasets.checkout("long", 1, tmp_path / "out")
    assert (out / long_name).read_text() == "long"


def test_the_tester_s_mix_of_versions_is_refused_then_forced(
    embedded_ctx: Context, tmp_path: Path
) -> None:
    """Checking v2 out over an edited checkout of v1 overwrote the edit and kept v1's
    removed.txt: adding the folder again made a third version, neither v1 nor v2."""
    import loopline as ll

    versions = {"m1": {"a.txt": "old", "removed.txt": "gone"}, "m2": {"a.txt": "new"}}
    for folder, files in versions.items():
        (tmp_path / folder).mkdir()
        for name, text in files.items():
            (tmp_path / folder / name).write_text(text)
        ll.datasets.register("mixds", tmp_path / folder)
    ll.datasets.checkout("mixds", 1, "mix")
    (tmp_path / "mix" / "a.txt").write_text("my local edit")
    with pytest.raises(InvalidInput) as info:
        ll.datasets.checkout("mixds", 2, "mix")
    assert "(a.txt)" in str(info.value) and "(removed.txt)" in str(info.value)
    assert (tmp_path / "mix" / "a.txt").read_text() == "my local edit"
    ll.datasets.checkout("mixds", 2, "mix", force=True)
    assert _tree(tmp_path / "mix") == {"a.txt": b"new"}
    again = ll.datasets.register("mixds", "mix")
    assert (again.version, again.created_now) == (2, False)
    ll.datasets.checkout("mixds", 2, "mix")  # the same version again: nothing to do
    with pytest.raises(InvalidInput, match="force must be True or False"):
        ll.datasets.checkout("mixds", 2, "mix", force="yes")  # type: ignore[arg-type]


def test_force_into_the_project_folder_keeps_loopline_s_own_files(
    embedded_ctx: Context, tmp_path: Path
) -> None:
    # The home (./.loopline), the artifact store and the SQLite catalog are all in the
    # working folder here: a forced checkout of "." must not remove them as "not in the
    # version".
    import loopline as ll

    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a")
    ll.datasets.register("d", src)
    ll.datasets.checkout("d", 1, ".", force=True)
    assert not src.exists() and (tmp_path / "a.txt").read_text() == "a"
    assert (tmp_path / "meta.db").is_file() and (tmp_path / ".loopline").is_dir()
    assert (ll.datasets.get("d").path / "a.txt").read_text() == "a"  # the store is whole
