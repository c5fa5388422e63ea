"""The copy into the artifact store: direct (past the page cache), pipelined, buffered."""

from __future__ import annotations

import errno
import fcntl
import os
import resource
import subprocess
import sys
from pathlib import Path

import blake3
import pytest

import loopline.core.artifact_copy as artifact_copy
from loopline.core.artifact_copy import CHUNK, copy_hashing

SIZES = [0, 1, 4095, 4096, 4097, CHUNK - 1, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 12_345]


def _copy(tmp_path: Path, data: bytes, *, direct: bool = True) -> tuple[str, bytes]:
    src = tmp_path / "src"
    src.write_bytes(data)
    dest = tmp_path / "dest"
    with src.open("rb") as fin:
        digest, was_direct = copy_hashing(fin, dest, len(data))
    assert was_direct == direct
    return digest, dest.read_bytes()


@pytest.mark.parametrize("size", SIZES, ids=[str(s) for s in SIZES])
def test_the_copy_holds_exactly_the_bytes_its_digest_names(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    digest, copied = _copy(tmp_path, data)
    assert copied == data  # no padding left behind by the block-sized direct writes
    assert digest == blake3.blake3(data).hexdigest()


@pytest.mark.parametrize("size", [4097, 3 * CHUNK + 12_345], ids=["simple", "pipelined"])
def test_the_buffered_copy_gives_the_same_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    monkeypatch.setattr(artifact_copy, "_O_DIRECT", 0)  # as on a platform without O_DIRECT
    data = os.urandom(size)
    digest, copied = _copy(tmp_path, data, direct=False)
    assert copied == data
    assert digest == blake3.blake3(data).hexdigest()


@pytest.mark.parametrize("size", [4097, 3 * CHUNK + 12_345], ids=["simple", "pipelined"])
def test_a_refused_direct_write_falls_back_to_a_buffered_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    real_write = os.write
    refused: list[int] = []

    def write(fd: int, data: bytes | memoryview) -> int:
        direct = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT
        if direct and not refused:  # as a file system that opens O_DIRECT but refuses writes
            refused.append(fd)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    data = os.urandom(size)
    digest, copied = _copy(tmp_path, data, direct=False)
    assert refused
    assert copied == data
    assert digest == blake3.blake3(data).hexdigest()


_FULL = """
import sys
from pathlib import Path
from loopline.core.artifact_copy import copy_hashing
src, dest = Path(sys.argv[1]), Path(sys.argv[2])
try:
    with src.open("rb") as fin:
        copy_hashing(fin, dest, src.stat().st_size)
except OSError as exc:
    print(exc.errno)
"""


@pytest.mark.parametrize("size", [3 * 1024 * 1024, 3 * CHUNK], ids=["simple", "pipelined"])
def test_a_file_size_limit_is_an_error_not_a_short_copy(tmp_path: Path, size: int) -> None:
    src = tmp_path / "src"
    src.write_bytes(os.urandom(size))
    limit = 2 * 1024 * 1024

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    done = subprocess.run(
        [sys.executable, "-c", _FULL, str(src), str(tmp_path / "dest")],
        capture_output=True,
        text=True,
        preexec_fn=limit_file_size,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(errno.EFBIG)
