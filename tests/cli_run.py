"""``loopline ...`` in a real subprocess on a test's store, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from loopline.core.context import Context


def run_loopline(
    ctx: Context,
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run ``loopline ARGS`` (in ``cwd``) against ``ctx``'s store with a wide terminal
    (tables unwrapped); ``env`` adds or overrides variables.

    Example:
        >>> # run_loopline(ctx, "runs", "ls", "--json").stdout
    """
    full = {
        **os.environ,
        "LOOPLINE_URI": ctx.settings.metadata_uri,
        "LOOPLINE_ARTIFACTS": ctx.settings.artifacts_uri,
        "COLUMNS": "200",
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "loopline.cli.main", *args],
        capture_output=True,
        text=True,
        env=full,
        cwd=cwd,
        timeout=timeout,
    )
