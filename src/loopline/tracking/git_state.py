"""The git state of the code a run starts from: commit, branch, and a hash of the diff.

Asking git costs milliseconds (two processes, and hashing ``git diff HEAD``); a script
that starts many runs asks once, then reuses the answer while nothing it depends on
changed. What it depends on: git's own files (HEAD, the index, the branch's ref,
``packed-refs``) and every tracked file of the work tree - ``git diff HEAD`` changes only
when one of them does (a commit, a checkout, ``git add``, an edit, a ``chmod``).
Untracked files are not in the diff.

Whether one of them changed is asked of the kernel (:mod:`loopline.tracking.file_events`,
one system call) where it can answer, and otherwise by comparing every file's size, times
and inode with what they were (one ``lstat`` each).

Example:
    >>> git_state("/") is None  # not a repository
    True
"""

from __future__ import annotations

import atexit
import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import blake3

from loopline.tracking.file_events import ChangeWatch

GIT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class GitState:
    """The state of the git work tree a run started in.

    Example:
        >>> # git_state().commit  -> '7f7efba8...'
    """

    root: str
    commit: str
    branch: str | None
    diff_blake3: str
    dirty: bool


def _git_output(args: list[str], cwd: str | None) -> bytes | None:
    """What ``git ARGS`` prints in ``cwd``; None when it fails, hangs or is not installed."""
    try:
        done = subprocess.run(
            ["git", "--no-optional-locks", *args],
            cwd=cwd,
            capture_output=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):  # no git, or a hung repository
        return None
    return done.stdout if done.returncode == 0 else None


def _git(args: list[str], cwd: str | None) -> str | None:
    out = _git_output(args, cwd)
    return None if out is None else out.decode("utf-8", "surrogateescape").strip()


def _diff_hash(cwd: str | None) -> str | None:
    """BLAKE3 of ``git diff HEAD --binary``, streamed (a diff may be large)."""
    hasher = blake3.blake3()
    try:
        proc = subprocess.Popen(
            [
                "git",
                "--no-optional-locks",
                "diff",
                "HEAD",
                "--binary",
                "--no-color",
                "--no-ext-diff",
            ],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
    except OSError:
        return None
    assert proc.stdout is not None
    with proc:
        while chunk := proc.stdout.read(1 << 20):
            hasher.update(chunk)
        try:
            code = proc.wait(timeout=GIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            return None
    return hasher.hexdigest() if code == 0 else None


_PARENTS: dict[str, tuple[str, ...]] = {}


def _may_be_in_git(cwd: str | None) -> bool:
    """False when no folder from ``cwd`` up holds ``.git``: git itself would find nothing.

    Saves starting a ``git`` process (milliseconds) for every run started outside a
    repository. Git's own variables that point elsewhere (``GIT_DIR``) defeat the check.
    """
    if "GIT_DIR" in os.environ or "GIT_WORK_TREE" in os.environ:  # git's settings, not ours
        return True
    start = cwd or str(Path.cwd())
    folders = _PARENTS.get(start)
    if folders is None:  # resolving the path costs more than the checks; it does not change
        folder = Path(start).resolve()
        folders = _PARENTS[start] = tuple(str(d / ".git") for d in (folder, *folder.parents))
    return any(_stat_key(d) is not None for d in folders)


def _stat_key(path: str) -> tuple[int, int, int, int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)


@dataclass
class _Watch:
    """What :func:`git_state`'s answer for one folder depends on, and that answer.

    ``paths`` are git's own files and the tracked files, ``key`` their ``lstat`` results
    before git was asked (usable only when ``settled``: see :data:`RACY_S`), ``events``
    the kernel's watch on them, when there is one.
    """

    paths: tuple[str, ...]
    key: tuple[tuple[int, int, int, int] | None, ...]
    settled: bool
    state: GitState
    events: ChangeWatch | None

    def still_valid(self) -> bool:
        if self.events is not None:
            return not self.events.changed()
        return self.settled and self.key == tuple(_stat_key(p) for p in self.paths)

    def stop_events(self) -> None:
        if self.events is not None:
            self.events.close()
            self.events = None


#: The last git state per folder, reused while nothing it depends on changed.
_WATCHES: dict[str, _Watch] = {}
#: One answer at a time: a run start in another thread waits rather than asking git twice.
_LOCK = threading.Lock()


def _after_fork_in_child() -> None:
    # A thread of the parent may have held the lock at the fork: the child's only thread
    # would wait for it for ever. The child starts with a free one (and, since the kernel's
    # watch is the parent's, asks git again: ChangeWatch.changed says so in a child).
    global _LOCK
    _LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _stop_watching() -> None:
    """Close the kernel's watch at exit (else its descriptor is collected unclosed)."""
    for watch in list(_WATCHES.values()):
        watch.stop_events()


#: A git state is not reused, by comparing ``lstat`` results, while any file it depends on
#: changed less than this ago (s): "racy git", a change within the file system's clock tick
#: keeps the file's times. The kernel's watch has no such blind spot.
RACY_S = 2.0
#: Above this many tracked files, stat-ing them all is not worth it: ask git each time.
_MAX_WATCHED_FILES = 50_000
#: Whether to ask the kernel to watch files (False: compare ``lstat`` results; tests).
USE_FILE_EVENTS = True


def git_state(cwd: str | None = None) -> GitState | None:
    """The git commit, branch and uncommitted-diff hash of ``cwd``, or None outside git.

    The answer is kept per folder and reused while git's files and every tracked file are
    unchanged - so an edit between two runs of one process is seen. Only the most recently
    asked folder is watched by the kernel (one inotify descriptor per process); another
    folder's answer is checked with ``lstat``.

    Example:
        >>> state = git_state("/")  # not a repository
        >>> state is None
        True
    """
    if not _may_be_in_git(cwd):
        return None
    folder = cwd or str(Path.cwd())
    with _LOCK:
        watch = _WATCHES.get(folder)
        if watch is not None and watch.still_valid():
            return watch.state
        if watch is not None:
            watch.stop_events()
            del _WATCHES[folder]
        return _ask_git(cwd, folder)


def _ask_git(cwd: str | None, folder: str) -> GitState | None:
    out = _git(
        [
            "rev-parse",
            "--path-format=absolute",
            "--git-dir",
            "--git-common-dir",
            "--show-toplevel",
            "HEAD",
            "--abbrev-ref",
            "HEAD",
        ],
        cwd,
    )
    if out is None:
        return None
    lines = out.splitlines()
    if len(lines) != 5:
        return None
    git_dir, common_dir, root, commit, branch = lines
    # Stat-ed, and watched, before git is asked: a change while it answers is seen next time.
    # Plain strings (git prints "/"-separated paths).
    meta = (
        f"{git_dir}/HEAD",
        f"{git_dir}/index",
        f"{common_dir}/packed-refs",
        *([f"{common_dir}/refs/heads/{branch}"] if branch != "HEAD" else []),
    )
    meta_key = tuple(_stat_key(p) for p in meta)
    files = _tracked_files(root)
    files_key = tuple(_stat_key(p) for p in files or ())
    events = None
    if files is not None and USE_FILE_EVENTS:
        for other in _WATCHES.values():  # one descriptor per process
            other.stop_events()
        events = ChangeWatch.start((*meta, *files), root)
    diff = _diff_hash(cwd)
    if diff is None:
        if events is not None:
            events.close()
        return None
    empty = blake3.blake3(b"").hexdigest()
    state = GitState(
        root=root,
        commit=commit,
        branch=None if branch == "HEAD" else branch,
        diff_blake3=diff,
        dirty=diff != empty,
    )
    key = meta_key + files_key
    racy = time.time_ns() - int(RACY_S * 1e9)
    settled = all(k is None or max(k[0], k[1]) < racy for k in key)
    # git may rewrite its index while answering (refreshing file times): then the next
    # call asks again, and keeps that answer.
    steady = files is not None and meta_key == tuple(_stat_key(p) for p in meta)
    if events is not None and (not steady or events.changed()):
        events.close()
        events = None
    elif events is not None or (steady and settled):
        _WATCHES[folder] = _Watch((*meta, *(files or ())), key, settled, state, events)
    return state


def _tracked_files(root: str) -> tuple[str, ...] | None:
    """Absolute paths of every file git tracks (None: too many, or git failed)."""
    out = _git_output(["ls-files", "-z", "--full-name"], root)
    if out is None:
        return None
    names = [n for n in out.decode("utf-8", "surrogateescape").split("\0") if n]
    if len(names) > _MAX_WATCHED_FILES:
        return None
    return tuple(f"{root}/{n}" for n in names)
