"""The content-addressed artifact store: a local folder by default, S3 for a team.

An artifact's address is the BLAKE3 digest (256 bits, hex) of its bytes. BLAKE3 because it
is a cryptographic hash (an address cannot be forged by accident or on purpose) that is
several times faster than SHA-256 or BLAKE2b and hashes one large file on many threads;
on this kind of machine it hashes about 1.7 GB/s on one core.

Objects live at ``<root>/objects/<first two hex>/<rest>``. Identical bytes are stored once.
Writes are atomic: locally the bytes go to ``<root>/tmp/``, are fsynced, renamed into place
and the folder fsynced; on S3 one PUT (or the completion of a multipart upload) makes the
object visible whole. Every read recomputes the digest and raises :class:`IntegrityError`
naming the artifact when the bytes do not match.

**Batches.** Through :meth:`~ArtifactStore.put_file` each file costs two fsyncs (its
bytes, then its folder) and, in ``put_file``'s callers that first ask ``exists``, two reads.
:meth:`ArtifactStore.batch` stores many files (a dataset folder) for less: each file is read
once, copied to ``tmp/`` and hashed in the same pass (the digest is known only once the
bytes are read, so a copy whose digest the store already has is dropped at once, unsynced);
the copy is written past the page cache where the file system allows it (see
:mod:`loopline.core.artifact_copy`). Such a direct copy leaves no dirty pages, so its
fsync (metadata only) waits for the commit, where all of them run at once and share the
journal's commits; a buffered copy (where direct writes are refused) is fsynced straight
away in the caller's thread, because a gigabyte of dirty pages left for the end gets the
writers throttled. When the batch commits, the pending copies are fsynced, renamed into
place and each object folder touched is fsynced once, instead of once per object (a batch
of :data:`SYNCFS_MIN` direct copies or more flushes the whole file system instead, once
before the renames and once after, unless much else waits to be written: see
:mod:`loopline.core.syncfs`). The
guarantees are those of a single write: no object is visible under its address before its
bytes are durable (a crash can only leave files in ``tmp/``), and when ``commit`` returns
every object of the batch is durable under its name, including one that was already there
(its folder is fsynced too, in case its writer had not yet done it). A caller that records
the digests (a dataset version) commits the batch before its metadata transaction.
:meth:`~ArtifactStore.put_file` is a batch of one.

Example:
    >>> import tempfile
    >>> store = open_artifact_store(tempfile.mkdtemp())
    >>> digest = store.put_bytes(b"hello")
    >>> store.get_bytes(digest)
    b'hello'
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import blake3

from loopline.core import scratch
from loopline.core.artifact_copy import THREADED_HASH_MIN as _THREADED_HASH_MIN
from loopline.core.artifact_copy import copy_hashing
from loopline.core.syncfs import fsync_path, syncfs
from loopline.errors import BackendUnavailable, ConfigError, IntegrityError, InvalidInput, NotFound

_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
# Threads for a batch's folder fsyncs: they wait on the disk, not the CPU, and the file
# system commits concurrent fsyncs together.
_SYNC_WORKERS = 16
# From this many direct copies a batch commit flushes the whole file system (two syncfs)
# instead of fsyncing each copy and folder, unless more than SYNCFS_MAX_DIRTY bytes of
# other writes would be flushed with them: see loopline.core.syncfs.
SYNCFS_MIN = 64
SYNCFS_MAX_DIRTY = 256 * 1024 * 1024


def hash_bytes(data: bytes | memoryview) -> str:
    """The BLAKE3 hex digest of ``data``.

    Example:
        >>> hash_bytes(b"")[:16]
        'af1349b9f5f9a1a6'
    """
    threads = blake3.blake3.AUTO if len(data) >= _THREADED_HASH_MIN else 1
    return blake3.blake3(data, max_threads=threads).hexdigest()


def hash_file(path: str | os.PathLike[str]) -> str:
    """The BLAKE3 hex digest of a file's bytes, memory-mapped and hashed on all cores.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "f"; _ = p.write_bytes(b"")
        >>> hash_file(p) == hash_bytes(b"")
        True
    """
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    hasher.update_mmap(os.fspath(path))
    return hasher.hexdigest()


def check_digest(digest: str) -> str:
    """Return ``digest`` if it is a well-formed address, else raise :class:`InvalidInput`."""
    if not isinstance(digest, str) or not _DIGEST_RE.fullmatch(digest):
        raise InvalidInput(
            f"{digest!r} is not an artifact address",
            field="digest",
            hint="an address is the 64-character lowercase hex BLAKE3 digest",
        )
    return digest


def object_key(digest: str) -> str:
    """The key of an object below the store root, e.g. ``objects/ab/cdef...``."""
    check_digest(digest)
    return f"objects/{digest[:2]}/{digest[2:]}"


class ArtifactStore(ABC):
    """Where artifact bytes live, addressed by their digest.

    A backend must: store bytes atomically under their BLAKE3 digest, store identical bytes
    once, verify the digest on every read, and report an unreachable or unwritable backend
    as :class:`BackendUnavailable` naming ``LOOPLINE_ARTIFACTS``. The conformance suite in
    ``tests/core/test_artifacts.py`` runs on every backend.
    """

    url: str

    @abstractmethod
    def put_bytes(self, data: bytes) -> str:
        """Store ``data``; return its digest."""

    @abstractmethod
    def put_file(self, path: str | os.PathLike[str]) -> str:
        """Store a file's bytes; return their digest."""

    @abstractmethod
    def exists(self, digest: str) -> bool:
        """Whether an object with this digest is stored."""

    @abstractmethod
    def _read_raw(self, digest: str) -> bytes:
        """The stored bytes, unverified; raise FileNotFoundError when absent."""

    @abstractmethod
    def _download_raw(self, digest: str, dest: Path) -> None:
        """Copy the stored object to ``dest``, unverified."""

    @abstractmethod
    def iter_digests(self) -> Iterator[str]:
        """Every stored digest."""

    @abstractmethod
    def check(self) -> None:
        """Raise :class:`BackendUnavailable` unless the store answers and is writable."""

    def sweep_tmp(self) -> scratch.Sweep | None:
        """Remove the temp files that killed writers left in the store (None: it keeps none).

        Example:
            >>> # store.sweep_tmp().removed_bytes
        """
        return None

    def _new_batch(self) -> ArtifactBatch:
        return ArtifactBatch(self)

    @contextlib.contextmanager
    def batch(self) -> Iterator[ArtifactBatch]:
        """Store several files and make them durable together (see the module docstring).

        The batch commits when the block ends normally; on an exception what was not yet
        committed is discarded.

        Example:
            >>> # with store.batch() as batch:
            >>> #     digests = [batch.put_file(p)[0] for p in paths]
        """
        with self._writing():
            batch = self._new_batch()
            committed = False
            try:
                yield batch
                batch.commit()
                committed = True
            finally:
                if not committed:
                    batch.abort()

    def _writing(self) -> contextlib.AbstractContextManager[object]:
        """Held while temp files of this process may exist in the store (none here)."""
        return contextlib.nullcontext()

    def get_bytes(self, digest: str) -> bytes:
        """The bytes stored under ``digest``, verified.

        Raises :class:`NotFound` when absent and :class:`IntegrityError` when corrupted.
        """
        try:
            data = self._read_raw(object_key(digest) and digest)
        except FileNotFoundError as exc:
            raise NotFound(f"artifact {digest} is not in {self.url}") from exc
        actual = hash_bytes(data)
        if actual != digest:
            raise IntegrityError(
                f"artifact {digest} in {self.url} is corrupted: its bytes hash to {actual}",
                hint="restore it from a backup or log it again",
            )
        return data

    def get_file(self, digest: str, dest: str | os.PathLike[str]) -> Path:
        """Write the verified object to ``dest`` atomically and return the path."""
        dest_path = Path(dest)
        dest_path.parent.mkdir(parents=True, exist_ok=True)
        # Not named after the file: a name near the 255-byte limit plus a suffix would pass
        # it (File name too long), though the file itself fits.
        tmp = dest_path.with_name(f".loopline-{uuid.uuid4().hex}.part")
        try:
            try:
                self._download_raw(check_digest(digest), tmp)
            except FileNotFoundError as exc:
                raise NotFound(f"artifact {digest} is not in {self.url}") from exc
            actual = hash_file(tmp)
            if actual != digest:
                raise IntegrityError(
                    f"artifact {digest} in {self.url} is corrupted: its bytes hash to {actual}",
                    hint="restore it from a backup or log it again",
                )
            os.replace(tmp, dest_path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return dest_path


class ArtifactBatch:
    """Files stored together; every object is durable once :meth:`commit` returns.

    This default stores each file at once through the store's ``put_file`` (right for a
    remote store, where each upload is durable by itself); a local store reads each file
    once and defers the renames and folder fsyncs to :meth:`commit`. Safe to use from
    several threads.
    """

    def __init__(self, store: ArtifactStore) -> None:
        self.store = store

    def put_file(self, path: str | os.PathLike[str]) -> tuple[str, bool]:
        """Store a file's bytes; return their digest and whether they were new to the store.

        Raises :class:`InvalidInput` when the file changes while it is being read.
        """
        before = Path(path).stat()
        digest = hash_file(path)
        if self.store.exists(digest):
            _check_unchanged(Path(path), before)
            return digest, False
        if self.store.put_file(path) != digest:
            raise _changed_while_stored(Path(path))
        return digest, True

    def commit(self) -> None:
        """Return once every object put so far is durable."""

    def abort(self) -> None:
        """Discard what was put but not committed."""


def _changed_while_stored(src: Path) -> InvalidInput:
    return InvalidInput(
        f"{src} changed while it was being stored",
        field="path",
        hint="wait until the file is no longer being written, then add it again",
    )


def _check_unchanged(src: Path, before: os.stat_result) -> None:
    after = src.stat()
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
        raise _changed_while_stored(src)


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
                _check_unchanged(src, before)
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


class S3ArtifactStore(ArtifactStore):
    """Artifacts in an S3-compatible bucket through fsspec/s3fs.

    A PUT (or a completed multipart upload for large files) is atomic on S3: readers see
    the whole object or none of it, so no temp-name dance is needed.
    """

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        # Heavy (botocore); only a team deployment pays for it.
        from loopline.core.s3 import s3_filesystem

        # The scheme goes first: "s3://" stripped of its slashes first became bucket "s3:".
        self._root = url.removeprefix("s3://").rstrip("/")
        self.url = f"s3://{self._root}"
        self.bucket = self._root.split("/", 1)[0]
        if not self.bucket:
            raise ConfigError(
                f"LOOPLINE_ARTIFACTS={url!r} names no bucket", hint="use s3://bucket/prefix"
            )
        self.fs = s3_filesystem(storage_options)  # every wait bounded: see core.s3

    def _key(self, digest: str) -> str:
        return f"{self._root}/{object_key(digest)}"

    def exists(self, digest: str) -> bool:
        with self._translate():
            return bool(self.fs.exists(self._key(digest)))

    def put_bytes(self, data: bytes) -> str:
        digest = hash_bytes(data)
        if not self.exists(digest):
            with self._uploading():
                self.fs.pipe_file(self._key(digest), data)
        return digest

    def put_file(self, path: str | os.PathLike[str]) -> str:
        digest = hash_file(path)
        if not self.exists(digest):
            with self._uploading():
                self.fs.put_file(os.fspath(path), self._key(digest))
        return digest

    @contextlib.contextmanager
    def _uploading(self) -> Iterator[None]:
        """Translate S3's failures of a write; "not found" can only mean the bucket.

        (``exists`` answers False for a missing bucket, so the first write is where a
        wrong bucket name shows: as ``FileNotFoundError``, which named no setting.)
        """
        with self._translate():
            try:
                yield
            except FileNotFoundError as exc:
                raise BackendUnavailable(
                    f"the bucket {self.bucket!r} of LOOPLINE_ARTIFACTS={self.url} does not exist",
                    hint="create the bucket or fix LOOPLINE_ARTIFACTS",
                ) from exc

    def _read_raw(self, digest: str) -> bytes:
        with self._translate():
            return bytes(self.fs.cat_file(self._key(digest)))

    def _download_raw(self, digest: str, dest: Path) -> None:
        with self._translate():
            self.fs.get_file(self._key(digest), os.fspath(dest))

    def iter_digests(self) -> Iterator[str]:
        with self._translate():
            try:
                keys = self.fs.find(f"{self._root}/objects")
            except FileNotFoundError:
                return
        for key in sorted(keys):
            parts = key.rsplit("/", 2)
            yield parts[-2] + parts[-1]

    def check(self) -> None:
        # Write a probe rather than ask whether the bucket exists: s3fs's exists() answers
        # False for an endpoint that does not answer too, which would send the user looking
        # for a bucket that is there. A missing bucket fails the write as not found.
        probe = f"{self._root}/tmp/probe-{uuid.uuid4().hex}"
        with self._uploading():
            self.fs.pipe_file(probe, b"ok")
        with self._translate():
            self.fs.rm_file(probe)

    def unfinished_uploads(self) -> list[tuple[str, str]]:
        """The multipart uploads begun under the store's prefix and never completed nor
        aborted, as (key, started at): what a killed upload of a file of 100 MiB or more
        leaves. Their parts are stored (and billed) until aborted; no writer can be told
        alive from gone here, so they are listed, not removed.

        Example:
            >>> # store.unfinished_uploads() -> [('bucket/objects/8b/c9f1...', '2026-...')]
        """
        prefix = self._root.split("/", 1)[1] + "/" if "/" in self._root else ""
        found: list[tuple[str, str]] = []
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        with self._translate():
            while True:
                try:
                    page = self.fs.call_s3("list_multipart_uploads", **args)
                except FileNotFoundError:
                    return found  # some S3 servers answer NoSuchUpload when there are none
                for upload in page.get("Uploads", []):
                    found.append((upload["Key"], str(upload.get("Initiated", ""))))
                if not page.get("IsTruncated"):
                    return found
                args["KeyMarker"] = page.get("NextKeyMarker", "")
                args["UploadIdMarker"] = page.get("NextUploadIdMarker", "")

    def _translate(self) -> contextlib.AbstractContextManager[None]:
        from loopline.core.s3 import translated

        return translated(
            f"the artifact store {self.url}",
            self.fs,
            hint="check LOOPLINE_ARTIFACTS, LOOPLINE_S3_ENDPOINT_URL and the S3 keys",
        )


def open_artifact_store(url: str, storage_options: dict[str, Any] | None = None) -> ArtifactStore:
    """Open the artifact store named by ``url``: a folder, ``file://...`` or ``s3://...``.

    Example:
        >>> import tempfile
        >>> type(open_artifact_store(tempfile.mkdtemp())).__name__
        'LocalArtifactStore'
    """
    if url.startswith("s3://"):
        return S3ArtifactStore(url, storage_options)
    if url.startswith("file://"):
        return LocalArtifactStore(url.removeprefix("file://"))
    if "://" in url:
        raise ConfigError(
            f"LOOPLINE_ARTIFACTS has unknown scheme in {url!r}",
            hint="use a folder path, file:///path or s3://bucket/prefix",
        )
    return LocalArtifactStore(url)
