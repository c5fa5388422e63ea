"""The prediction log's spool: framed records, a torn tail ignored, a live segment never
taken, rotation and deletion."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from loopline.monitoring.spool import (
    FRAME,
    MAGIC,
    SEGMENT_BYTES,
    Spool,
    read_records,
    take_orphan,
)
from tests.cli_run import popen


def _payloads(path: Path) -> list[bytes]:
    return [p for _, p in read_records(path, len(MAGIC))]


def test_a_torn_last_record_is_ignored(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(b"first")
    seg, end = spool.append(b"sec", b"ond")  # parts are one record
    path = seg.path
    whole = path.read_bytes()
    # The segment is allocated in full: past the records, zeros (the end of its records).
    assert len(whole) == SEGMENT_BYTES and whole[end:] == bytes(SEGMENT_BYTES - end)
    assert seg.mapped is not None  # records are copied into the mapped file
    torn = FRAME.pack(100, 0) + b"x" * 40  # a writer killed 40 bytes into a 100-byte record
    seg.mapped[end : end + len(torn)] = torn
    assert _payloads(path) == [b"first", b"second"]
    # A whole-length record whose bytes are not what was written: its CRC fails.
    path.write_bytes(whole[: end - 1] + b"X")
    assert _payloads(path) == [b"first"]
    assert [e for e, _ in read_records(path, len(MAGIC))] == [len(MAGIC) + FRAME.size + 5]
    spool.close(delete_done=False)


def test_the_segments_of_live_spools_are_never_taken(tmp_path: Path) -> None:
    """Two spools in one process, and one in another process: none takes another's
    segment while it lives; the other process's is an orphan once it is killed."""
    one, two = Spool(tmp_path), Spool(tmp_path)
    one.append(b"a")
    two.append(b"b")
    assert list(one.orphans()) == [] and list(two.orphans()) == []
    assert take_orphan(one.current.path) is None
    script = textwrap.dedent(
        """
        import sys, time
        from pathlib import Path
        from loopline.monitoring.spool import Spool
        spool = Spool(Path(sys.argv[1]))
        spool.append(b"theirs")
        print(spool.current.name, flush=True)
        time.sleep(60)
        """
    )
    proc = popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        theirs = proc.stdout.readline().strip()
        assert (tmp_path / theirs).exists()
        assert list(one.orphans()) == []  # alive: its lock holds
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    taken = list(one.orphans())
    assert [s.name for s in taken] == [theirs]
    assert _payloads(taken[0].path) == [b"theirs"]
    assert list(two.orphans()) == []  # held by the first while it replays
    taken[0].close(delete=True)
    assert not (tmp_path / theirs).exists()
    one.close(delete_done=False)
    two.close(delete_done=False)


def test_segments_rotate_and_go_once_written_in_full(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=100)
    ends = [spool.append(b"r" * 30) for _ in range(5)]
    segments = list(dict.fromkeys(seg for seg, _ in ends))
    assert len(segments) == 3  # two records of 38 bytes after the 8-byte header, per 100
    assert [len(_payloads(s.path)) for s in segments] == [2, 2, 1]
    assert spool.release_done() == []  # nothing stored yet
    first = segments[0]
    first.flushed = first.size
    assert spool.release_done() == [first] and not first.path.exists()
    last = spool.current
    assert spool.close() == [] and last.path.exists()  # not written in full: left for replay
    assert sorted(p.name for p in tmp_path.glob("*.seg")) == sorted(s.name for s in segments[1:])


def test_a_record_longer_than_a_segment_is_written_to_a_new_one(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=100)
    spool.append(b"small")
    seg, end = spool.append(b"L" * 300)  # past the mapped length: written with pwrite
    assert seg is spool.current and end == len(MAGIC) + FRAME.size + 300
    after, _ = spool.append(b"next")
    assert after is not seg  # nothing fits after it
    assert _payloads(seg.path) == [b"L" * 300] and _payloads(after.path) == [b"next"]
    spool.close(delete_done=False)


def test_a_file_system_that_cannot_allocate_gets_pwrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No file system here refuses fallocate: the refusal is simulated.
    def refuse(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(os, "posix_fallocate", refuse)
    spool = Spool(tmp_path)
    seg, end = spool.append(b"one")
    spool.append(b"two")
    assert seg.mapped is None and seg.path.stat().st_size == end + FRAME.size + 3
    assert _payloads(seg.path) == [b"one", b"two"]
    spool.close(delete_done=False)


def test_a_full_disk_fails_when_a_segment_is_made_never_in_a_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path, max_bytes=100)
    spool.append(b"r" * 60)

    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(OSError, match="No space"):
        spool.append(b"r" * 60)  # needs a new segment, which cannot be allocated
    assert [p.name for p in tmp_path.glob("*.seg")] == [spool.current.name]  # none half-made
    assert _payloads(spool.current.path) == [b"r" * 60]
    spool.close(delete_done=False)
