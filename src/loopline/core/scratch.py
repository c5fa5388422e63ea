"""Temp files whose writer is certainly gone, found and removed.

A killed ``loopline data add`` (SIGKILL, OOM, a power cut) leaves its copies in the
artifact store's ``tmp/`` and its scratch folder in ``LOOPLINE_HOME/tmp``: as much as it had
copied, and nothing removed them. Age cannot tell them from the files of a slow add that is
still writing, and a pid can be reused or belong to another host sharing the folder. So:

* a writer (a process) names every temp file it makes in a folder ``<token>.<anything>``,
  where ``token`` is ``w<pid>-<8 hex>``, new for each process;
* before its first one it creates ``<token>.lock`` in the same folder and holds an
  exclusive ``flock`` on it until its last temp file there is renamed or removed
  (:func:`writing`), then removes the lock file. The kernel drops the lock when the
  process ends, however it ends, SIGKILL included;
* :func:`sweep` takes each token's lock without waiting. Only if it gets it is the writer
  gone: it removes the token's files, then the lock file (still holding the lock). A lock
  it cannot take belongs to a live writer, whose files are never touched.

The writer checks, once it holds its lock, that the lock file is still the one at that path:
a sweep that took the new, not yet locked file in between has removed it, and the writer
starts again with a new token. A token's temp files exist only while its lock file does, so
temp files whose lock file is missing have no writer either.

Names that are not ``<token>.…`` (an earlier version's temp files, anything else) are
counted as ``unknown`` and never removed.

Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> with writing(folder):
    ...     (folder / temp_name(folder)).write_bytes(b"partial") and sweep(folder).live
    1
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import shutil
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

_TOKEN = re.compile(r"^(w\d+-[0-9a-f]{8})\.(.+)$")
LOCK_SUFFIX = "lock"


@dataclass
class _Lock:
    token: str
    fd: int
    path: Path
    users: int = 0


_held: dict[tuple[int, str], _Lock] = {}  # (pid, folder) -> the lock this process holds there
_mutex = threading.Lock()


@dataclass
class Sweep:
    """What :func:`sweep` found in one folder."""

    folder: Path
    removed: int = 0  # temp files and folders of writers that are gone, now removed
    removed_bytes: int = 0
    live: int = 0  # temp files of writers still running (kept)
    unknown: list[str] = field(default_factory=list)  # other names (kept)
    unknown_bytes: int = 0


@contextlib.contextmanager
def writing(folder: Path) -> Iterator[str]:
    """Hold this process's writer lock in ``folder`` (made if missing) for the block; yield
    the token its temp names start with. Blocks nest and may run on several threads: the
    lock is taken by the first and its file removed when the last ends, so every temp file
    made in the block must be renamed or removed by then.

    Example:
        >>> import tempfile
        >>> with writing(Path(tempfile.mkdtemp())) as token:
        ...     token.startswith(f"w{os.getpid()}-")
        True
    """
    key = (os.getpid(), str(folder))
    with _mutex:
        held = _held.get(key)
        if held is None:
            folder.mkdir(parents=True, exist_ok=True)
            held = _held[key] = _lock_new_token(folder)
        held.users += 1
    try:
        yield held.token
    finally:
        with _mutex:
            held.users -= 1
            if held.users == 0:
                del _held[key]
                _release(held)


def _lock_new_token(folder: Path) -> _Lock:
    while True:
        token = f"w{os.getpid()}-{secrets.token_hex(4)}"
        path = folder / f"{token}.{LOCK_SUFFIX}"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            mine = path.stat().st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            mine = False  # a sweep took it before we locked it, and removed it
        if mine:
            return _Lock(token, fd, path)
        os.close(fd)


def _release(held: _Lock) -> None:
    """Remove the lock file while still holding it (a sweep waits), then let it go."""
    try:
        with contextlib.suppress(FileNotFoundError):
            held.path.unlink()
    finally:
        os.close(held.fd)


def temp_name(folder: Path, suffix: str = "") -> str:
    """A new temp name in ``folder``, inside a :func:`writing` block of this process: a sweep
    leaves it alone until the block ends.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> with writing(folder):
        ...     temp_name(folder, "-register").endswith("-register")
        True
    """
    held = _held.get((os.getpid(), str(folder)))
    if held is None:
        raise RuntimeError(f"temp_name({folder}) outside a writing() block")
    return f"{held.token}.{uuid.uuid4().hex}{suffix}"


def _size(path: Path) -> int:
    try:
        if path.is_dir() and not path.is_symlink():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        return path.lstat().st_size
    except OSError:
        return 0


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _writer_gone(lock: Path) -> int | None:
    """The fd of ``lock`` with its flock taken (the writer is gone), -1 when there is no
    lock file (no writer either), None when a live writer holds it."""
    try:
        fd = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        return -1
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def sweep(folder: Path, keep: tuple[str, ...] = ()) -> Sweep:
    """Remove the temp files in ``folder`` whose writer has exited; count the rest.

    Names in ``keep`` (folders other code uses there) are neither removed nor counted.
    Costs a listing of the folder and one open + flock per token: cheap enough to run at
    the start of every ``data add``.

    Example:
        >>> import tempfile
        >>> sweep(Path(tempfile.mkdtemp())).removed
        0
    """
    found = Sweep(folder)
    try:
        names = [p.name for p in folder.iterdir()]
    except (FileNotFoundError, NotADirectoryError):
        return found
    tokens: dict[str, list[str]] = {}
    for name in names:
        if name in keep:
            continue
        match = _TOKEN.match(name)
        if match is None:
            found.unknown.append(name)
            found.unknown_bytes += _size(folder / name)
        elif match.group(2) != LOCK_SUFFIX:
            tokens.setdefault(match.group(1), []).append(name)
        else:
            tokens.setdefault(match.group(1), [])
    for token, members in sorted(tokens.items()):
        lock = folder / f"{token}.{LOCK_SUFFIX}"
        fd = _writer_gone(lock)
        if fd is None:
            found.live += len(members)
            continue
        try:
            for name in members:
                path = folder / name
                found.removed_bytes += _size(path)
                _remove(path)
                found.removed += 1
            if fd >= 0:
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()  # last, still locked: see the module docstring
        finally:
            if fd >= 0:
                os.close(fd)
    found.unknown.sort()
    return found
