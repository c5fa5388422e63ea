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


def test_checkout_over_an_earlier_checkout_replaces_its_files(tmp_path: Path) -> None:
    store, entries = _store_with_files(tmp_path)
    out = tmp_path / "out"
    checkout(store, entries, out)
    (out / "a.txt").write_text("edited")
    (out / "mine.txt").write_text("mine")
    checkout(store, entries, out)
    assert (out / "a.txt").read_text() == "a.txt"
    assert (out / "mine.txt").read_text() == "mine"


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
