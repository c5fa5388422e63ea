"""syncfs(2): used only where the kernel reports its failures, else the caller fsyncs."""

from __future__ import annotations

import ctypes
import errno
from collections.abc import Iterator
from pathlib import Path

import pytest

from loopline.core import syncfs as syncfs_mod
from loopline.core.syncfs import _kernel, dirty_bytes, syncfs

_LOOKUP = syncfs_mod._libc_syncfs


@pytest.fixture(autouse=True)
def _fresh_lookup() -> Iterator[None]:
    # Cleared before and after: the tests below change what the lookup finds.
    _LOOKUP.cache_clear()
    yield
    _LOOKUP.cache_clear()


@pytest.mark.parametrize(
    ("release", "expected"),
    [("6.1.0-18-amd64", (6, 1)), ("5.8.0", (5, 8)), ("4.19.0-26-cloud", (4, 19)),
     ("6.18.44-fc-v657", (6, 18)), ("5.10rc1", (5, 10)), ("weird", (0, 0))],
)  # fmt: skip
def test_the_kernel_release_is_read_as_major_and_minor(
    monkeypatch: pytest.MonkeyPatch, release: str, expected: tuple[int, int]
) -> None:
    monkeypatch.setattr(syncfs_mod.platform, "release", lambda: release)
    assert _kernel() == expected


def test_a_kernel_before_5_8_is_not_trusted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Before 5.8 syncfs returned 0 even when a write had failed: fsync file by file instead.
    monkeypatch.setattr(syncfs_mod.platform, "system", lambda: "Linux")
    monkeypatch.setattr(syncfs_mod.platform, "release", lambda: "5.4.0-150-generic")
    assert syncfs(tmp_path) is False


def test_another_system_falls_back(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(syncfs_mod.platform, "system", lambda: "Darwin")
    assert syncfs(tmp_path) is False


@pytest.mark.skipif(_kernel() < (5, 8), reason="needs Linux 5.8+")
def test_it_flushes_the_file_system_of_a_folder(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"durable")
    assert syncfs(tmp_path) is True
    with pytest.raises(FileNotFoundError):
        syncfs(tmp_path / "missing")


class _Failing:
    """A C ``syncfs`` that fails with ``code`` (ctypes' saved errno set as the call would)."""

    def __init__(self, code: int) -> None:
        self.code = code

    def __call__(self, fd: int) -> int:
        ctypes.set_errno(self.code)
        return -1


def test_a_reported_write_failure_raises(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(syncfs_mod, "_libc_syncfs", lambda: _Failing(errno.EIO))
    with pytest.raises(OSError, match="syncfs") as caught:
        syncfs(tmp_path)
    assert caught.value.errno == errno.EIO and caught.value.filename == str(tmp_path)


def test_a_sandbox_without_the_call_falls_back(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(syncfs_mod, "_libc_syncfs", lambda: _Failing(errno.ENOSYS))
    assert syncfs(tmp_path) is False


def test_dirty_bytes_adds_dirty_and_writeback(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(
        "MemTotal:       24000000 kB\nDirty:              1536 kB\nWriteback:           512 kB\n"
        "WritebackTmp:          7 kB\n"
    )
    assert dirty_bytes(str(meminfo)) == 2048 * 1024
    meminfo.write_text("Dirty: lots\n")
    assert dirty_bytes(str(meminfo)) is None
    assert dirty_bytes(str(tmp_path / "missing")) is None


@pytest.mark.skipif(_kernel() < (5, 8), reason="needs Linux 5.8+")
@pytest.mark.parametrize(
    ("dirty", "flushed"), [(0, True), (4096, True), (4097, False), (None, False)]
)
def test_it_declines_while_more_than_max_dirty_waits_to_be_written(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, dirty: int | None, flushed: bool
) -> None:
    monkeypatch.setattr(syncfs_mod, "dirty_bytes", lambda: dirty)
    assert syncfs(tmp_path, max_dirty=4096) is flushed
