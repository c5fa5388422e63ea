"""Every example in the docstrings of ``src/loopline`` runs, so none can go stale.

One test per module that has an example (``>>> `` in its source), so xdist spreads them.
Each runs in its own folder with no ``LOOPLINE_*`` setting (the suite's autouse fixture),
with ``tempfile.mkdtemp()`` inside that folder; a context an example opened with
``ll.init`` is closed afterwards, so the next test starts without one, and an example must
not leave a run open (the next test's runs would nest under it).
"""

from __future__ import annotations

import doctest
import importlib
import io
import tempfile
from pathlib import Path

import pytest

from loopline.core import context
from loopline.tracking import active

SRC = Path(__file__).resolve().parent.parent / "src"
#: Alembic's env.py runs only inside Alembic (it reads alembic.context.config on import).
SKIP = ("loopline.core.migrations",)


def _modules_with_examples() -> list[str]:
    names = []
    for path in sorted((SRC / "loopline").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if name.startswith(SKIP) or ">>> " not in path.read_text(encoding="utf-8"):
            continue
        names.append(name)
    return names


@pytest.mark.parametrize("name", _modules_with_examples())
def test_the_examples_of_a_module_run(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = importlib.import_module(name)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    # The examples open their own store: a context another test left behind (one on a
    # PostgreSQL database it has since dropped) is set aside and put back after.
    before = context._current
    context._current = None
    runs = active.open_runs()
    report = io.StringIO()
    runner = doctest.DocTestRunner()
    try:
        for test in doctest.DocTestFinder().find(module, name):
            runner.run(test, out=report.write)
    finally:
        left = [run for run in active.open_runs() if run not in runs]
        for run in left:
            active.forget(run)
        opened = context._current
        if opened is not None and opened is not before:
            opened.close()
        context._current = before
    results = runner.summarize(verbose=False)
    assert results.failed == 0, report.getvalue()
    assert not left, f"the examples of {name} left runs open: {left}"
