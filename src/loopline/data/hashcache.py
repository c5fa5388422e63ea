"""A local cache from a file's stat to its BLAKE3 digest, so unchanged files are not re-hashed.

An entry maps an absolute path to ``(size, mtime_ns, ctime_ns, inode)`` and the digest the
file had then. A lookup hits only when all four still match, so a file that was edited,
replaced (new inode), truncated or touched is hashed again. ``ctime`` is included because
tools that restore an old ``mtime`` after writing (``rsync -t``, ``touch -d``) still move it.

**Racy entries.** File timestamps come from a coarse kernel clock, so a file written twice
within one clock tick can keep the same ``mtime``. An entry is therefore recorded only when
the file's ``mtime`` is older than the moment hashing started by more than the clock can
lag: 20 ms, or 2 s when the ``mtime`` is a whole second (a file system with 1 s or 2 s
timestamps). A file written that recently is simply hashed again next time (git's "racily
clean" rule). The cache is only a cache: a damaged file is replaced by an empty one.

The cache lives in a SQLite file under ``LOOPLINE_HOME`` (``.loopline/hashcache.db``).

Example:
    >>> import tempfile, pathlib
    >>> cache = HashCache(pathlib.Path(tempfile.mkdtemp()) / "hashcache.db")
    >>> cache.lookup([]) == {}
    True
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

_RACY_NS = 20_000_000
_RACY_COARSE_NS = 2_000_000_000
_BATCH = 500


@dataclass(frozen=True)
class FileStat:
    """The parts of ``os.stat`` that say whether a file's bytes may have changed."""

    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileStat:
        """The key of a stat result.

        Example:
            >>> FileStat.of(os.stat(".")).size >= 0
            True
        """
        return cls(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)

    def is_racy(self, hashed_at_ns: int) -> bool:
        """Whether the file was written too close to ``hashed_at_ns`` to trust its mtime.

        Example:
            >>> FileStat(1, 10**9, 10**9, 1).is_racy(10**9 + 10**8)
            True
        """
        window = _RACY_COARSE_NS if self.mtime_ns % 1_000_000_000 == 0 else _RACY_NS
        return self.mtime_ns >= hashed_at_ns - window


_COLUMNS = ("path", "size", "mtime_ns", "ctime_ns", "inode", "digest")


class HashCache:
    """Stat-keyed digests in a small SQLite file; safe to share between threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._conn = self._open()
            except sqlite3.DatabaseError:
                # Damaged: it only holds what can be recomputed, so start afresh.
                for suffix in ("", "-wal", "-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        Path(f"{self.path}{suffix}").unlink()
                self._conn = self._open()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS hashes (path TEXT PRIMARY KEY, size INTEGER NOT NULL,"
            " mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, inode INTEGER NOT NULL,"
            " digest TEXT NOT NULL)"
        )
        conn.commit()
        columns = [row[1] for row in conn.execute("PRAGMA table_info(hashes)")]
        if columns != list(_COLUMNS):
            # Another program's (or another version's) table of that name: not ours to
            # read, and only a cache, so it is replaced like a damaged file.
            conn.close()
            raise sqlite3.DatabaseError(f"{self.path}: hashes has columns {columns}")
        return conn

    def lookup(self, items: Sequence[tuple[str, FileStat]]) -> dict[str, str]:
        """The cached digest of each ``(absolute path, stat)`` whose stat still matches.

        Example:
            >>> # cache.lookup([("/data/a.csv", FileStat.of(os.stat("/data/a.csv")))])
        """
        if not items:
            return {}
        wanted = dict(items)
        found: dict[str, str] = {}
        with self._lock:
            conn = self._connect()
            paths = list(wanted)
            for start in range(0, len(paths), _BATCH):
                chunk = paths[start : start + _BATCH]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    "SELECT path, size, mtime_ns, ctime_ns, inode, digest FROM hashes"
                    f" WHERE path IN ({marks})",
                    chunk,
                ).fetchall()
                for path, size, mtime_ns, ctime_ns, inode, digest in rows:
                    if wanted[path] == FileStat(size, mtime_ns, ctime_ns, inode):
                        found[path] = digest
        return found

    def record(self, entries: Iterable[tuple[str, FileStat, str]]) -> int:
        """Remember ``(absolute path, stat, digest)`` entries; return how many were written.

        Example:
            >>> # cache.record([("/data/a.csv", stat, digest)])
        """
        rows = [
            (path, st.size, st.mtime_ns, st.ctime_ns, st.inode, digest)
            for path, st, digest in entries
        ]
        if not rows:
            return 0
        with self._lock:
            conn = self._connect()
            conn.executemany("INSERT OR REPLACE INTO hashes VALUES (?, ?, ?, ?, ?, ?)", rows)
            conn.commit()
        return len(rows)

    def close(self) -> None:
        """Close the SQLite connection (a later call reopens it)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
