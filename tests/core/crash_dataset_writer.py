"""Child process for the crash test: registers dataset folders until killed.

Each folder holds more files than :data:`loopline.core.artifacts.SYNCFS_MIN`, all of them
new, so every version goes through a batch commit made durable by ``syncfs`` where it is
trusted. Prints ``ACK <version> <hash> <flushes>`` once ``register`` returned, where
``flushes`` counts the ``syncfs`` calls that made the store durable so far.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import loopline
import loopline.core.artifact_local as artifacts_mod
from loopline.core.artifacts import SYNCFS_MIN

FILES = SYNCFS_MIN + 16


def main() -> None:
    uri, artifacts = sys.argv[1], sys.argv[2]
    loopline.init(uri=uri, artifacts=artifacts)
    flushes = 0
    real_syncfs = artifacts_mod.syncfs

    def counted(path: str | os.PathLike[str], **kw: Any) -> bool:
        nonlocal flushes
        done = real_syncfs(path, **kw)
        flushes += done
        return done

    artifacts_mod.syncfs = counted
    source = Path(tempfile.mkdtemp(prefix="crash-dataset-"))
    while True:
        for i in range(FILES):
            (source / f"part-{i:03d}.bin").write_bytes(os.urandom(4096 + i))
        v = loopline.datasets.register("killed", source)
        sys.stdout.write(f"ACK {v.version} {v.hash} {flushes}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
