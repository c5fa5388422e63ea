"""The artifact store in an S3-compatible bucket, through fsspec/s3fs.

One PUT (or the completion of a multipart upload) makes an object visible whole, so a
write needs no temp file; every failure of S3 is translated into
:class:`~loopline.errors.BackendUnavailable` naming the setting to check
(:mod:`loopline.core.s3`). See :mod:`loopline.core.artifacts` for the addressing.

Example:
    >>> # S3ArtifactStore("s3://bucket/prefix").put_bytes(b"hello")
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from loopline.core.artifact_store import ArtifactStore, hash_bytes, hash_file, object_key
from loopline.errors import BackendUnavailable, ConfigError


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
