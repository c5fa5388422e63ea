"""Put a dataset version's files on the local disk, verified.

:func:`checkout` writes independent copies into a folder the caller owns (each file is
verified against its digest by the artifact store before it is renamed into place).

:func:`materialize` gives a version a stable local folder under
``LOOPLINE_HOME/checkouts/NAME/VERSION`` for :attr:`DatasetVersion.path`. On a local artifact
store the files are hard links to the stored objects (no copy; made read-only, since a
write through the link would change the stored object) and verified once when the folder
is built; elsewhere (S3) they are downloaded and verified. The folder is built under a
temporary name and renamed into place, with a marker holding the version's hash, so a
half-built or stale folder is never used.

Example:
    >>> # folder = materialize(ctx.artifacts, home, "churn", 3, version_hash, files)
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

from loopline.core.artifacts import ArtifactStore, LocalArtifactStore, hash_file
from loopline.data.ingest import CHECKOUT_MARKER, WORKERS, FileEntry
from loopline.errors import IntegrityError, InvalidInput

MARKER = CHECKOUT_MARKER
_READ_ONLY = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH


def _target(root: Path, rel_path: str) -> Path:
    dest = (root / rel_path).resolve()
    if not dest.is_relative_to(root.resolve()) or rel_path.startswith("/"):
        raise IntegrityError(
            f"manifest path {rel_path!r} points outside the checkout folder",
            hint="the metadata database was tampered with; check `loopline audit verify`",
        )
    return dest


def _link_verified(store: LocalArtifactStore, entry: FileEntry, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    source = store.local_path(entry.digest)
    try:
        os.link(source, dest)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
        store.get_file(entry.digest, dest)  # another file system: a verified copy
        return
    actual = hash_file(dest)
    if actual != entry.digest:
        dest.unlink()
        raise IntegrityError(
            f"artifact {entry.digest} ({entry.path}) in {store.url} is corrupted: "
            f"its bytes hash to {actual}",
            hint="restore it from a backup or register the dataset again",
        )
    with contextlib.suppress(PermissionError):
        dest.chmod(_READ_ONLY)


def _fetch(store: ArtifactStore, entries: Sequence[FileEntry], root: Path, link: bool) -> None:
    failed = threading.Event()

    def one(entry: FileEntry) -> None:
        # A worker free at the moment another fails must not start a download that would
        # wait out the store's timeouts too: the first failure is the answer.
        if failed.is_set():
            return
        dest = _target(root, entry.path)
        try:
            if link and isinstance(store, LocalArtifactStore):
                _link_verified(store, entry, dest)
            else:
                store.get_file(entry.digest, dest)
        except BaseException:
            failed.set()
            raise

    pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="checkout")
    try:
        for fut in [pool.submit(one, e) for e in entries]:
            fut.result()
    finally:
        # After a failure the queued downloads are dropped: each would otherwise wait out
        # the store's timeouts in turn before the error reached the caller.
        pool.shutdown(wait=True, cancel_futures=True)


def checkout(store: ArtifactStore, entries: Sequence[FileEntry], dest_dir: Path) -> Path:
    """Write every file of a manifest below ``dest_dir`` as a verified, writable copy.

    Files of the dataset that already exist there are replaced; other files are left alone.

    Example:
        >>> # checkout(ctx.artifacts, version.files, Path("work/churn"))
    """
    if dest_dir.exists() and not dest_dir.is_dir():
        raise InvalidInput(
            f"{dest_dir} exists and is not a folder", field="dest_dir", hint="pick a folder"
        )
    dest_dir.mkdir(parents=True, exist_ok=True)
    if any(dest_dir.iterdir()):
        _check_conflicts(dest_dir, entries)
    _fetch(store, entries, dest_dir, link=False)
    return dest_dir


def _check_conflicts(root: Path, entries: Sequence[FileEntry]) -> None:
    """Raise :class:`InvalidInput` naming the first entry of ``root`` in a file's way.

    Checked before anything is written: a folder where a file goes, a file where a folder
    goes, and a symbolic link anywhere on a file's path (writing through it would change
    a file elsewhere).
    """
    checked: set[Path] = set()
    for entry in entries:
        parts = PurePosixPath(entry.path).parts
        if entry.path.startswith("/") or ".." in parts:
            continue  # _target refuses it as a tampered manifest
        here = root
        for i, part in enumerate(parts):
            here = here / part
            last = i == len(parts) - 1
            if here in checked and not last:
                continue
            checked.add(here)
            if here.is_symlink():
                problem = "is a symbolic link"
            elif last and here.is_dir():
                problem = f"is a folder, where the dataset has the file {entry.path!r}"
            elif not last and here.exists() and not here.is_dir():
                problem = f"is a file, where the dataset has a folder (for {entry.path!r})"
            else:
                continue
            raise InvalidInput(
                f"cannot check out into {root}: {here} {problem}",
                field="dest_dir",
                hint=f"check out into an empty or new folder, or remove {here}",
            )


def materialize(
    store: ArtifactStore,
    home: Path,
    name: str,
    version: int,
    version_hash: str,
    entries: Sequence[FileEntry],
) -> Path:
    """The local folder holding a version's files, built (and verified) on first use.

    Example:
        >>> # materialize(ctx.artifacts, Path(".loopline"), "churn", 3, v.hash, v.files)
    """
    final = home.resolve() / "checkouts" / name / str(version)
    marker = final / MARKER
    if marker.is_file() and marker.read_text() == version_hash:
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    building = final.parent / f".{version}.{uuid.uuid4().hex}.tmp"
    try:
        building.mkdir()
        _fetch(store, entries, building, link=True)
        # A new file put in place, never a write into the one there: a version that holds a
        # file of this name (added before such files were skipped) has it hard-linked to
        # the store's object, which a write would change for every dataset sharing it.
        staged = building / f".{MARKER}.{uuid.uuid4().hex}"
        staged.write_text(version_hash)
        os.replace(staged, building / MARKER)
        if final.exists():  # stale (another store's version of the same number): replace
            _remove_tree(final)
        try:
            building.rename(final)
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            # Another process built it meanwhile; use theirs if it is this version.
            if not (marker.is_file() and marker.read_text() == version_hash):
                raise
    finally:
        if building.exists():
            _remove_tree(building)
    return final


def _remove_tree(path: Path) -> None:
    # Read-only files are no obstacle: unlinking depends on the folder's permissions.
    shutil.rmtree(path)
