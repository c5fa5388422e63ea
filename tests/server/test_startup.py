"""``loopline server`` starts without loading what only some pages need."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

_BUILD_APP = """
import sys
import loopline as ll
from loopline.server.app import create_app
ll.init(uri=sys.argv[1], artifacts=sys.argv[2])
create_app()
print(sorted(m for m in ("pandas", "duckdb", "sklearn") if m in sys.modules))
"""


def test_the_app_is_built_without_pandas_duckdb_or_sklearn(tmp_path: Path) -> None:
    # Each costs a server start tenths of a second (pandas alone ~0.5 s); the pages and
    # routes that need them import them when they are first used.
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _BUILD_APP,
            f"sqlite:///{tmp_path / 'meta.db'}",
            str(tmp_path / "artifacts"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("LOOPLINE_")},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[-2] == "[]"
