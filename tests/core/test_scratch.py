"""Temp files of killed writers are removed; a live writer's never are (even a stopped one)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from loopline.config import Settings
from loopline.core.artifacts import S3ArtifactStore
from loopline.core.doctor import run_checks
from loopline.core.scratch import sweep, temp_name, writing
from tests.cli_run import Process, popen
from tests.conftest import s3_options

HOLD = """
import sys, time
from pathlib import Path
from loopline.core.scratch import temp_name, writing
folder = Path(sys.argv[1])
with writing(folder):
    (folder / temp_name(folder)).write_bytes(b"x" * 1000)
    (folder / temp_name(folder, "-dir")).mkdir()
    print("ready", flush=True)
    time.sleep(600)
"""


@contextmanager
def _writer(folder: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        proc.kill()
        proc.communicate()


def test_sweep_removes_only_what_dead_writers_left(tmp_path: Path) -> None:
    folder = tmp_path / "tmp"
    folder.mkdir()
    (folder / "0123456789abcdef0123456789abcdef").write_bytes(b"old")  # an earlier version's
    with writing(folder) as token:
        mine = folder / temp_name(folder)
        mine.write_bytes(b"being written")
        with _writer(folder) as live, _writer(folder) as dead:
            dead.send_signal(signal.SIGKILL)
            dead.wait()
            dead_files = sorted(folder.glob(f"w{dead.pid}-*"))
            live_files = sorted(folder.glob(f"w{live.pid}-*"))
            assert len(dead_files) == len(live_files) == 3  # two temp files and the lock
            found = sweep(folder)
            assert (found.removed, found.removed_bytes, found.live) == (2, 1000, 3)
            assert found.unknown == ["0123456789abcdef0123456789abcdef"]
            assert not any(p.exists() for p in dead_files)
            assert all(p.exists() for p in live_files) and mine.read_bytes() == b"being written"
        # The other writer is gone now too (killed): its files go at the next sweep.
        assert sweep(folder).removed == 2
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            [mine.name, f"{token}.lock", "0123456789abcdef0123456789abcdef"]
        )
    # The block's end removed its lock: a temp file it left behind has no writer any more.
    assert not (folder / f"{token}.lock").exists()
    assert sweep(folder).removed == 1 and not mine.exists()
    with pytest.raises(RuntimeError, match="outside a writing"):
        temp_name(folder)


def _add(home: Path, name: str, src: Path) -> Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPLINE_")}
    return popen(
        [sys.executable, "-m", "loopline.cli.main", "data", "add", name, str(src)],
        env={**env, "LOOPLINE_HOME": str(home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _temp_files(folder: Path, pid: int) -> list[Path]:
    if not folder.is_dir():
        return []
    return [p for p in folder.glob(f"w{pid}-*") if not p.name.endswith(".lock")]


def _wait_mid_copy(proc: Process, store_tmp: Path) -> list[Path]:
    """Wait until ``proc`` has copies in the store's tmp/ (it is mid-copy); return them."""
    deadline = time.monotonic() + 120
    while len(found := _temp_files(store_tmp, proc.pid)) < 2:
        assert proc.poll() is None, f"the add ended before it was caught: {proc.stderr}"
        assert time.monotonic() < deadline, "the add never started copying"
        time.sleep(0.002)
    return found


def _write_locks(pid: int) -> list[str]:
    """The POSIX write locks ``pid`` holds. SQLite holds one only inside a write, a
    checkpoint or a recovery; an open connection holds read locks only."""
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except FileNotFoundError:  # not mounted: the stop is left to chance, as before
        return []
    return [line for line in lines if line.split()[1:5] == ["POSIX", "ADVISORY", "WRITE", str(pid)]]


def _stopped(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "T"


def _stop_outside_a_write(proc: Process) -> None:
    """SIGSTOP ``proc`` at a moment it holds no database write lock.

    The add opens its catalog on a helper thread during the copy. Stopped inside one of
    SQLite's writes, checkpoints or recoveries, it would block every other writer (as a
    stopped transaction does in any database), and the next add would fail with "database
    is locked" or "locking protocol": a property of the stop, not of the scratch files this
    test is about. So it is stopped again a moment later until it holds no such lock.
    """
    deadline = time.monotonic() + 60
    while True:
        proc.send_signal(signal.SIGSTOP)
        while not _stopped(proc.pid):  # the signal is delivered asynchronously
            time.sleep(0.0005)
        if not _write_locks(proc.pid):
            return
        assert time.monotonic() < deadline, _write_locks(proc.pid)
        proc.send_signal(signal.SIGCONT)
        time.sleep(0.001)


def _big_folder(folder: Path, files: int) -> Path:
    folder.mkdir()
    for i in range(files):
        (folder / f"part-{i:03d}.bin").write_bytes(os.urandom(4 * 2**20))
    return folder


def test_a_killed_add_leaves_nothing_after_the_next_add_and_a_live_add_keeps_its_files(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    store_tmp, home_tmp = home / "artifacts" / "tmp", home / "tmp"
    killed = _add(home, "killed", _big_folder(tmp_path / "a", 40))
    _wait_mid_copy(killed, store_tmp)
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=60)
    left = _temp_files(store_tmp, killed.pid) + _temp_files(home_tmp, killed.pid)
    assert any(p.parent == home_tmp for p in left) and len(left) >= 3  # the bug: all stayed

    # A slow add that is still running: stopped (SIGSTOP) in the middle of its copy.
    # (Each process is a context: if an assertion fails, its pipes are closed and it is
    # waited for here, not left to the garbage collector in a later test.)
    with _add(home, "slow", _big_folder(tmp_path / "b", 40)) as slow:
        try:
            _wait_mid_copy(slow, store_tmp)
            _stop_outside_a_write(slow)
            slow_files = _temp_files(store_tmp, slow.pid) + _temp_files(home_tmp, slow.pid)

            small = tmp_path / "c"
            small.mkdir()
            (small / "x.txt").write_text("x")
            with _add(home, "small", small) as quick:
                _, err = quick.communicate(timeout=120)
            assert quick.returncode == 0, err
            assert not any(p.exists() for p in left)  # the next add removed the leftovers
            assert all(p.exists() for p in slow_files)  # and not one of the live add's files
            [check] = [c for c in run_checks(Settings(home=home)) if c.name == "temp files"]
            assert check.ok and "in use by running writers" in check.detail, check.detail
            assert all(p.exists() for p in slow_files)
        finally:
            slow.send_signal(signal.SIGCONT)
        _, err = slow.communicate(timeout=300)
    assert slow.returncode == 0, err
    verify = subprocess.run(
        [
            sys.executable,
            "-m",
            "loopline.cli.main",
            "data",
            "checkout",
            "slow",
            str(tmp_path / "out"),
        ],
        env={**os.environ, "LOOPLINE_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert verify.returncode == 0, verify.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        p.name for p in (tmp_path / "b").iterdir()
    )
    # Every writer has finished: nothing is left in either tmp folder, locks included.
    assert list(store_tmp.iterdir()) == [] and list(home_tmp.iterdir()) == []


def test_doctor_removes_a_killed_adds_leftovers(tmp_path: Path) -> None:
    home = tmp_path / "home"
    killed = _add(home, "killed", _big_folder(tmp_path / "a", 30))
    copies = _wait_mid_copy(killed, home / "artifacts" / "tmp")
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=60)
    [check] = [c for c in run_checks(Settings(home=home)) if c.name == "temp files"]
    assert check.ok and "left by killed writers (" in check.detail, check.detail
    assert not any(p.exists() for p in copies)
    assert list((home / "tmp").iterdir()) == []


def test_doctor_lists_an_unfinished_multipart_upload_on_s3(
    tmp_path: Path, s3_url: str, s3_env: None
) -> None:
    opts = s3_options()
    store = S3ArtifactStore(s3_url, opts)
    key = f"{s3_url.removeprefix('s3://')}/objects/ab/cdef"
    bucket, path = key.split("/", 1)
    upload = store.fs.call_s3("create_multipart_upload", Bucket=bucket, Key=path)
    store.fs.call_s3(
        "upload_part",
        Bucket=bucket,
        Key=path,
        UploadId=upload["UploadId"],
        PartNumber=1,
        Body=b"x" * 1024,
    )
    try:
        assert [k for k, _ in store.unfinished_uploads()] == [path]
        settings = Settings(home=tmp_path / "home", artifacts=s3_url)
        [check] = [c for c in run_checks(settings) if c.name == "temp files"]
        assert check.ok and "1 unfinished multipart upload(s)" in check.detail, check.detail
        assert "AbortIncompleteMultipartUpload" in check.detail
    finally:
        store.fs.call_s3(
            "abort_multipart_upload", Bucket=bucket, Key=path, UploadId=upload["UploadId"]
        )
    assert store.unfinished_uploads() == []
