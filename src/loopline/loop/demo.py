"""The end-to-end demo behind ``loopline demo``.

It runs the longest real path that exists so far: open the embedded store (migrating it),
store artifacts content-addressed and read them back verified, record each step in the
audit log and verify the chain. Later stages extend it into the whole closed loop.

Example:
    >>> # from loopline.loop.demo import run_demo; run_demo(Path(".loopline-demo"))
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from loopline.core import audit
from loopline.core.context import init


@dataclass
class DemoSummary:
    """What the demo did, for the closing table."""

    rows: list[tuple[str, str]] = field(default_factory=list)


def run_demo(home: Path, console: Console | None = None, seed: int = 13) -> DemoSummary:
    """Run the demo in ``home`` (created if missing) and return its summary.

    Example:
        >>> # run_demo(Path("/tmp/demo")).rows[0]
    """
    console = console or Console()
    summary = DemoSummary()
    started = time.perf_counter()
    ctx = init(uri=f"sqlite:///{home / 'loopline.db'}", artifacts=str(home / "artifacts"))
    blobs = [hashlib.blake2b(f"{seed}:{i}".encode()).digest() * 4096 for i in range(50)]
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("storing artifacts", total=len(blobs))
        digests = []
        for blob in blobs:
            digest = ctx.artifacts.put_bytes(blob)
            with ctx.engine.begin() as conn:
                ctx.audit(
                    conn,
                    action="artifact.put",
                    object_type="artifact",
                    object_id=digest,
                    after={"size": len(blob)},
                    reason="demo",
                )
            digests.append(digest)
            progress.advance(task)
        task = progress.add_task("reading back, verified", total=len(digests))
        for digest, blob in zip(digests, blobs, strict=True):
            assert ctx.artifacts.get_bytes(digest) == blob
            progress.advance(task)
    report = audit.verify(ctx.engine)
    summary.rows += [
        ("metadata store", ctx.settings.metadata_uri),
        ("artifact store", ctx.settings.artifacts_uri),
        ("artifacts stored (deduplicated)", str(len(set(digests)))),
        ("audit events verified", f"{report.checked} ({'intact' if report.ok else 'BROKEN'})"),
        ("wall time", f"{time.perf_counter() - started:.2f} s"),
    ]
    table = Table(title="loopline demo")
    table.add_column("what")
    table.add_column("result")
    for row in summary.rows:
        table.add_row(*row)
    console.print(table)
    console.print(f"inspect it: LOOPLINE_HOME={home} loopline audit ls")
    ctx.close()
    return summary
