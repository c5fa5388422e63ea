"""Tracking fixtures: every test leaves no open run or live metric writer behind."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.exc import OperationalError

from loopline.errors import LooplineError
from loopline.tracking import active, ingest


@pytest.fixture(autouse=True)
def _no_open_runs() -> Iterator[None]:
    """A run a failing test left open must not become the parent of the next test's runs."""
    yield
    for run in active.open_runs():
        active.forget(run)
    with ingest._live_lock:
        writers = list(ingest._live)
    for writer in writers:
        try:
            writer.close()
        except (OperationalError, LooplineError):
            # The test's database is already dropped: the test that left this writer open
            # has failed on its own, and there is nowhere left to write its points.
            with ingest._live_lock:
                ingest._live.discard(writer)
