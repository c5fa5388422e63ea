"""A pipeline whose run cannot write its end: importing this module makes the journal's
final batch fail in the importing process. Only ``loopline pipeline run`` subprocesses of
the CLI tests import it; never import it in the test process.
"""

from __future__ import annotations

from typing import Any

import loopline as ll
from loopline.training.step_journal import StepJournal
from tests.training.pipeline_steps import load, total

_real_flush = StepJournal.flush


def _flush(journal: StepJournal, status: str | None = None, **kw: Any) -> None:
    if status is not None:  # the run's end: its final batch, and the cleanup's
        raise RuntimeError("disk I/O error (injected)")
    _real_flush(journal, status, **kw)


StepJournal.flush = _flush  # type: ignore[method-assign]


@ll.pipeline
def doomed(workdir: str) -> None:
    total(workdir, load(workdir, 3))
