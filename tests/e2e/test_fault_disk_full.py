"""Fault: the artifact store's disk is full - for real, two ways:

* ``tmpfs``: the store is a 2 MB tmpfs mount (``mount -t tmpfs -o size=2m``); writes past it
  fail with ``ENOSPC``. Needs root or CAP_SYS_ADMIN: skipped where mounting is refused.
  (It runs under `make test` on the project's machine, which runs as root.)
* ``rlimit``: the workload runs in a child process whose file size limit
  (``RLIMIT_FSIZE``) is 2 MB; writes past it fail with ``EFBIG``. Runs everywhere.

Either way (:mod:`tests.e2e.disk_full_workload`): logging an artifact, logging a dict and
registering a dataset that do not fit fail with :class:`BackendUnavailable` naming the store
and saying the disk is full; no object appears under the failed content's address, no
temporary file is left behind, every object stored before is still there and reads back
with a matching hash, and the store takes new writes that fit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.disk_full_workload import workload

LIMIT = 2 * 1024 * 1024
HERE = Path(__file__).resolve().parent


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    folder = tmp_path / "sources"
    folder.mkdir()
    for i in range(3):
        (folder / f"small-{i}.bin").write_bytes(os.urandom(100_000))
    (folder / "small.csv").write_text("a,b\n" + "".join(f"{i},{i * 2}\n" for i in range(200)))
    (folder / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    return folder


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={LIMIT // 1024}k", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def _check(seen: dict[str, Any], limit_kind: str) -> None:
    for what, error in seen["errors"].items():
        assert error is not None, f"{what} did not fail"
        assert error["type"] == "BackendUnavailable", (what, error)
        assert seen["url"] in error["message"] and "disk full" in error["message"], error
        assert "nothing was written" in error["message"]
        assert "LOOPLINE_ARTIFACTS" in error["hint"]
        assert limit_kind in error["message"], error
    assert not seen["big_digest_stored"]  # no object, whole or partial, under its address
    assert seen["tmp_leftovers"] == []
    assert seen["after"] == seen["before"]  # nothing added, nothing lost
    assert len(seen["intact_sizes"]) == len(seen["before"]) >= 4  # 3 files + the dataset
    assert seen["read_back"] == [True, True, True]
    assert "big.bin" not in seen["logged"] and "d.json" not in seen["logged"]
    assert seen["big_dataset"] == "absent"
    assert seen["small_dataset_unchanged"]


def test_disk_full_on_a_small_tmpfs(tmpfs: Path, sources: Path, tmp_path: Path) -> None:
    seen = workload(str(tmpfs), f"sqlite:///{tmp_path / 'meta.db'}", sources)
    _check(seen, "No space left on device")


def test_disk_full_through_a_file_size_limit(sources: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(HERE / "disk_full_workload.py"), str(tmp_path / "artifacts"),
         f"sqlite:///{tmp_path / 'meta.db'}", str(sources), str(LIMIT)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    _check(json.loads(done.stdout.strip().splitlines()[-1]), "File too large")
