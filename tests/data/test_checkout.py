"""``loopline.data.checkout``: a failed download stops the queued ones."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from loopline.core.artifacts import LocalArtifactStore
from loopline.data.checkout import checkout
from loopline.data.ingest import WORKERS, FileEntry
from loopline.errors import BackendUnavailable


def test_a_failed_download_stops_the_queued_ones(tmp_path: Path) -> None:
    calls: list[str] = []

    class DeadStore(LocalArtifactStore):
        """A real local store whose every download fails after a wait, like a dead S3."""

        def get_file(self, digest: str, dest: str | os.PathLike[str]) -> Path:
            calls.append(digest)
            time.sleep(0.2)
            raise BackendUnavailable("the store does not answer", hint="test")

    store = DeadStore(tmp_path / "art")
    entries = []
    for i in range(64):
        data = f"file {i}".encode()
        entries.append(FileEntry(f"f{i}.txt", store.put_bytes(data), len(data)))
    with pytest.raises(BackendUnavailable, match="does not answer"):
        checkout(store, entries, tmp_path / "out")
    # The downloads running at the failure (a worker may start one more before the pool is
    # shut down), not all 64 one after the other.
    assert 0 < len(calls) < 2 * WORKERS < len(entries)
