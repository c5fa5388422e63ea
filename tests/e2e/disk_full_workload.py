"""The disk-full workload: fill a nearly full artifact store, then try to write past it.

:func:`workload` is called in the test process (artifact store on a small tmpfs) or, as
``python disk_full_workload.py ARTIFACTS URI SOURCES LIMIT``, in a child process whose file
size limit (``RLIMIT_FSIZE``) is ``LIMIT`` bytes (writes past it fail with ``EFBIG``;
``SIGXFSZ`` is ignored so they fail instead of killing the process). It prints its
observations as JSON on its last line.

``SOURCES`` holds ``small-*.bin`` and ``small.csv`` (they fit) and ``big.bin`` (it does
not), made by the test before any limit applies.
"""

from __future__ import annotations

import json
import resource
import signal
import sys
from pathlib import Path
from typing import Any

import loopline as ll
from loopline.core.artifacts import hash_file
from loopline.errors import LooplineError, NotFound


def _attempt(fn: Any) -> dict[str, str] | None:
    try:
        fn()
    except LooplineError as exc:
        return {"type": type(exc).__name__, "message": exc.message, "hint": exc.hint or ""}
    return None


def workload(artifacts: str, uri: str, sources: Path) -> dict[str, Any]:
    """Write what fits, then what does not; report what the store holds afterwards."""
    ctx = ll.init(uri=uri, artifacts=artifacts)
    store = ctx.artifacts
    with ll.start_run(experiment="disk-full") as run:
        for path in sorted(sources.glob("small-*.bin")):
            run.log_artifact(path)
        small = ll.datasets.register("small", str(sources / "small.csv"))
        before = sorted(store.iter_digests())
        big = sources / "big.bin"
        errors = {
            "log_artifact": _attempt(lambda: run.log_artifact(big)),
            "log_dict": _attempt(lambda: run.log_dict({"x": "a" * big.stat().st_size}, "d.json")),
            "dataset": _attempt(lambda: ll.datasets.register("big", str(big))),
        }
        after = sorted(store.iter_digests())
        intact = [len(store.get_bytes(d)) for d in before]  # each read verifies its hash
        logged = sorted(a.path for a in run.artifacts)
        again = [run.read_artifact(p.name) == p.read_bytes() for p in sources.glob("small-*.bin")]
        try:
            ll.datasets.get("big")
            big_dataset = "registered"
        except NotFound:
            big_dataset = "absent"
        small_again = ll.datasets.get("small").hash == small.hash
        # Still writable once the write that did not fit is over.
        (sources.parent / "after.txt").write_bytes(b"still writable")
        run.log_artifact(sources.parent / "after.txt")
    tmp = Path(artifacts) / "tmp"
    return {
        "errors": errors,
        "before": before,
        "after": after,
        "intact_sizes": intact,
        "big_digest_stored": store.exists(hash_file(big)),
        "tmp_leftovers": sorted(p.name for p in tmp.iterdir()) if tmp.is_dir() else [],
        "logged": logged,
        "read_back": again,
        "big_dataset": big_dataset,
        "small_dataset_unchanged": small_again,
        "url": store.url,
    }


def main() -> None:
    artifacts, uri, sources, limit = sys.argv[1:5]
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(limit), int(limit)))
    print(json.dumps(workload(artifacts, uri, Path(sources))))


if __name__ == "__main__":
    main()
