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
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from loopline.core.artifacts import ArtifactStore, LocalArtifactStore, hash_file
from loopline.data.hashcache import FileStat, HashCache
from loopline.data.ingest import CHECKOUT_MARKER, WORKERS, FileEntry, is_marker
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


def checkout(
    store: ArtifactStore,
    entries: Sequence[FileEntry],
    dest_dir: Path,
    *,
    force: bool = False,
    skip: Sequence[Path] = (),
    cache: HashCache | None = None,
) -> Path:
    """Make ``dest_dir`` hold the manifest's files, as verified, writable copies.

    A missing or empty folder gets every file. A folder that already holds exactly these
    files (same relative paths, same bytes) is left as it is, and one that holds some of
    them and nothing else gets the rest. Anything else would overwrite local changes or
    leave a mix of versions, so it is an :class:`InvalidInput` naming what is in the way,
    unless ``force``: then the folder is made exactly the version (differing files are
    replaced, files that are not in the version removed; symbolic links are removed, never
    followed). Paths in ``skip`` (Loopline's own home, artifact store and database) are
    never looked into nor touched. Each file is written to a temporary name and renamed into
    place. ``cache`` (the hash cache) spares hashing the files already there.

    Example:
        >>> # checkout(ctx.artifacts, version.files, Path("work/churn"), force=True)
    """
    if dest_dir.exists() and not dest_dir.is_dir():
        raise InvalidInput(
            f"{dest_dir} exists and is not a folder", field="dest_dir", hint="pick a folder"
        )
    dest_dir.mkdir(parents=True, exist_ok=True)
    if not any(dest_dir.iterdir()):
        _fetch(store, entries, dest_dir, link=False)
        _remember(cache, dest_dir, entries)
        return dest_dir
    plan = _plan(dest_dir, entries, skip, cache)
    plan.refuse_own_files(dest_dir)
    if not force:
        plan.refuse_local_changes(dest_dir)
    for rel, _ in plan.blocked:
        _remove(dest_dir / rel)
    _fetch(store, plan.to_write, dest_dir, link=False)
    # Removed once the version's files are in place: a failed download leaves them.
    for rel in plan.extra:
        _remove(dest_dir / rel)
    for rel in sorted(plan.extra_dirs, key=lambda d: d.count("/"), reverse=True):
        with contextlib.suppress(OSError):  # not empty: it holds one of Loopline's own files
            (dest_dir / rel).rmdir()
    _remember(cache, dest_dir, plan.to_write)
    return dest_dir


#: How many paths of each kind a refusal names.
_SHOWN = 5


def _some(paths: Sequence[str]) -> str:
    shown = ", ".join(paths[:_SHOWN])
    return shown + (f" and {len(paths) - _SHOWN} more" if len(paths) > _SHOWN else "")


@dataclass
class _Plan:
    """What checking a version out into a folder that holds files would do."""

    #: Entries missing from the folder or differing from the version: written.
    to_write: list[FileEntry] = field(default_factory=list)
    #: Files of the version already in the folder with other bytes: overwritten.
    differ: list[str] = field(default_factory=list)
    #: Files (and links) in the folder that the version does not hold: left, or removed.
    extra: list[str] = field(default_factory=list)
    #: Folders that hold nothing of the version: removed with ``force`` once empty.
    extra_dirs: list[str] = field(default_factory=list)
    #: What stands where a file or folder of the version goes, and why, in manifest order
    #: (removed with ``force`` before anything is written).
    blocked: list[tuple[str, str]] = field(default_factory=list)

    def refuse_own_files(self, root: Path) -> None:
        """Raise :class:`InvalidInput` when one of Loopline's own files is in the way:
        not even ``force`` removes it."""
        for rel, problem in self.blocked:
            if _OWN.removeprefix("is ") in problem:
                raise InvalidInput(
                    f"cannot check out into {root}: {root / rel} {problem}",
                    field="dest_dir",
                    hint="check out into another folder",
                )

    def refuse_local_changes(self, root: Path) -> None:
        """Raise :class:`InvalidInput` unless the checkout only adds missing files."""
        hint = (
            "check out into an empty or new folder, or pass --force (SDK: force=True) to "
            f"make {root} exactly the version: differing files are overwritten and files "
            "that are not in the version are removed"
        )
        if self.blocked:
            rel, problem = self.blocked[0]
            raise InvalidInput(
                f"cannot check out into {root}: {root / rel} {problem}",
                field="dest_dir",
                hint=hint,
            )
        if not self.differ and not self.extra:
            return
        parts = []
        if self.differ:
            parts.append(
                f"{len(self.differ)} file(s) differ from the version and would be "
                f"overwritten ({_some(self.differ)})"
            )
        if self.extra:
            parts.append(
                f"{len(self.extra)} file(s) are not in the version and would be left "
                f"beside it ({_some(self.extra)})"
            )
        raise InvalidInput(
            f"cannot check out into {root} without losing local changes or mixing "
            f"versions: {'; '.join(parts)}",
            field="dest_dir",
            hint=hint,
        )


@dataclass(frozen=True)
class _Local:
    """What the folder holds, by relative POSIX path, symbolic links never followed."""

    files: dict[str, os.stat_result]  # regular files
    dirs: set[str]
    others: dict[str, str]  # symbolic links, sockets, FIFOs, ...: what each is
    own: set[str]  # paths in ``skip``: never entered, never touched


def _scan(root: Path, skip: Sequence[Path]) -> _Local:
    skipped = {os.fspath(p.resolve()) for p in skip}
    local = _Local({}, set(), {}, set())
    pending = [(os.fspath(root.resolve()), "")]
    while pending:
        folder, prefix = pending.pop()
        try:
            with os.scandir(folder) as it:
                found = list(it)
        except OSError as exc:
            raise InvalidInput(
                f"cannot read the folder {folder}: {exc.strerror}",
                field="dest_dir",
                hint="fix its permissions, or check out into another folder",
            ) from exc
        for entry in found:
            rel = prefix + entry.name
            if entry.path in skipped:
                local.own.add(rel)
            elif entry.is_dir(follow_symlinks=False):
                local.dirs.add(rel)
                pending.append((entry.path, rel + "/"))
            elif entry.is_symlink():
                local.others[rel] = "is a symbolic link"
            elif not entry.is_file(follow_symlinks=False):
                local.others[rel] = "is not a regular file"
            # A copied checkout's marker is Loopline's bookkeeping, not data (scan_folder).
            elif prefix or entry.name != CHECKOUT_MARKER or not is_marker(entry.path):
                local.files[rel] = entry.stat(follow_symlinks=False)
    return local


def _plan(
    root: Path, entries: Sequence[FileEntry], skip: Sequence[Path], cache: HashCache | None
) -> _Plan:
    local = _scan(root, skip)
    plan = _Plan()
    wanted_dirs: set[str] = set()
    blocked: set[str] = set()
    same_size: list[tuple[FileEntry, os.stat_result]] = []
    for entry in entries:
        parts = PurePosixPath(entry.path).parts
        if entry.path.startswith("/") or ".." in parts:
            _target(root, entry.path)  # raises when it leads outside: a tampered manifest
            plan.to_write.append(entry)
            continue
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts) - 1)]
        wanted_dirs.update(prefixes)
        problem = _blocked(local, prefixes, entry.path)
        if problem is not None:
            if problem[0] not in blocked:
                blocked.add(problem[0])
                plan.blocked.append(problem)
            plan.to_write.append(entry)
            continue
        st = local.files.get(entry.path)
        if st is None:
            plan.to_write.append(entry)
        elif st.st_size != entry.size:
            plan.differ.append(entry.path)
            plan.to_write.append(entry)
        else:
            same_size.append((entry, st))
    for entry in _differing(root, same_size, cache):
        plan.differ.append(entry.path)
        plan.to_write.append(entry)
    plan.to_write.sort(key=lambda e: e.path)
    plan.differ.sort()
    wanted = {e.path for e in entries}
    plan.extra = sorted(
        rel
        for rel in (*local.files, *local.others)
        if rel not in wanted and rel not in blocked and not _below(rel, blocked)
    )
    plan.extra_dirs = [
        d
        for d in local.dirs
        if d not in wanted_dirs and d not in blocked and not _below(d, blocked)
    ]
    return plan


def _below(rel: str, folders: set[str]) -> bool:
    """Whether ``rel`` is inside one of ``folders`` (relative POSIX paths)."""
    parts = rel.split("/")
    return any("/".join(parts[:i]) in folders for i in range(1, len(parts)))


_OWN = "is one of Loopline's own files (its home, artifact store or database)"


def _blocked(local: _Local, prefixes: list[str], path: str) -> tuple[str, str] | None:
    """(the entry in the way, why) when anything but folders stands on the way to
    ``path``, or anything but a regular file at ``path``."""
    for prefix in prefixes:
        if prefix in local.own:
            return prefix, _OWN
        if prefix in local.others:
            return prefix, local.others[prefix]
        if prefix in local.files:
            return prefix, f"is a file, where the dataset has a folder (for {path!r})"
        if prefix not in local.dirs:
            return None  # missing: nothing below it either
    if path in local.own or any(_below(own, {path}) for own in local.own):
        return path, _OWN if path in local.own else f"holds {_OWN.removeprefix('is ')}"
    if path in local.dirs:
        return path, f"is a folder, where the dataset has the file {path!r}"
    if path in local.others:
        return path, local.others[path]
    return None


def _differing(
    root: Path, candidates: Sequence[tuple[FileEntry, os.stat_result]], cache: HashCache | None
) -> list[FileEntry]:
    """The entries whose file in ``root`` (of the right size) holds other bytes: digests
    from the hash cache where it vouches for them, else hashed (and remembered)."""
    if not candidates:
        return []
    # Keyed as scan_folder keys the cache (os.scandir's paths), so `data add` of the
    # folder finds these digests too.
    base = os.fspath(root.resolve())
    stats = {f"{base}/{e.path}": FileStat.of(st) for e, st in candidates}
    known = cache.lookup(list(stats.items())) if cache is not None else {}
    started_ns = time.time_ns()
    to_hash = [f"{base}/{e.path}" for e, _ in candidates]
    to_hash = [p for p in to_hash if p not in known]
    with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="checkout-hash") as pool:
        hashed = dict(zip(to_hash, pool.map(hash_file, to_hash), strict=True))
    if cache is not None:
        cache.record(
            (p, stats[p], digest)
            for p, digest in hashed.items()
            if not stats[p].is_racy(started_ns)
        )
    known.update(hashed)
    return [e for e, _ in candidates if known[f"{base}/{e.path}"] != e.digest]


def _remember(cache: HashCache | None, root: Path, written: Sequence[FileEntry]) -> None:
    """Put the digests of the files just written in the hash cache (those written long
    enough ago to trust their mtime), so that adding or checking out the folder again does
    not hash them."""
    if cache is None or not written:
        return
    base = os.fspath(root.resolve())
    now_ns = time.time_ns()
    rows = []
    for entry in written:
        path = f"{base}/{entry.path}"
        with contextlib.suppress(OSError):
            st = FileStat.of(os.stat(path, follow_symlinks=False))  # noqa: PTH116
            if st.size == entry.size and not st.is_racy(now_ns):
                rows.append((path, st, entry.digest))
    cache.record(rows)


def _remove(path: Path) -> None:
    """Remove a file, a link (not what it points to) or a folder (links inside it are
    removed, never followed)."""
    if path.is_dir() and not path.is_symlink():
        _remove_tree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


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
