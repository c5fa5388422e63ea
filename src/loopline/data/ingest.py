"""Bring files into the artifact store: read each new file once, skip what is known.

For each file: its digest comes from the :class:`~loopline.data.hashcache.HashCache` when its
stat is unchanged, and then the file is not even read when the store already holds that
digest. Any other file is read exactly once: the store copies it to a temporary file and
hashes the bytes in the same pass (BLAKE3 and file I/O release the GIL, so a thread pool
keeps every core busy); when the digest turns out to be stored already, the copy is
dropped. A file whose stat after the copy differs from its stat at scan time changed while
it was being read: an :class:`InvalidInput` naming it, and nothing is kept.

All the copies of one ingest form one artifact batch (:meth:`ArtifactStore.batch`): each
new copy is fsynced as soon as it is made, and at the end they are renamed into place with
one fsync per object folder, before :func:`ingest` returns, so the caller's metadata
transaction only ever names durable objects.

Example:
    >>> import tempfile, pathlib
    >>> from loopline.core.artifacts import open_artifact_store
    >>> root = pathlib.Path(tempfile.mkdtemp()); _ = (root / "a.txt").write_text("hi")
    >>> cache = HashCache(root / "cache" / "hashes.db")
    >>> files = scan_folder(root, skip=[root / "cache"])
    >>> entries, report = ingest(files, open_artifact_store(tempfile.mkdtemp()), cache)
    >>> [e.path for e in entries], report.hashed
    (['a.txt'], 1)
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from loopline.core.artifacts import ArtifactBatch, ArtifactStore
from loopline.data.hashcache import FileStat, HashCache
from loopline.errors import InvalidInput

if TYPE_CHECKING:
    from concurrent.futures import Future

#: ``progress(bytes_done, bytes_total)``, called from the calling thread.
ProgressFn = Callable[[int, int], None]

# Threads, not cores: BLAKE3 and file I/O release the GIL, and I/O waits overlap.
WORKERS = min(16, 4 * (os.cpu_count() or 2))

#: The file naming the version a materialized folder (``DatasetVersion.path``) holds.
#: A copy of such a folder added again carries it: it is Loopline's, not the data's.
CHECKOUT_MARKER = ".loopline-version"
_HASH_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class FileEntry:
    """One row of a dataset manifest: a relative POSIX path, its digest and size."""

    path: str
    digest: str
    size: int


def manifest_bytes(entries: Sequence[FileEntry]) -> bytes:
    """The canonical JSON of a manifest (entries sorted by path); its BLAKE3 digest is the
    version hash.

    Example:
        >>> manifest_bytes([FileEntry("a", "0" * 64, 1)])[:20]
        b'[{"digest":"00000000'
    """
    rows = [{"path": e.path, "digest": e.digest, "size": e.size} for e in entries]
    return orjson.dumps(rows, option=orjson.OPT_SORT_KEYS)


@dataclass(frozen=True)
class SourceFile:
    """A file to ingest: where it is (absolute), the path it gets in the dataset, its stat at
    scan time."""

    # A string, not a Path: building a Path per file costs a re-add of a large folder more
    # than its stat call.
    location: str
    rel_path: str
    stat: FileStat
    cacheable: bool = True

    @property
    def abs_path(self) -> Path:
        """Where the file is, as a Path."""
        return Path(self.location)


@dataclass
class IngestReport:
    """What one ingest did; ``hashed`` and ``stored`` are 0 when nothing changed."""

    files: int = 0
    bytes: int = 0
    hashed: int = 0
    cached: int = 0
    stored: int = 0
    already_stored: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The report as a plain dict (for JSON).

        Example:
            >>> IngestReport(files=1).to_dict()["files"]
            1
        """
        return asdict(self)


def _stat(path: str | Path, field: str) -> os.stat_result:
    try:
        return os.stat(path)  # noqa: PTH116 - paths are strings here (see SourceFile)
    except PermissionError as exc:
        raise InvalidInput(
            f"cannot read {path}: permission denied", field=field, hint="fix its permissions"
        ) from exc
    except OSError as exc:
        # A link to a missing file (or a loop of links) fails like a file that vanished,
        # but it is a fault in the folder, not a race with whoever changes it.
        if os.path.islink(path):  # noqa: PTH114 - a string path, as above
            raise InvalidInput(
                f"{path} is a broken symbolic link (to {os.readlink(path)!r})",  # noqa: PTH115
                field=field,
                hint="remove the link or point it at an existing file, then add again",
            ) from exc
        if not isinstance(exc, FileNotFoundError):
            raise
        raise InvalidInput(
            f"{path} disappeared while the dataset was being added",
            field=field,
            hint="add it again once the folder is no longer being changed",
        ) from exc


def single_file(path: Path, rel_path: str, *, cacheable: bool = True) -> SourceFile:
    """Describe one file to ingest under the name ``rel_path`` (``cacheable=False`` for a
    temporary file, whose digest is not worth remembering).

    Example:
        >>> # single_file(Path("train.parquet"), "data.parquet")
    """
    st = _stat(path, "source")
    return SourceFile(os.fspath(path.resolve()), rel_path, FileStat.of(st), cacheable)


def scan_folder(root: Path, *, skip: Sequence[Path] = ()) -> list[SourceFile]:
    """Every regular file below ``root`` (symlinks to files followed), sorted by path.

    Folders in ``skip`` are not entered (Loopline's own home and artifact folders, so that
    registering ``.`` does not swallow the store), nor is a checkout's marker at the top
    (:data:`CHECKOUT_MARKER`, when it holds a version hash: a copied checkout added again is
    its data, not Loopline's bookkeeping); symlinks to folders are not followed. A folder
    that cannot be read, or a name with no UTF-8 form, is an :class:`InvalidInput` naming
    it, not a silent gap.

    Example:
        >>> # scan_folder(Path("images/"))[0].rel_path  -> 'cats/001.jpg'
    """
    skipped = {os.fspath(p.resolve()) for p in skip}
    found: list[SourceFile] = []
    # One stat per file and plain strings: on a re-add this scan is most of the work.
    pending = [(os.fspath(root.resolve()), "")]
    while pending:
        folder, prefix = pending.pop()
        for entry in _entries(folder):
            name = entry.name
            if not name.isascii():
                _check_name(entry.path)
            if entry.is_dir(follow_symlinks=False):
                if entry.path not in skipped:
                    pending.append((entry.path, f"{prefix}{name}/"))
                continue
            if not prefix and name == CHECKOUT_MARKER and is_marker(entry.path):
                continue
            st = _stat(entry.path, "source")
            if stat.S_ISREG(st.st_mode):
                found.append(SourceFile(entry.path, prefix + name, FileStat.of(st)))
    found.sort(key=lambda f: f.rel_path)
    return found


def _check_name(path: str) -> None:
    """Refuse a file name with no UTF-8 form (bytes of another encoding, as old zip and tar
    archives write them): no manifest or database can hold it."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(
            f"the name of {path!r} is not valid UTF-8 (byte {path[exc.start]!r})",
            field="source",
            hint="rename the file to a UTF-8 name (e.g. convmv -f latin1 -t utf8)",
        ) from exc


def is_marker(path: str) -> bool:
    """Whether ``path`` is a checkout marker (a version hash), not a file of the data.

    Example:
        >>> is_marker("no/such/file")
        False
    """
    try:
        with open(path, "rb") as f:
            text = f.read(65)
    except OSError:
        return False
    return len(text) == 64 and set(text.decode("latin-1")) <= _HASH_HEX


def _entries(folder: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            return list(it)
    except FileNotFoundError as exc:
        raise InvalidInput(
            f"{folder} disappeared while the dataset was being added",
            field="source",
            hint="add it again once the folder is no longer being changed",
        ) from exc
    except PermissionError as exc:
        raise InvalidInput(
            f"cannot read the folder {folder}: permission denied",
            field="source",
            hint="fix its permissions",
        ) from exc


def known_entries(files: Sequence[SourceFile], known: dict[str, str]) -> list[FileEntry] | None:
    """The manifest entries of ``files`` (sorted by path) when ``known`` (see
    :func:`cached_digests`) has every file's digest, else None.

    Example:
        >>> # known_entries(files, cached_digests(files, cache))  -> None if any file changed
    """
    if len(known) != len(files):
        return None
    entries = [FileEntry(f.rel_path, known[f.rel_path], f.stat.size) for f in files]
    entries.sort(key=lambda e: e.path)
    return entries


def cached_digests(files: Sequence[SourceFile], cache: HashCache) -> dict[str, str]:
    """The digests the cache still vouches for, by relative path.

    Example:
        >>> # cached_digests(scan_folder(Path("images/")), cache)
    """
    hits = cache.lookup([(f.location, f.stat) for f in files if f.cacheable])
    return {f.rel_path: hits[f.location] for f in files if f.location in hits}


@dataclass
class _Outcome:
    digest: str
    hashed: bool
    stored: bool
    cache_entry: tuple[str, FileStat, str] | None


def _changed(path: str, what: str) -> InvalidInput:
    return InvalidInput(
        f"{path} changed while it was being {what}",
        field="source",
        hint="wait until nothing writes to it any more, then add the dataset again",
    )


def _ingest_one(
    f: SourceFile, digest: str | None, store: ArtifactStore, batch: ArtifactBatch
) -> _Outcome:
    if digest is not None and store.exists(digest):
        return _Outcome(digest, False, False, None)
    started_ns = time.time_ns()
    try:
        stored, new = batch.put_file(f.location)
    except FileNotFoundError:
        _stat(f.location, "source")  # raises the "disappeared" error
        raise
    except PermissionError as exc:
        raise InvalidInput(
            f"cannot read {f.location}: permission denied",
            field="source",
            hint="fix its permissions",
        ) from exc
    except InvalidInput as exc:
        raise _changed(f.location, "stored") from exc
    if FileStat.of(_stat(f.location, "source")) != f.stat:
        raise _changed(f.location, "stored")
    if digest is not None:  # known from the cache, but the store had lost the bytes
        if stored != digest:
            raise _changed(f.location, "stored")
        return _Outcome(digest, False, new, None)
    entry = None
    if f.cacheable and not f.stat.is_racy(started_ns):
        entry = (f.location, f.stat, stored)
    return _Outcome(stored, True, new, entry)


def ingest(
    files: Sequence[SourceFile],
    store: ArtifactStore,
    cache: HashCache,
    *,
    known: dict[str, str] | None = None,
    progress: ProgressFn | None = None,
    workers: int = WORKERS,
) -> tuple[list[FileEntry], IngestReport]:
    """Make sure every file is in ``store``; return the manifest entries and a report.

    ``known`` maps relative paths to digests already taken from the cache (see
    :func:`cached_digests`); the others are hashed. Entries come back sorted by path.

    Example:
        >>> # entries, report = ingest(scan_folder(Path("images/")), ctx.artifacts, cache)
    """
    # Imported here: the quick re-add (loopline.data.quick_readd) imports this module and
    # never copies, so it does not pay for concurrent.futures (and logging with it).
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

    started = time.perf_counter()
    known = cached_digests(files, cache) if known is None else known
    report = IngestReport(files=len(files), bytes=sum(f.stat.size for f in files))
    report.cached = sum(1 for f in files if f.rel_path in known)
    done_bytes = 0
    if progress is not None:
        progress(0, report.bytes)
    outcomes: dict[str, _Outcome] = {}
    with (
        store.batch() as batch,
        ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="ingest") as pool,
    ):
        futures: dict[Future[_Outcome], SourceFile] = {
            pool.submit(_ingest_one, f, known.get(f.rel_path), store, batch): f for f in files
        }
        pending: set[Future[_Outcome]] = set(futures)
        while pending:
            finished, pending = wait(pending, timeout=0.2, return_when=FIRST_EXCEPTION)
            for fut in finished:
                error = fut.exception()
                if error is not None:
                    for other in pending:
                        other.cancel()
                    raise error
                src = futures[fut]
                outcomes[src.rel_path] = fut.result()
                done_bytes += src.stat.size
            if progress is not None and finished:
                progress(done_bytes, report.bytes)
    cache.record(o.cache_entry for o in outcomes.values() if o.cache_entry is not None)
    entries = [FileEntry(f.rel_path, outcomes[f.rel_path].digest, f.stat.size) for f in files]
    entries.sort(key=lambda e: e.path)
    report.hashed = sum(1 for o in outcomes.values() if o.hashed)
    report.stored = sum(1 for o in outcomes.values() if o.stored)
    report.already_stored = len(outcomes) - report.stored
    report.seconds = time.perf_counter() - started
    return entries, report
