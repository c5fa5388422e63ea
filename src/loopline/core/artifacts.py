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

The pieces: :mod:`loopline.core.artifact_store` holds the interface every backend
implements (:class:`ArtifactStore`, :class:`ArtifactBatch`) and the hashing of bytes and
files; :mod:`loopline.core.artifact_local` the folder backend and its batches;
:mod:`loopline.core.artifact_s3` the bucket backend. This module is their face: it
opens the backend a URL names and re-exports what callers use, so
``from loopline.core.artifacts import ...`` is the one import the rest of Loopline needs.

Example:
    >>> import tempfile
    >>> store = open_artifact_store(tempfile.mkdtemp())
    >>> digest = store.put_bytes(b"hello")
    >>> store.get_bytes(digest)
    b'hello'
"""

from __future__ import annotations

from typing import Any

from loopline.core.artifact_local import SYNCFS_MAX_DIRTY, SYNCFS_MIN, LocalArtifactStore
from loopline.core.artifact_s3 import S3ArtifactStore
from loopline.core.artifact_store import (
    ArtifactBatch,
    ArtifactStore,
    check_digest,
    hash_bytes,
    hash_file,
    object_key,
)
from loopline.errors import ConfigError

__all__ = [
    "SYNCFS_MAX_DIRTY",
    "SYNCFS_MIN",
    "ArtifactBatch",
    "ArtifactStore",
    "LocalArtifactStore",
    "S3ArtifactStore",
    "check_digest",
    "hash_bytes",
    "hash_file",
    "object_key",
    "open_artifact_store",
]


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
