"""The metric points of a run not yet written, kept to be written with it.

Separate from :class:`~loopline.tracking.run_handle.Run` because it is the one buffer a
run uses before it exists in the store (see :mod:`loopline.tracking.deferred`): a short
run's points go out in the same commit as the run and its end, and past
:data:`_EARLY_ROWS` points the run writes itself and hands them to its
:class:`~loopline.tracking.ingest.MetricWriter`.

Example:
    >>> _EARLY_ROWS
    10000
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from loopline.errors import BackendUnavailable
from loopline.tracking import ingest
from loopline.tracking._dialect import MetricRow

if TYPE_CHECKING:
    from loopline.tracking.run_handle import Run

#: Points a run not yet written keeps before it writes itself to hand them to a writer.
_EARLY_ROWS = 10_000


class EarlyPoints:
    """Metric points of a run not yet written: written with the run (often with its end).

    Same ``add``/``extend`` as :class:`~loopline.tracking.ingest.MetricWriter`, without its
    thread: a short run then costs one commit. ``rows`` is None once handed over; later
    points go to the run's writer.
    """

    __slots__ = ("_run", "lock", "rows")

    def __init__(self, run: Run) -> None:
        self.lock = threading.Lock()
        self.rows: list[MetricRow] | None = []
        self._run = run

    def add(self, row: MetricRow) -> None:
        with self.lock:
            rows = self.rows
            if rows is not None:
                rows.append(row)
                if len(rows) < _EARLY_ROWS:
                    return
        if rows is None:
            self._run._points_writer().add(row)
        else:
            self._hand_over(len(rows))

    def extend(self, new: Sequence[MetricRow]) -> None:
        with self.lock:
            rows = self.rows
            if rows is not None:
                rows.extend(new)
                if len(rows) < _EARLY_ROWS:
                    return
        if rows is None:
            self._run._points_writer().extend(new)
        else:
            self._hand_over(len(rows))

    def _hand_over(self, waiting: int) -> None:
        """Enough points wait: write the run with them; later points go to a writer."""
        try:
            self._run.write_pending()
        except BackendUnavailable:
            if waiting >= ingest.MAX_PENDING_ROWS:
                raise  # as MetricWriter does: the loop learns that the backend is gone
            # else the background thread, the next hand-over or the end writes them
