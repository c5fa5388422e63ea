"""An append-only local spool: framed records in segment files, one writer per segment.

The prediction log writes each answered request here before the answer is sent, so that a
process killed before its next batch (SIGKILL, the OOM killer) loses nothing it answered:
the bytes written are in the page cache, which outlives the process. (Power loss is
another matter: an ``fsync`` per record would cost most of a request.)

A segment's blocks are allocated in full when it is made (``posix_fallocate``) and the file
is mapped (``mmap``, shared): a record is a copy into the page cache, not a ``write()``,
which cost ~6 us of a model server's request (a system call, and the GIL given up and
taken back). Writes stay inside the allocated, mapped length, so no page is ever without
its blocks (a full disk fails the allocation, when the segment is made, never a write). A
file system that cannot allocate or map a file gets ``pwrite``, as does a record longer
than a segment. The unwritten rest of a segment reads as zeros, which end its records.

A segment file starts with :data:`MAGIC`; each record is framed as its payload's length and
CRC-32 (``<II``, little endian) then the payload, so a record cut off by a kill in the
middle of its write - the torn tail - is told from a whole one and ignored. The live owner
of a segment holds ``flock(LOCK_EX)`` on it for as long as it may still write or flush it;
a segment whose lock can be taken belongs to a process that is gone: an orphan, which
another spool of the folder takes (:meth:`Spool.orphans`) to replay it.

A :class:`Spool` is not thread-safe: its user serialises :meth:`Spool.append` (the
prediction log does, under the lock that also keeps its queue in the spool's order).

Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> spool = Spool(folder)
    >>> seg, end = spool.append(b"hello")
    >>> [payload for _, payload in read_records(seg.path, len(MAGIC))]
    [b'hello']
    >>> spool.close()  # not stored yet: the segment is left for a replay
    []
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import mmap
import os
import secrets
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

#: The first bytes of every segment file (the format's version is its last character).
MAGIC = b"LLSPOOL1"
#: A record's frame: the payload's length and its CRC-32.
FRAME = struct.Struct("<II")
#: A segment's size, allocated when it is made: the next record that does not fit goes to a
#: new segment.
SEGMENT_BYTES = 16 * 1024 * 1024
SUFFIX = ".seg"


def store_folder(spool_root: Path, metadata_uri: str, artifacts_uri: str) -> Path:
    """The spool folder of one store under ``spool_root``: a replayed record must go to the
    store it was logged for, and one home may be used with several stores. Named by a
    hash of the store's URIs (their displayed form, without a password).

    Example:
        >>> store_folder(Path("/s"), "sqlite:///a.db", "/art").parent
        PosixPath('/s')
    """
    from loopline.config import display_uri

    key = f"{display_uri(metadata_uri)}\n{display_uri(artifacts_uri)}".encode()
    return spool_root / hashlib.blake2b(key, digest_size=8).hexdigest()


class Segment:
    """One open segment file, locked: its ``name`` (the key of its flush mark), ``size``
    (bytes written, header included), ``flushed`` (bytes whose records are stored) and
    ``mapped`` (its allocated length, mapped: None where records are written with pwrite)."""

    __slots__ = ("fd", "flushed", "mapped", "name", "path", "size")

    def __init__(self, path: Path, fd: int, size: int, mapped: mmap.mmap | None = None) -> None:
        self.path, self.name, self.fd, self.size = path, path.name, fd, size
        self.flushed = len(MAGIC)
        self.mapped = mapped

    def done(self) -> bool:
        """Every record of the segment is stored.

        Example:
            >>> # seg.done()  -> True once the flush mark reached the segment's end
        """
        return self.flushed >= self.size

    def close(self, *, delete: bool) -> None:
        """Release the segment (its lock with it); ``delete``: unlink it first, while the
        lock still keeps any other process off it.

        Example:
            >>> # seg.close(delete=True)
        """
        try:
            if delete:
                self.path.unlink(missing_ok=True)
        finally:
            if self.mapped is not None:
                self.mapped.close()  # what was copied in stays in the page cache
            os.close(self.fd)


def _lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _create(folder: Path, name: str, size: int) -> Segment:
    path = folder / name
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        # Nobody else knows the name yet: the lock is ours before anyone can look.
        fcntl.flock(fd, fcntl.LOCK_EX)
        mapped = _allocate(fd, size)
        os.pwrite(fd, MAGIC, 0)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    return Segment(path, fd, len(MAGIC), mapped)


def _allocate(fd: int, size: int) -> mmap.mmap | None:
    """Allocate ``size`` bytes of the file and map them; None where the file system cannot
    (its records are then written with pwrite). A full disk raises."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            return None
        raise
    try:
        return mmap.mmap(fd, size)
    except OSError:
        return None


def take_orphan(path: Path) -> Segment | None:
    """Open and lock ``path`` if no live process holds it (None: it is live, or gone).

    The file is checked to still be the one locked: a spool that replayed an orphan
    deletes it while holding its lock, and another that opened it just before would
    otherwise lock the deleted file and replay it again.

    Example:
        >>> take_orphan(Path("/nonexistent.seg")) is None
        True
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        if _lock(fd) and _same_file(path, fd):
            return Segment(path, fd, os.fstat(fd).st_size)
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return None


def _same_file(path: Path, fd: int) -> bool:
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def read_records(path: Path, start: int) -> Iterator[tuple[int, bytes]]:
    """``(end offset, payload)`` of each whole record of the segment at ``path`` from
    byte ``start`` on; stops at the first that is cut off or fails its CRC (the torn
    tail of a writer killed in the middle of a write), or at a file that is no segment.

    Example:
        >>> # [end for end, _ in read_records(seg.path, seg.flushed)]
    """
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        return
    pos = max(start, len(MAGIC))
    while pos + FRAME.size <= len(data):
        length, crc = FRAME.unpack_from(data, pos)
        end = pos + FRAME.size + length
        payload = data[pos + FRAME.size : end]
        if length == 0 or end > len(data) or zlib.crc32(payload) != crc:
            return
        yield end, payload
        pos = end


class Spool:
    """The segments one writer appends to, in ``folder``: a new one past ``max_bytes``;
    the earlier ones (``retired``) stay locked until their records are stored.

    Example:
        >>> # spool = Spool(Path(".loopline/spool/predictions/ab12")); spool.append(b"x")
    """

    def __init__(self, folder: Path, max_bytes: int = SEGMENT_BYTES) -> None:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.folder = folder
        self.max_bytes = max_bytes
        self._token = f"{os.getpid()}-{secrets.token_hex(8)}"
        self._count = 0
        self.retired: list[Segment] = []
        self.current = self._next()

    def _next(self) -> Segment:
        self._count += 1
        return _create(self.folder, f"{self._token}-{self._count:06d}{SUFFIX}", self.max_bytes)

    def append(self, *parts: bytes) -> tuple[Segment, int]:
        """Write one record, the concatenation of ``parts`` (one ``pwrite`` of the frame
        and the parts joined, no fsync); return its segment and end offset.

        A write that fails or falls short (a full disk) is undone - the segment cut back
        to where the record began, so no torn record sits before later ones - and raises.

        Example:
            >>> # seg, end = spool.append(header, body, answer)
        """
        seg = self.current
        # One join and one CRC over it: a third of the cost of a CRC per part (~0.3 us
        # against ~0.9 us a record); the bytes are the same.
        payload = b"".join(parts)
        data = FRAME.pack(len(payload), zlib.crc32(payload)) + payload
        if seg.size + len(data) > self.max_bytes and seg.size > len(MAGIC):
            seg = self._rotate()
        start = seg.size
        end = start + len(data)
        mapped = seg.mapped
        if mapped is not None and end <= len(mapped):
            mapped[start:end] = data
        else:
            self._write(seg, data, start)
        seg.size = end
        return seg, end

    def _write(self, seg: Segment, data: bytes, start: int) -> None:
        """pwrite ``data`` at ``start``; one that fails or falls short is undone (or, where
        it cannot be, the segment written no more) and raises."""
        try:
            written = os.pwrite(seg.fd, data, start)
            if written != len(data):
                raise OSError(f"wrote {written} of {len(data)} bytes to {seg.path}")
        except OSError:
            if seg.mapped is not None:
                # Never cut back: shorter than its mapping, a copy into the part past its
                # end would kill the process (SIGBUS). Written no more instead.
                self._rotate()
                raise
            try:
                os.ftruncate(seg.fd, start)
            except OSError:  # the segment may now hold a torn record: write no more to it
                self._rotate()
            raise

    def _rotate(self) -> Segment:
        fresh = self._next()
        self.retired.append(self.current)
        self.current = fresh
        return fresh

    def release_done(self) -> list[Segment]:
        """Delete the retired segments whose records are all stored; return them (their
        flush marks can go too).

        Example:
            >>> # for seg in spool.release_done(): forget_mark(seg.name)
        """
        done = [s for s in self.retired if s.done()]
        for seg in done:
            self.retired.remove(seg)
            seg.close(delete=True)
        return done

    def orphans(self) -> Iterator[Segment]:
        """The segments of the folder that no live process holds, each locked while the
        caller replays it (then it calls :meth:`Segment.close`).

        Example:
            >>> # for seg in spool.orphans(): replay(seg); seg.close(delete=True)
        """
        mine = {s.name for s in (self.current, *self.retired)}
        for path in sorted(self.folder.glob(f"*{SUFFIX}")):
            if path.name in mine:
                continue
            seg = take_orphan(path)
            if seg is not None:
                yield seg

    def close(self, *, delete_done: bool = True) -> list[Segment]:
        """Release every segment: the ones whose records are all stored are deleted (and
        returned), the others left for a later spool to replay.

        Example:
            >>> # spool.close()
        """
        done = []
        for seg in (*self.retired, self.current):
            gone = delete_done and seg.done()
            seg.close(delete=gone)
            if gone:
                done.append(seg)
        self.retired = []
        return done
