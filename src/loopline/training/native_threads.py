"""How many native threads one prediction may use, set for the calling thread only.

Tree libraries (scikit-learn's histogram gradient boosting, LightGBM, XGBoost) predict on
an OpenMP team as wide as the machine. For a request of a few rows that team costs more
than it gives: its threads spin while they wait, so a one-row prediction burns twice the
CPU on two cores, and when another process holds a core the prediction waits for a team
member the kernel has descheduled. Measured here (2 cores, one kept busy): a one-row
prediction of a scikit-learn ``HistGradientBoostingClassifier`` had a p99 of 129 ms on
the full team and 10 ms on one thread; LightGBM's went from 8 ms to 0.06 ms. A model
server answering many small requests side by side wants one thread per request (Ray Serve
sets ``OMP_NUM_THREADS=1`` in its replicas for the same reason).

OpenMP keeps its thread count per thread (the ``nthreads-var`` setting), so a limit set
here holds for the calling thread alone: requests answered at the same time on other
threads keep theirs, and nothing outside the ``with`` block changes. LightGBM does not
read that setting; it takes ``num_threads`` on each call, so its flavor asks
:func:`current`.

Example:
    >>> with limited(1):
    ...     current()
    1
    >>> current() is None
    True
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_LIMIT: ContextVar[int | None] = ContextVar("loopline_native_threads", default=None)
#: The OpenMP runtimes loaded so far (a threadpoolctl controller), ``False`` when there
#: are none, ``None`` before the first look.
_openmp: Any = None


def current() -> int | None:
    """The thread limit of the prediction running in this context, or None for no limit.

    Example:
        >>> current() is None
        True
    """
    return _LIMIT.get()


def refresh() -> None:
    """Look again for loaded OpenMP runtimes: loading a model may have brought one (each
    wheel may ship its own copy of ``libgomp``).

    Example:
        >>> refresh()
    """
    global _openmp
    from threadpoolctl import ThreadpoolController

    found = ThreadpoolController().select(user_api="openmp")
    _openmp = found if found.lib_controllers else False


@contextmanager
def limited(threads: int | None) -> Iterator[None]:
    """Predictions made inside use at most ``threads`` native threads; 0 or None: no limit.

    Example:
        >>> with limited(2):
        ...     current()
        2
    """
    if not threads:
        yield
        return
    token = _LIMIT.set(threads)
    try:
        if _openmp is None:
            refresh()
        runtimes = _openmp.lib_controllers if _openmp else ()
        # Each runtime's own get/set (threadpoolctl's LibController API) instead of
        # ThreadpoolController.limit: this runs on every request, and limit() gathers a
        # full info dict per runtime (~20 us against ~1 us).
        before = [r.get_num_threads() for r in runtimes]
        for r in runtimes:
            r.set_num_threads(threads)
        try:
            yield
        finally:
            for r, n in zip(runtimes, before, strict=True):
                r.set_num_threads(n)
    finally:
        _LIMIT.reset(token)
