"""The artifact store in a local folder, and its batches.

Objects live at ``<root>/objects/<first two hex>/<rest>``. A write is atomic: the bytes go
to ``<root>/tmp/``, are fsynced, renamed into place and the folder fsynced.

**Batches.** Through :meth:`~ArtifactStore.put_file` each file costs two fsyncs (its bytes,
then its folder) and, in ``put_file``'s callers that first ask ``exists``, two reads.
:meth:`ArtifactStore.batch` stores many files (a dataset folder) for less: each file is
read once, copied to ``tmp/`` and hashed in the same pass (the digest is known only once
the bytes are read, so a copy whose digest the store already has is dropped at once,
unsynced); the copy is written past the page cache where the file system allows it (see
:mod:`loopline.core.artifact_copy`). Such a direct copy leaves no dirty pages, so its fsync
(metadata only) waits for the commit, where all of them run at once and share the journal's
commits; a buffered copy (where direct writes are refused) is fsynced straight away in the
caller's thread, because a gigabyte of dirty pages left for the end gets the writers
throttled. When the batch commits, the pending copies are fsynced, renamed into place and
each object folder touched is fsynced once, instead of once per object (a batch of
:data:`SYNCFS_MIN` direct copies or more flushes the whole file system instead, once before
the renames and once after, unless much else waits to be written: see
:mod:`loopline.core.syncfs`). The guarantees are those of a single write: no object is
visible under its address before its bytes are durable (a crash can only leave files in
``tmp/``), and when ``commit`` returns every object of the batch is durable under its name,
including one that was already there (its folder is fsynced too, in case its writer had not
yet done it). A caller that records the digests (a dataset version) commits the batch
before its metadata transaction. :meth:`~ArtifactStore.put_file` is a batch of one.

Example:
    >>> import tempfile
    >>> store = LocalArtifactStore(tempfile.mkdtemp())
    >>> store.get_bytes(store.put_bytes(b"hello"))
    b'hello'
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from loopline.core import scratch
from loopline.core.artifact_copy import copy_hashing
from loopline.core.artifact_store import (
    ArtifactBatch,
    ArtifactStore,
    check_unchanged,
    hash_bytes,
    object_key,
)
from loopline.core.syncfs import fsync_path, syncfs
from loopline.errors import BackendUnavailable, NotFound

# Threads for a batch's folder fsyncs: they wait on the disk, not the CPU, and the file
# system commits concurrent fsyncs together.
_SYNC_WORKERS = 16
# From this many direct copies a batch commit flushes the whole file system (two syncfs)
# instead of fsyncing each copy and folder, unless more than SYNCFS_MAX_DIRTY bytes of
# other writes would be flushed with them: see loopline.core.syncfs.
SYNCFS_MIN = 64
SYNCFS_MAX_DIRTY = 256 * 1024 * 1024


_fsync = fsync_path


def _fsync_all(paths: list[Path]) -> None:
    """fsync each path (a file or a folder), several at once when there are many."""
    if len(paths) <= 1:
        for path in paths:
            _fsync(path)
        return
    # Imported here: the quick re-add imports this module and never syncs (nor pays for it).
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(_SYNC_WORKERS, len(paths))) as pool:
        for _ in pool.map(_fsync, paths):
            pass


class LocalArtifactStore(ArtifactStore):
    """Artifacts in a local folder: temp file + fsync + rename, then fsync of the folder."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        self.url = str(self.root)
        self._objects = self.root / "objects"
        self._tmp = self.root / "tmp"
        self._ready = False

    def _prepare(self) -> None:
        if self._ready:
            return
        try:
            self._objects.mkdir(parents=True, exist_ok=True)
            self._tmp.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _unwritable(self.url, exc) from exc
        self._ready = True

    def _path(self, digest: str) -> Path:
        return self.root / object_key(digest)

    def sweep_tmp(self) -> scratch.Sweep:
        """Remove the copies in ``tmp/`` whose writer is gone (see :mod:`loopline.core.scratch`).

        Example:
            >>> # LocalArtifactStore("art").sweep_tmp().removed
        """
        return scratch.sweep(self._tmp)

    def exists(self, digest: str) -> bool:
        return self._path(digest).is_file()

    def put_bytes(self, data: bytes) -> str:
        digest = hash_bytes(data)
        if self.exists(digest):
            return digest
        self._prepare()
        self._commit(digest, lambda f: f.write(data))
        return digest

    def put_file(self, path: str | os.PathLike[str]) -> str:
        with self.batch() as batch:
            digest, _ = batch.put_file(path)
        return digest

    def _new_batch(self) -> ArtifactBatch:
        return _LocalBatch(self)

    def _copy_hashing(self, src: Path) -> tuple[str, Path, bool]:
        """Copy ``src`` to a new file in ``tmp/`` and hash it in the same pass (not fsynced).

        Errors reading ``src`` rise as they are; errors writing the store are
        :class:`BackendUnavailable`; a source that changes meanwhile is :class:`InvalidInput`.
        """
        self._prepare()
        tmp = self._tmp / scratch.temp_name(self._tmp)
        done = False
        with src.open("rb") as fin:
            try:
                before = os.fstat(fin.fileno())
                try:
                    digest, direct = copy_hashing(fin, tmp, before.st_size)
                except OSError as exc:
                    raise _unwritable(self.url, exc) from exc
                check_unchanged(src, before)
                done = True
                return digest, tmp, direct
            finally:
                if not done:
                    with contextlib.suppress(FileNotFoundError):
                        tmp.unlink()

    def _writing(self) -> contextlib.AbstractContextManager[object]:
        """This process's writer lock in ``tmp/``: a sweep keeps its temp files meanwhile."""
        self._prepare()
        return scratch.writing(self._tmp)

    def _commit(self, digest: str, write: Any) -> None:
        with self._writing():
            tmp = self._tmp / scratch.temp_name(self._tmp)
            try:
                with tmp.open("wb") as f:
                    write(f)
                    f.flush()
                    os.fsync(f.fileno())
                self._rename_into_place(tmp, digest)
            except OSError as exc:
                raise _unwritable(self.url, exc) from exc
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()

    def _rename_into_place(self, tmp: Path, digest: str) -> None:
        final = self._path(digest)
        made_folder = not final.parent.is_dir()
        if made_folder:
            final.parent.mkdir(exist_ok=True)
        os.replace(tmp, final)
        _fsync(final.parent)
        if made_folder:
            _fsync(self._objects)

    def _read_raw(self, digest: str) -> bytes:
        return self._path(digest).read_bytes()

    def _download_raw(self, digest: str, dest: Path) -> None:
        shutil.copyfile(self._path(digest), dest)

    def local_path(self, digest: str) -> Path:
        """The object's path on disk (unverified; for zero-copy readers such as DuckDB)."""
        path = self._path(digest)
        if not path.is_file():
            raise NotFound(f"artifact {digest} is not in {self.url}")
        return path

    def iter_digests(self) -> Iterator[str]:
        if not self._objects.is_dir():
            return
        for sub in sorted(self._objects.iterdir()):
            for obj in sorted(sub.iterdir()):
                yield sub.name + obj.name

    def check(self) -> None:
        self._prepare()
        try:
            with self._writing():
                probe = self._tmp / scratch.temp_name(self._tmp, "-probe")
                probe.write_bytes(b"ok")
                probe.unlink()
        except OSError as exc:
            raise _unwritable(self.url, exc) from exc


class _LocalBatch(ArtifactBatch):
    """Copies wait in ``tmp/`` until :meth:`commit` fsyncs what is not yet fsynced, renames
    them into place and fsyncs their folders."""

    store: LocalArtifactStore

    def __init__(self, store: LocalArtifactStore) -> None:
        super().__init__(store)
        self._lock = threading.Lock()
        self._pending: dict[str, Path] = {}  # digest -> its copy in tmp/
        self._unsynced: set[Path] = set()  # direct copies in _pending, fsynced at commit
        self._folders: set[Path] = set()  # object folders whose entries must be made durable
        self._made_folder = False  # a fan-out folder was made: objects/ is fsynced at commit

    def put_file(self, path: str | os.PathLike[str]) -> tuple[str, bool]:
        digest, tmp, direct = self.store._copy_hashing(Path(path))
        final = self.store._path(digest)
        if not self._known(digest, final):
            if not final.parent.is_dir():
                # Made here, in the copying thread, rather than one after the other in
                # commit: an empty fan-out folder is harmless, and commit fsyncs objects/.
                try:
                    final.parent.mkdir(exist_ok=True)
                except OSError as exc:
                    tmp.unlink()
                    raise _unwritable(self.store.url, exc) from exc
                with self._lock:
                    self._made_folder = True
            if not direct:
                try:
                    _fsync(tmp)  # now, in the caller's thread: see the module docstring
                except OSError as exc:
                    tmp.unlink()
                    raise _unwritable(self.store.url, exc) from exc
            with self._lock:
                if digest not in self._pending:
                    self._pending[digest] = tmp
                    if direct:
                        self._unsynced.add(tmp)
                    return digest, True
        tmp.unlink()  # the store has these bytes already (or will, at commit)
        return digest, False

    def _known(self, digest: str, final: Path) -> bool:
        """Whether the store has ``digest`` or this batch will; remember its folder."""
        on_disk = final.is_file()
        with self._lock:
            if on_disk:
                self._folders.add(final.parent)
            return on_disk or digest in self._pending

    def commit(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            unsynced, self._unsynced = self._unsynced, set()
            folders, self._folders = self._folders, set()
            made_folder, self._made_folder = self._made_folder, False
        try:
            # Direct copies hold no dirty pages: their fsyncs only commit metadata, and
            # many at once share the file system's journal commits (measured ~20 % faster
            # on a folder of 1,000 files than one fsync after each copy). Many more are
            # cheaper still as one flush of the file system, before and after the renames.
            whole = len(unsynced) >= SYNCFS_MIN and syncfs(
                self.store._tmp, max_dirty=SYNCFS_MAX_DIRTY
            )
            if not whole:
                _fsync_all(sorted(unsynced))
            for digest, tmp in pending.items():
                final = self.store._path(digest)
                try:
                    os.replace(tmp, final)
                except FileNotFoundError:
                    if not tmp.exists():
                        raise
                    # Its fan-out folder (made by put_file) was removed since: make it again.
                    final.parent.mkdir(exist_ok=True)
                    made_folder = True
                    os.replace(tmp, final)
                folders.add(final.parent)
            if not (whole and syncfs(self.store._objects, max_dirty=SYNCFS_MAX_DIRTY)):
                _fsync_all(sorted(folders))
                if made_folder:
                    _fsync(self.store._objects)
        except OSError as exc:
            for tmp in pending.values():
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
            raise _unwritable(self.store.url, exc) from exc

    def abort(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            self._unsynced.clear()
            self._folders.clear()
            self._made_folder = False
        for tmp in pending.values():
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def _unwritable(url: str, exc: OSError) -> BackendUnavailable:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return BackendUnavailable(
            f"the artifact store {url} is full (disk full: {exc.strerror}): nothing was "
            "written and every object stored before is intact",
            hint="free space or point LOOPLINE_ARTIFACTS at a larger volume",
        )
    if exc.errno == errno.EFBIG:  # a file size limit (ulimit -f, the file system's own)
        return BackendUnavailable(
            f"the artifact store {url} cannot take a file this large (disk full for this "
            f"process: {exc.strerror}): nothing was written",
            hint="raise the file size limit (ulimit -f) or point LOOPLINE_ARTIFACTS at "
            "another volume",
        )
    return BackendUnavailable(
        f"cannot write to the artifact store {url}: {exc.strerror or exc}",
        hint="set LOOPLINE_ARTIFACTS to a writable folder or bucket",
    )
