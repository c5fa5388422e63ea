"""The limits of labels, shared by the monitoring routes (:mod:`.wire`), the SDK and the
model server's ``/feedback`` (:mod:`loopline.serving.feedback`).

Here, not in :mod:`.wire`, so that the model server checks labels without loading pydantic's
models of the monitoring API.

Example:
    >>> MAX_LABELS, MAX_LABEL_CHARS, MAX_ROW
    (10000, 1000, 2147483647)
"""

from __future__ import annotations

from collections.abc import Iterable

#: The most labels one request may carry (``POST /api/v1/monitor/labels``,
#: ``POST /v1/models/{name}/feedback``).
MAX_LABELS = 10_000

#: How many ids (and out-of-range rows) a labels report lists of each kind.
SHOWN_IDS = 20

#: The longest text label.
MAX_LABEL_CHARS = 1000

#: The highest row a label may name (a row's index in its request, from 0).
MAX_ROW = 2**31 - 1


def first_distinct(ids: Iterable[str], limit: int) -> list[str]:
    """The first ``limit`` distinct ids of ``ids``, each once, in the order first seen.

    A report's id lists name requests: one labelled row by row (or sent twice) is one id.

    Example:
        >>> first_distinct(["b-1", "b-1", "ghost", "b-1", "c"], 2)
        ['b-1', 'ghost']
    """
    seen: dict[str, None] = {}
    for rid in ids:
        if len(seen) >= limit:
            break
        seen.setdefault(rid)
    return list(seen)
