"""The interface of an artifact store, and the hashing that gives an artifact its address.

Every backend (:mod:`loopline.core.artifact_local`, :mod:`loopline.core.artifact_s3`)
implements :class:`ArtifactStore`; the verified reads (:meth:`ArtifactStore.get_bytes`,
:meth:`ArtifactStore.get_file`) and the default batch (each file stored at once, right for
a remote store whose every upload is durable by itself) live here, once for all of them.
See :mod:`loopline.core.artifacts` for the addressing and the guarantees.

Example:
    >>> hash_bytes(b"hello")[:16]
    'ea8f163db3868292'
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

import blake3

from loopline.core import scratch
from loopline.core.artifact_copy import THREADED_HASH_MIN as _THREADED_HASH_MIN
from loopline.errors import IntegrityError, InvalidInput, NotFound

_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")


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
            check_unchanged(Path(path), before)
            return digest, False
        if self.store.put_file(path) != digest:
            raise changed_while_stored(Path(path))
        return digest, True

    def commit(self) -> None:
        """Return once every object put so far is durable."""

    def abort(self) -> None:
        """Discard what was put but not committed."""


def changed_while_stored(src: Path) -> InvalidInput:
    """The error for a source file that changed while a store read it.

    Example:
        >>> changed_while_stored(Path("data.csv")).field
        'path'
    """
    return InvalidInput(
        f"{src} changed while it was being stored",
        field="path",
        hint="wait until the file is no longer being written, then add it again",
    )


def check_unchanged(src: Path, before: os.stat_result) -> None:
    """Raise :func:`changed_while_stored` unless ``src`` has the size and mtime of ``before``.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "f"; _ = p.write_bytes(b"x")
        >>> check_unchanged(p, p.stat())
    """
    after = src.stat()
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
        raise changed_while_stored(src)
