"""``loopline server`` starts without loading what only some pages need."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_python

_BUILD_APP = """
import sys
from pathlib import Path
import loopline as ll
from loopline.loop.runner import server_loop
from loopline.server.app import create_app
ctx = ll.init(uri=sys.argv[1], artifacts=sys.argv[2])
create_app()
runner, line = server_loop(ctx, enabled=True, root=Path("."), interval=60)
assert runner is None, line
print(sorted(m for m in ("pandas", "duckdb", "sklearn", "psycopg") if m in sys.modules))
"""


def test_the_app_is_built_without_pandas_duckdb_sklearn_or_psycopg(tmp_path: Path) -> None:
    # Each costs a server start tenths of a second (pandas alone ~0.5 s); the pages and
    # routes that need them import them when they are first used, the loop's controller
    # on its first pass, and psycopg only on PostgreSQL.
    done = run_python(
        _BUILD_APP, f"sqlite:///{tmp_path / 'meta.db'}", str(tmp_path / "artifacts"), cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[-2] == "[]"
