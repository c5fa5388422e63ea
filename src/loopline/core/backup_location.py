"""Where a backup is written and read: a local folder or an fsspec URL (``s3://...``).

Writing is all-or-nothing as seen by ``restore``:

* **local folder** — everything goes into a sibling ``DEST.tmp-<random>``; each file is
  fsynced, ``manifest.json`` is written last, the folders are fsynced, and the folder is
  renamed to ``DEST`` in one step. A killed backup leaves only the ``.tmp-`` folder, which
  has no manifest and which ``restore`` therefore refuses.
* **object store** — there is no rename, but one PUT is atomic, so ``manifest.json`` is
  uploaded last, after every other file: a half-written backup has no manifest.

Example:
    >>> import tempfile, pathlib
    >>> dest = pathlib.Path(tempfile.mkdtemp()) / "bk"
    >>> sink = open_sink(str(dest))
    >>> _ = sink.path("tables/t.parquet").write_bytes(b"x"); sink.publish("tables/t.parquet")
    >>> sink.finish(b"{}"); sorted(p.name for p in dest.iterdir())
    ['manifest.json', 'tables']
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from loopline.core.backup_format import MANIFEST
from loopline.core.syncfs import fsync_path
from loopline.errors import BackendUnavailable, Conflict, NotFound


def is_remote(url: str) -> bool:
    """Whether ``url`` names an fsspec location (``s3://...``) rather than a local folder.

    Example:
        >>> is_remote("s3://bucket/bk"), is_remote("/backups/bk")
        (True, False)
    """
    return "://" in url and not url.startswith("file://")


def _local(url: str) -> Path:
    return Path(url.removeprefix("file://")).expanduser().resolve()


_fsync = fsync_path


class BackupSink(ABC):
    """The writing end: files are made locally at :meth:`path`, then :meth:`publish`-ed."""

    url: str

    @abstractmethod
    def path(self, rel: str) -> Path:
        """A local path to write the backup file ``rel`` to (its folder exists)."""

    @abstractmethod
    def publish(self, rel: str) -> None:
        """The file at :meth:`path` is complete: make it part of the backup, durably."""

    @abstractmethod
    def finish(self, manifest: bytes) -> None:
        """Write the manifest last and make the backup visible as complete."""

    @abstractmethod
    def abort(self) -> None:
        """Remove what was written (after an error)."""


class LocalSink(BackupSink):
    """A folder written as ``DEST.tmp-<random>`` and renamed to ``DEST`` when complete."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.url = str(dest)
        if dest.exists() and not (dest.is_dir() and not any(dest.iterdir())):
            raise Conflict(
                f"backup destination {dest} already exists",
                hint="choose a new folder (a backup never overwrites another)",
            )
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            self.staging = dest.with_name(f"{dest.name}.tmp-{uuid.uuid4().hex[:8]}")
            self.staging.mkdir()
        except OSError as exc:
            raise BackendUnavailable(
                f"cannot write the backup to {dest}: {exc.strerror or exc}",
                hint="choose a writable folder for DEST",
            ) from exc
        self._folders: set[Path] = {self.staging}

    def path(self, rel: str) -> Path:
        target = self.staging / rel
        if target.parent not in self._folders:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._folders.update(p for p in target.parents if self.staging in p.parents)
            self._folders.add(target.parent)
        return target

    def publish(self, rel: str) -> None:
        _fsync(self.staging / rel)

    def finish(self, manifest: bytes) -> None:
        manifest_path = self.staging / MANIFEST
        with manifest_path.open("wb") as f:
            f.write(manifest)
            f.flush()
            os.fsync(f.fileno())
        # Deepest folders first, so each folder's entry is durable before its parent's.
        for folder in sorted(self._folders, key=lambda p: len(p.parts), reverse=True):
            _fsync(folder)
        if self.dest.is_dir():
            self.dest.rmdir()  # an empty folder named by the user: replaced by the rename
        self.staging.rename(self.dest)
        _fsync(self.dest.parent)

    def abort(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


class FsspecSink(BackupSink):
    """A prefix in an object store: files uploaded one by one, ``manifest.json`` last.

    Every call to the store ends within the bounded S3 waits (:mod:`loopline.core.s3`) and
    fails as :class:`BackendUnavailable` naming the endpoint.
    """

    def __init__(self, url: str, storage_options: dict[str, Any]) -> None:
        from loopline.core.s3 import url_to_fs  # heavy (botocore): remote backups only

        self.url = url.rstrip("/")
        self.fs, self._root = url_to_fs(self.url, storage_options)
        self._work = Path(tempfile.mkdtemp(prefix="loopline-backup-"))
        self._uploaded: list[str] = []
        try:
            with self._writing(f"cannot reach the backup destination {self.url}"):
                taken = self.fs.exists(f"{self._root}/{MANIFEST}") or bool(
                    self.fs.find(self._root, maxdepth=None)
                )
        except (BackendUnavailable, NotFound):
            shutil.rmtree(self._work, ignore_errors=True)
            raise
        if taken:
            shutil.rmtree(self._work, ignore_errors=True)
            raise Conflict(
                f"backup destination {self.url} is not empty",
                hint="choose a new prefix (a backup never overwrites another)",
            )

    def path(self, rel: str) -> Path:
        target = self._work / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def _translate(self, what: str) -> contextlib.AbstractContextManager[None]:
        from loopline.core.s3 import translated

        return translated(what, self.fs, hint="check DEST and the LOOPLINE_S3_* settings")

    @contextlib.contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        # A write answered "not found" means the bucket is missing (s3fs: "The specified
        # bucket does not exist"), which escaped as a raw FileNotFoundError (exit 1).
        try:
            with self._translate(what):
                yield
        except FileNotFoundError as exc:
            bucket = self._root.split("/", 1)[0]
            raise NotFound(
                f"{what}: the bucket {bucket!r} does not exist ({exc})",
                hint="create the bucket first, or choose another DEST",
            ) from exc

    def publish(self, rel: str) -> None:
        local = self._work / rel
        key = f"{self._root}/{rel}"
        with self._writing(f"cannot upload {rel} to {self.url}"):
            self.fs.put_file(os.fspath(local), key)
        self._uploaded.append(key)
        local.unlink()

    def finish(self, manifest: bytes) -> None:
        with self._writing(f"cannot write {MANIFEST} to {self.url}"):
            self.fs.pipe_file(f"{self._root}/{MANIFEST}", manifest)
        shutil.rmtree(self._work, ignore_errors=True)

    def abort(self) -> None:
        shutil.rmtree(self._work, ignore_errors=True)
        if not self._uploaded:
            return
        # One bulk delete, given up on when the store does not answer: what stays behind has
        # no manifest, which restore refuses, so it is not worth one bounded wait per file.
        with (
            contextlib.suppress(BackendUnavailable, FileNotFoundError),
            self._translate(f"cannot remove the partial backup {self.url}"),
        ):
            self.fs.rm(list(self._uploaded))


def open_sink(url: str, storage_options: dict[str, Any] | None = None) -> BackupSink:
    """The writing end for ``url``: a local folder, ``file://...`` or an fsspec URL.

    Example:
        >>> # open_sink("s3://bucket/backups/2024-06-01", {"endpoint_url": ...})
    """
    if is_remote(url):
        return FsspecSink(url, storage_options or {})
    return LocalSink(_local(url))


class BackupSource:
    """The reading end: a local folder or an fsspec URL; remote files are fetched to a temp dir.

    Example:
        >>> # src = BackupSource("s3://bucket/backups/x", opts); src.read_manifest()
    """

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.url = url.rstrip("/")
        self._work: Path | None = None
        if is_remote(url):
            from loopline.core.s3 import url_to_fs  # heavy (botocore): remote backups only

            self.fs, self._root = url_to_fs(self.url, storage_options)
            self._local: Path | None = None
        else:
            self._local = _local(url)
            if not self._local.is_dir():
                raise NotFound(
                    f"backup {self._local} does not exist or is not a folder",
                    hint="pass the folder that `loopline backup` wrote",
                )

    def read_manifest(self) -> bytes | None:
        """The bytes of ``manifest.json``, or None when the backup has none (incomplete)."""
        if self._local is not None:
            path = self._local / MANIFEST
            return path.read_bytes() if path.is_file() else None
        try:
            with self._translate(f"cannot read the backup {self.url}"):
                return bytes(self.fs.cat_file(f"{self._root}/{MANIFEST}"))
        except FileNotFoundError:
            pass
        # No manifest: an incomplete backup, unless there is no bucket to hold one at all.
        bucket = self._root.split("/", 1)[0]
        with self._translate(f"cannot read the backup {self.url}"):
            if not self.fs.exists(bucket):
                raise NotFound(
                    f"cannot read the backup {self.url}: the bucket {bucket!r} does not exist",
                    hint="check SRC (the bucket's name) and LOOPLINE_S3_ENDPOINT_URL",
                )
        return None

    def _translate(self, what: str) -> contextlib.AbstractContextManager[None]:
        from loopline.core.s3 import translated

        return translated(what, self.fs, hint="check SRC and the LOOPLINE_S3_* settings")

    def fetch(self, rel: str) -> Path:
        """A local path holding the backup file ``rel`` (downloaded when remote).

        Raises :class:`NotFound` naming the file when the backup lacks it.
        """
        if self._local is not None:
            path = self._local / rel
            if not path.is_file():
                raise NotFound(
                    f"backup {self.url} is missing {rel}",
                    hint="the backup is incomplete or damaged: restore from another one",
                )
            return path
        if self._work is None:
            self._work = Path(tempfile.mkdtemp(prefix="loopline-restore-"))
        local = self._work / uuid.uuid4().hex
        try:
            with self._translate(f"cannot fetch {rel} from the backup {self.url}"):
                self.fs.get_file(f"{self._root}/{rel}", os.fspath(local))
        except FileNotFoundError as exc:
            raise NotFound(
                f"backup {self.url} is missing {rel}",
                hint="the backup is incomplete or damaged: restore from another one",
            ) from exc
        return local

    def release(self, path: Path) -> None:
        """Delete a fetched copy (a no-op for a local backup)."""
        if self._work is not None and self._work in path.parents:
            path.unlink(missing_ok=True)

    def close(self) -> None:
        """Remove the temp folder of fetched files."""
        if self._work is not None:
            shutil.rmtree(self._work, ignore_errors=True)
