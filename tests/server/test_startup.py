"""``loopline server`` starts without loading what only some pages need."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_python

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
    done = run_python(
        _BUILD_APP, f"sqlite:///{tmp_path / 'meta.db'}", str(tmp_path / "artifacts"), cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[-2] == "[]"
