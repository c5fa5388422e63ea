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
from loopline.core.artifacts import LocalArtifactStore, hash_bytes

KILLS = 20
WRITER = Path(__file__).with_name("crash_writer.py")


def _run_and_kill(uri: str, artifacts: str, delay: float) -> list[tuple[int, str]]:
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), uri, artifacts],
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
    acks = []
    for line in (first + out).splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "ACK":  # a torn last line was never acknowledged
            acks.append((int(parts[1]), parts[2]))
    return acks


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
        # No partial object is visible: every stored object hashes to its address.
        assert isinstance(store, LocalArtifactStore)
        for digest in store.iter_digests():
            assert hash_bytes(store.local_path(digest).read_bytes()) == digest
        report = audit.verify(ctx.engine)
        assert report.ok, report.problems
        seqs = {e.seq: e.object_id for e in audit.events(ctx.engine)}
        for seq, digest in acknowledged:
            assert seqs[seq] == digest
        ctx.close()
    assert len(acknowledged) > kills  # the writer made progress between kills
