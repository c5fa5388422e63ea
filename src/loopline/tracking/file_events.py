"""Tell, with one system call, whether any of a set of files changed since a moment.

Checking that hundreds of files kept their size and times costs one ``lstat`` each at every
question (a millisecond for 500 files, tens for a large repository). Linux's inotify lets
the kernel note instead every change to the folders that hold them: a :class:`ChangeWatch`
registers those folders once, and :meth:`ChangeWatch.changed` then only asks whether the
kernel queued an event for one of the files since.

What it sees: a write, a truncation, a change of mode or times, a file created, deleted or
renamed in a watched folder, and a watched folder renamed or deleted (so each folder
between a file and the top folder is watched too: ``mv src lib`` is seen). A file with
several hard links is also watched itself, since a write through another name reaches the
inode but not this folder. What it does not see, and why the caller must fall back to
comparing ``lstat`` then: a write through a shared memory mapping (it raises no event), a
change made by another machine on a network file system (only this kernel's changes are
reported), and everything before :meth:`ChangeWatch.start`. So a watch starts only on a
local file system type, on Linux, for at most :data:`MAX_WATCHED_FOLDERS` folders, and says
"changed" for good after an overflow of the kernel's queue or in a forked child (which
shares the parent's queue: reading it would steal the parent's events).

Example:
    >>> import tempfile, pathlib
    >>> top = pathlib.Path(tempfile.mkdtemp())
    >>> (top / "a.py").write_text("x = 1")
    5
    >>> watch = ChangeWatch.start([str(top / "a.py")], str(top))
    >>> watch is None or not watch.changed()
    True
    >>> (top / "a.py").write_text("x = 2")
    5
    >>> watch is None or watch.changed()
    True
    >>> if watch is not None:
    ...     watch.close()
"""

from __future__ import annotations

import os
import stat
import sys
import threading
from collections.abc import Iterable
from pathlib import Path

try:  # Linux only; elsewhere every watch is refused and the caller compares times
    import inotify_simple
except ImportError:  # pragma: no cover - not Linux
    inotify_simple = None

#: The most folders one watch registers. Each costs the kernel about 1 KiB and counts
#: against the user's ``fs.inotify.max_user_watches``, shared with editors and IDEs.
MAX_WATCHED_FOLDERS = 4096

#: File systems whose every change this kernel makes, and so reports. Network and FUSE
#: file systems (nfs, cifs, fuse.sshfs, 9p...) also change under other machines.
LOCAL_FILE_SYSTEMS = frozenset(
    {
        "ext2",
        "ext3",
        "ext4",
        "xfs",
        "btrfs",
        "tmpfs",
        "overlay",
        "zfs",
        "f2fs",
        "bcachefs",
        "jfs",
        "nilfs2",
        "reiserfs",
    }
)

if inotify_simple is not None:
    _F = inotify_simple.flags
    _CHANGES = _F.MODIFY | _F.ATTRIB | _F.CREATE | _F.DELETE | _F.MOVED_FROM | _F.MOVED_TO
    _SELF = _F.DELETE_SELF | _F.MOVE_SELF | _F.UNMOUNT | _F.IGNORED | _F.Q_OVERFLOW
    _FOLDER_MASK = _CHANGES | _F.DELETE_SELF | _F.MOVE_SELF | _F.ONLYDIR
    _FILE_MASK = _F.MODIFY | _F.ATTRIB | _F.DELETE_SELF | _F.MOVE_SELF


def file_system_type(path: str) -> str | None:
    """The type of the file system ``path`` lies on (``ext4``, ``nfs4``...), None if unknown.

    Read from ``/proc/self/mountinfo``, matching the device number of ``path``.

    Example:
        >>> file_system_type("/proc")
        'proc'
    """
    try:
        device = Path(path).stat().st_dev
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as mounts:
            lines = mounts.read().splitlines()
    except OSError:
        return None
    wanted = f"{os.major(device)}:{os.minor(device)}"
    for line in lines:
        fields = line.split()
        # "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw" (proc(5))
        if len(fields) > 4 and fields[2] == wanted and "-" in fields:
            after = fields[fields.index("-") + 1 :]
            return after[0] if after else None
    return None


class ChangeWatch:
    """Whether a file, or a folder on the way to it, changed since :meth:`start`.

    Thread-safe; one inotify descriptor each (close it with :meth:`close`).

    Example:
        >>> ChangeWatch.start([], "/nonexistent") is None
        True
    """

    def __init__(self, notify: inotify_simple.INotify, names: dict[int, set[str]]) -> None:
        self._notify = notify
        self._names = names  # per watch descriptor, the names that matter; "" the inode
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._changed = False

    @classmethod
    def start(cls, files: Iterable[str], top: str) -> ChangeWatch | None:
        """Watch ``files`` (absolute paths); those under ``top`` through every folder up to it.

        None when no watch can be kept honestly: not Linux, a file system that is not local
        or not the same as ``top``'s, a missing folder, too many folders, or the kernel's
        limits on watches reached. The caller then compares ``lstat`` results instead.

        Example:
            >>> watch = ChangeWatch.start(["/etc/hostname"], "/etc")
            >>> watch is None or not watch.changed()
            True
            >>> if watch is not None:
            ...     watch.close()
        """
        if inotify_simple is None or sys.platform != "linux":
            return None
        folders = _folders_and_names(files, top)
        if folders is None or not folders or len(folders) > MAX_WATCHED_FOLDERS:
            return None
        try:
            device = Path(top).stat().st_dev
        except OSError:
            return None
        if file_system_type(top) not in LOCAL_FILE_SYSTEMS:
            return None
        try:
            notify = inotify_simple.INotify(nonblocking=True)
        except OSError:  # the user's inotify instances are all taken
            return None
        names: dict[int, set[str]] = {}
        try:
            for folder, wanted in folders.items():
                info = Path(folder).stat()
                if info.st_dev != device:  # another file system: its type is unknown
                    raise OSError(folder)
                names.setdefault(notify.add_watch(folder, _FOLDER_MASK), set()).update(wanted)
            for path in files:
                try:
                    info = os.lstat(path)
                except FileNotFoundError:  # a deleted tracked file: its folder is watched
                    continue
                if info.st_nlink > 1 and stat.S_ISREG(info.st_mode):
                    names.setdefault(notify.add_watch(path, _FILE_MASK), set()).add("")
        except OSError:  # a folder vanished, or fs.inotify.max_user_watches reached
            notify.close()
            return None
        return cls(notify, names)

    def changed(self) -> bool:
        """True once anything watched changed (and from then on), or in a forked child.

        Example:
            >>> ChangeWatch.start([], "/") is None
            True
        """
        if os.getpid() != self._pid:  # a forked child shares the queue: never read it
            return True
        with self._lock:
            if self._changed:
                return True
            try:
                events = self._notify.read(timeout=0)
            except (OSError, ValueError):  # closed, or the descriptor is gone
                self._changed = True
                return True
            for event in events:
                if event.mask & _SELF:
                    self._changed = True
                    break
                wanted = self._names.get(event.wd)
                if wanted is None or event.name in wanted or "" in wanted:
                    self._changed = True
                    break
            return self._changed

    def close(self) -> None:
        """Release the kernel's watches (in a forked child, only this process's copy).

        Example:
            >>> ChangeWatch.start([], "/") is None
            True
        """
        if os.getpid() != self._pid:  # the parent's lock may be held for ever here
            self._notify.close()
            return
        with self._lock:
            self._changed = True
            self._notify.close()


def _folders_and_names(files: Iterable[str], top: str) -> dict[str, set[str]] | None:
    """The folders to watch and, in each, the names whose change matters."""
    top = top.rstrip("/") or "/"
    folders: dict[str, set[str]] = {}
    for path in files:
        folder, name = os.path.split(path)
        if not folder or not name:
            return None
        while True:
            wanted = folders.setdefault(folder, set())
            if name in wanted:  # the rest of the way up is registered already
                break
            wanted.add(name)
            if folder == top or (not folder.startswith(top + "/") and top != "/"):
                break
            folder, name = os.path.split(folder)
            if not name:  # reached "/"
                break
    return folders
