"""Kill a writer with SIGKILL at random moments; nothing acknowledged may be lost."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import loopline
from loopline.core import audit
from loopline.core.artifacts import SYNCFS_MIN, LocalArtifactStore, hash_bytes
from loopline.core.syncfs import _libc_syncfs
from tests.cli_run import popen

KILLS = 20
WRITER = Path(__file__).with_name("crash_writer.py")
DATASET_WRITER = Path(__file__).with_name("crash_dataset_writer.py")


def _kill_during(writer: Path, uri: str, artifacts: str, delay: float) -> list[list[str]]:
    """Run ``writer`` and SIGKILL it ``delay`` seconds after its first ACK line; return the
    fields after ``ACK`` of every whole line it printed (a torn last line was never
    acknowledged)."""
    proc = popen(
        [sys.executable, str(writer), uri, artifacts],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    assert proc.stdout is not None
    # The random moment counts from the first acknowledged write, not from the process
    # start: start-up time (imports, migration) varies with the machine's load.
    first = proc.stdout.readline()
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err
    return [line.split()[1:] for line in (first + out).splitlines(keepends=True)
            if line.startswith("ACK ") and line.endswith("\n")]  # fmt: skip


def _run_and_kill(uri: str, artifacts: str, delay: float) -> list[tuple[int, str]]:
    acks = _kill_during(WRITER, uri, artifacts, delay)
    return [(int(seq), digest) for seq, digest in acks if len(digest) == 64]


def _every_object_hashes_to_its_address(store: object) -> None:
    # No partial object is visible: every stored object hashes to its address.
    assert isinstance(store, LocalArtifactStore)
    for digest in store.iter_digests():
        assert hash_bytes(store.local_path(digest).read_bytes()) == digest


@pytest.mark.parametrize("kills", [KILLS])
def test_sigkill_never_loses_an_acknowledged_write(db_uri: str, tmp_path: Path, kills: int) -> None:
    artifacts = str(tmp_path / "artifacts")
    rng = random.Random(20261126)
    acknowledged: list[tuple[int, str]] = []
    for _ in range(kills):
        acknowledged += _run_and_kill(db_uri, artifacts, rng.uniform(0.0, 0.5))
        ctx = loopline.init(uri=db_uri, artifacts=artifacts)
        store = ctx.artifacts
        for _seq, digest in acknowledged:
            assert store.get_bytes(digest)  # present and intact
        _every_object_hashes_to_its_address(store)
        report = audit.verify(ctx.engine)
        assert report.ok, report.problems
        seqs = {e.seq: e.object_id for e in audit.events(ctx.engine)}
        for seq, digest in acknowledged:
            assert seqs[seq] == digest
        ctx.close()
    assert len(acknowledged) > kills  # the writer made progress between kills


def test_sigkill_during_dataset_folder_adds_loses_no_registered_version(tmp_path: Path) -> None:
    # A folder of more than SYNCFS_MIN new files is one batch made durable by syncfs before
    # and after its renames (where trusted): a kill at any moment leaves every version that
    # register returned whole, and no object under its address that is not its bytes.
    uri, artifacts = f"sqlite:///{tmp_path / 'catalog.db'}", str(tmp_path / "artifacts")
    rng = random.Random(20261127)
    registered: dict[int, str] = {}
    flushes = 0
    for _ in range(6):
        for version, digest, flushed in _kill_during(
            DATASET_WRITER, uri, artifacts, rng.uniform(0.0, 0.6)
        ):
            registered[int(version)] = digest
            flushes = max(flushes, int(flushed))
        ctx = loopline.init(uri=uri, artifacts=artifacts)
        for version, digest in registered.items():
            v = loopline.datasets.get("killed", version)
            assert v.hash == digest and len(v.files) == SYNCFS_MIN + 16
            for entry in v.files:
                assert len(ctx.artifacts.get_bytes(entry.digest)) == entry.size  # verified
        _every_object_hashes_to_its_address(ctx.artifacts)
        ctx.close()
    assert len(registered) > 6  # the writer made progress between kills
    if _libc_syncfs() is not None:
        assert flushes >= 2  # the batches went the syncfs way
