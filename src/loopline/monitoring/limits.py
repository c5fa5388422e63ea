"""The limits of labels, shared by the monitoring routes (:mod:`.wire`), the SDK and the
model server's ``/feedback`` (:mod:`loopline.serving.feedback`).

Here, not in :mod:`.wire`, so that the model server checks labels without loading pydantic's
models of the monitoring API.

Example:
    >>> MAX_LABELS, MAX_LABEL_CHARS, MAX_ROW
    (10000, 1000, 2147483647)
"""

from __future__ import annotations

#: The most labels one request may carry (``POST /api/v1/monitor/labels``,
#: ``POST /v1/models/{name}/feedback``).
MAX_LABELS = 10_000

#: The longest text label.
MAX_LABEL_CHARS = 1000

#: The highest row a label may name (a row's index in its request, from 0).
MAX_ROW = 2**31 - 1
