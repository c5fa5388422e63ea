"""The conformance suite every artifact store backend must pass (local folder and S3)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from loopline.core.artifacts import (
    ArtifactStore,
    LocalArtifactStore,
    hash_bytes,
    hash_file,
    object_key,
    open_artifact_store,
)
from loopline.core.syncfs import _libc_syncfs
from loopline.errors import BackendUnavailable, ConfigError, IntegrityError, InvalidInput, NotFound
from tests.conftest import s3_options


def test_put_and_get_bytes(artifact_store: ArtifactStore) -> None:
    digest = artifact_store.put_bytes(b"model weights")
    assert digest == hash_bytes(b"model weights")
    assert artifact_store.exists(digest)
    assert artifact_store.get_bytes(digest) == b"model weights"


def test_identical_bytes_are_stored_once(artifact_store: ArtifactStore, tmp_path: Path) -> None:
    a = artifact_store.put_bytes(b"same")
    src = tmp_path / "same.bin"
    src.write_bytes(b"same")
    b = artifact_store.put_file(src)
    assert a == b
    assert list(artifact_store.iter_digests()).count(a) == 1


def test_large_file_round_trip(artifact_store: ArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(9 * 1024 * 1024 + 17))
    digest = artifact_store.put_file(src)
    assert digest == hash_file(src)
    out = artifact_store.get_file(digest, tmp_path / "out" / "big.bin")
    assert out.read_bytes() == src.read_bytes()


def test_missing_artifact_is_not_found(artifact_store: ArtifactStore) -> None:
    with pytest.raises(NotFound, match="0" * 64):
        artifact_store.get_bytes("0" * 64)


@pytest.mark.parametrize("bad", ["../../etc/passwd", "ABC", "0" * 63, "g" * 64], ids=str)
def test_malformed_address_is_rejected(artifact_store: ArtifactStore, bad: str) -> None:
    with pytest.raises(InvalidInput):
        artifact_store.get_bytes(bad)


def _corrupt(store: ArtifactStore, digest: str) -> None:
    if isinstance(store, LocalArtifactStore):
        (store.root / object_key(digest)).write_bytes(b"tampered")
    else:
        store.fs.pipe_file(f"{store._root}/{object_key(digest)}", b"tampered")  # type: ignore[attr-defined]


def test_corruption_is_detected_and_names_the_artifact(
    artifact_store: ArtifactStore, tmp_path: Path
) -> None:
    digest = artifact_store.put_bytes(b"precious")
    _corrupt(artifact_store, digest)
    with pytest.raises(IntegrityError, match=digest):
        artifact_store.get_bytes(digest)
    dest = tmp_path / "restored.bin"
    with pytest.raises(IntegrityError, match=digest):
        artifact_store.get_file(digest, dest)
    assert not dest.exists()  # nothing corrupt is left behind


def test_check_passes_on_a_working_store(artifact_store: ArtifactStore) -> None:
    artifact_store.check()


def test_missing_bucket_names_the_setting() -> None:
    store = open_artifact_store("s3://no-such-bucket-here/x", s3_options())
    with pytest.raises(BackendUnavailable, match="LOOPLINE_ARTIFACTS"):
        store.check()


def test_a_write_to_a_missing_bucket_names_the_setting(tmp_path: Path) -> None:
    # exists() answers False for a missing bucket: the write is where it showed, as a bare
    # FileNotFoundError ("The specified bucket does not exist") naming no setting.
    store = open_artifact_store("s3://no-such-bucket-here/x", s3_options())
    (tmp_path / "f.bin").write_bytes(b"file")
    for write in (lambda: store.put_bytes(b"x"), lambda: store.put_file(tmp_path / "f.bin")):
        with pytest.raises(BackendUnavailable, match="LOOPLINE_ARTIFACTS") as info:
            write()
        assert "'no-such-bucket-here'" in info.value.message
        assert "does not exist" in info.value.message


@pytest.mark.parametrize("url", ["s3://", "s3:///", "s3:///prefix"])
def test_an_s3_url_without_a_bucket_names_the_setting(url: str) -> None:
    with pytest.raises(ConfigError, match=r"LOOPLINE_ARTIFACTS.*names no bucket"):
        open_artifact_store(url)


def test_unwritable_folder_names_the_setting(tmp_path: Path) -> None:
    store = open_artifact_store("/proc/loopline-cannot-write-here")
    with pytest.raises(BackendUnavailable, match="LOOPLINE_ARTIFACTS"):
        store.put_bytes(b"x")


def test_unknown_scheme_names_the_setting() -> None:
    with pytest.raises(ConfigError, match="LOOPLINE_ARTIFACTS"):
        open_artifact_store("ftp://host/path")


def test_local_write_leaves_no_temp_files(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "a")
    store.put_bytes(b"one")
    src = tmp_path / "f"
    src.write_bytes(b"two")
    store.put_file(src)
    assert list((tmp_path / "a" / "tmp").iterdir()) == []


def test_a_batch_stores_files_once_and_commits_them(
    artifact_store: ArtifactStore, tmp_path: Path
) -> None:
    paths = []
    for i in range(5):
        p = tmp_path / f"f{i}"
        p.write_bytes(b"dup" if i < 2 else os.urandom(100))
        paths.append(p)
    with artifact_store.batch() as batch:
        results = [batch.put_file(p) for p in paths]
    assert [d for d, _ in results] == [hash_file(p) for p in paths]
    assert [new for _, new in results] == [True, False, True, True, True]
    for p, (digest, _) in zip(paths, results, strict=True):
        assert artifact_store.get_bytes(digest) == p.read_bytes()
    with artifact_store.batch() as batch:
        assert batch.put_file(paths[2]) == (results[2][0], False)  # already stored


def test_a_failed_batch_leaves_nothing_behind(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "a")
    src = tmp_path / "f"
    src.write_bytes(b"never committed")
    with pytest.raises(RuntimeError), store.batch() as batch:
        digest, new = batch.put_file(src)
        assert new and not store.exists(digest)  # not visible before the commit
        raise RuntimeError("the caller failed")
    assert list(store.iter_digests()) == []
    assert list((tmp_path / "a" / "tmp").iterdir()) == []


def test_a_file_changing_during_the_copy_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import loopline.core.artifact_store as artifacts_mod

    store = LocalArtifactStore(tmp_path / "a")
    src = tmp_path / "f"
    src.write_bytes(os.urandom(1000))
    real = artifacts_mod.blake3.blake3

    class AppendingHasher:
        """Hashes like BLAKE3, and a writer appends to the source after the first chunk."""

        appended = False

        def __init__(self, **kwargs: object) -> None:
            self._h = real(**kwargs)

        def update(self, data: object) -> None:
            self._h.update(data)
            if not AppendingHasher.appended:
                AppendingHasher.appended = True
                with src.open("ab") as f:
                    f.write(b"more")

        def hexdigest(self) -> str:
            return str(self._h.hexdigest())

    monkeypatch.setattr(artifacts_mod.blake3, "blake3", AppendingHasher)
    with pytest.raises(InvalidInput, match="changed while it was being stored"):
        store.put_file(src)
    monkeypatch.undo()
    assert list(store.iter_digests()) == []
    assert list((tmp_path / "a" / "tmp").iterdir()) == []


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "buffered"])
def test_every_copy_is_fsynced_before_it_is_renamed_into_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, direct: bool
) -> None:
    import loopline.core.artifact_copy as artifact_copy
    import loopline.core.artifact_local as artifacts_mod

    if not direct:
        monkeypatch.setattr(artifact_copy, "_O_DIRECT", 0)
    store = LocalArtifactStore(tmp_path / "a")
    synced_in_tmp: set[str] = set()
    real_fsync = artifacts_mod._fsync

    def fsync(path: Path) -> None:
        if path.parent == store.root / "tmp":
            synced_in_tmp.add(path.name)
        real_fsync(path)

    monkeypatch.setattr(artifacts_mod, "_fsync", fsync)
    real_replace = os.replace
    renamed: list[str] = []

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if Path(src).parent == store.root / "tmp":
            assert Path(src).name in synced_in_tmp, f"{src} renamed before it was fsynced"
            renamed.append(Path(src).name)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    paths = []
    for i in range(20):
        p = tmp_path / f"f{i}"
        p.write_bytes(os.urandom(5000 + i))
        paths.append(p)
    with store.batch() as batch:
        for p in paths:
            batch.put_file(p)
    assert len(renamed) == 20


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every path the local store fsyncs, in order (the fsyncs still happen)."""
    import loopline.core.artifact_local as artifacts_mod

    done: list[Path] = []
    real_fsync = artifacts_mod._fsync

    def fsync(path: Path) -> None:
        done.append(path)
        real_fsync(path)

    monkeypatch.setattr(artifacts_mod, "_fsync", fsync)
    return done


def test_new_fan_out_folders_and_objects_are_fsynced_at_commit(
    tmp_path: Path, synced: list[Path]
) -> None:
    # put_file makes an object's fan-out folder at once (in the copying thread); commit must
    # still make every entry durable: each folder an object lands in, and objects/ itself.
    store = LocalArtifactStore(tmp_path / "a")
    paths = []
    for i in range(10):
        paths.append(tmp_path / f"f{i}")
        paths[-1].write_bytes(os.urandom(3000 + i))
    with store.batch() as batch:
        digests = [batch.put_file(p)[0] for p in paths]
        assert synced == []  # nothing durable is promised before the commit
    for d in digests:
        assert store.root / "objects" / d[:2] in synced
    assert store.root / "objects" in synced
    # Objects already in place: their folders are fsynced again, objects/ need not be.
    synced.clear()
    with store.batch() as batch:
        batch.put_file(paths[0])
    assert synced == [store.root / "objects" / digests[0][:2]]


def _files(folder: Path, count: int) -> list[Path]:
    folder.mkdir()
    paths = [folder / f"f{i}" for i in range(count)]
    for i, p in enumerate(paths):
        p.write_bytes(os.urandom(4000 + i))
    return paths


@pytest.mark.skipif(_libc_syncfs() is None, reason="syncfs(2) with error reporting: Linux 5.8+")
def test_a_large_batch_flushes_the_file_system_before_and_after_its_renames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import loopline.core.artifact_local as artifacts_mod

    store = LocalArtifactStore(tmp_path / "a")
    events: list[str] = []
    real_syncfs, real_replace = artifacts_mod.syncfs, os.replace

    def syncfs(path: Path, **kw: Any) -> bool:
        events.append(f"syncfs {Path(path).name}")
        return real_syncfs(path, **kw)

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        events.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(artifacts_mod, "syncfs", syncfs)
    # The batch declines syncfs when the machine holds many dirty pages (the suite's other
    # workers writing), and fsyncs each file instead: this test is about the syncfs order.
    monkeypatch.setattr("loopline.core.syncfs.dirty_bytes", lambda: 0)
    monkeypatch.setattr(artifacts_mod, "_fsync", lambda path: events.append("fsync"))
    monkeypatch.setattr(os, "replace", replace)
    paths = _files(tmp_path / "src", artifacts_mod.SYNCFS_MIN)
    with store.batch() as batch:
        digests = [batch.put_file(p)[0] for p in paths]
        assert events == []  # nothing durable is promised before the commit
    n = len(paths)
    assert events == ["syncfs tmp", *["rename"] * n, "syncfs objects"]
    for p, digest in zip(paths, digests, strict=True):
        assert store.get_bytes(digest) == p.read_bytes()


@pytest.mark.parametrize("why", ["syncfs unavailable", "much else waits to be written"])
def test_a_large_batch_fsyncs_each_copy_when_syncfs_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, synced: list[Path], why: str
) -> None:
    # syncfs would flush every other process's dirty pages too (a training job's
    # checkpoints): past SYNCFS_MAX_DIRTY, as where there is no syncfs, the batch goes file
    # by file instead.
    import loopline.core.artifact_local as artifacts_mod
    import loopline.core.syncfs as syncfs_mod

    if why == "syncfs unavailable":
        monkeypatch.setattr(artifacts_mod, "syncfs", lambda path, **kw: False)
    else:
        dirty = artifacts_mod.SYNCFS_MAX_DIRTY + 1
        monkeypatch.setattr(syncfs_mod, "dirty_bytes", lambda: dirty)
    store = LocalArtifactStore(tmp_path / "a")
    paths = _files(tmp_path / "src", artifacts_mod.SYNCFS_MIN)
    with store.batch() as batch:
        digests = [batch.put_file(p)[0] for p in paths]
    in_tmp = [p for p in synced if p.parent == store.root / "tmp"]
    assert len(in_tmp) == len(paths)
    assert {store.root / "objects" / d[:2] for d in digests} <= set(synced)
    assert store.root / "objects" in synced


def test_a_fan_out_folder_removed_before_the_commit_is_made_again(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "a")
    src = tmp_path / "f"
    src.write_bytes(b"fan-out")
    with store.batch() as batch:
        digest, new = batch.put_file(src)
        folder = store.root / "objects" / digest[:2]
        assert new and folder.is_dir() and not store.exists(digest)
        folder.rmdir()
    assert store.get_bytes(digest) == b"fan-out"
