"""The model server's recent answers, and the labels sent for them (``/feedback``).

A running A/B test or canary is judged on live accuracy too: each answer is remembered
by its request id (the newest :data:`MAX_REQUESTS` requests, and no more than
:data:`MAX_ROWS` predicted rows in all), and a label sent to
``POST /v1/models/{name}/feedback`` is compared with the prediction of the row it names.
The rules are those of the prediction log's labels (:mod:`loopline.monitoring.label_join`):

* ``{"request_id", "row", "label"}`` labels that row of the request (from 0);
* ``{"request_id", "label"}`` labels a request of one row; for a request of several rows
  it names no prediction and matches nothing;
* a row past the request's last, a row labelled before, a request forgotten or answered
  for another model or deployment revision: no match.

Labels and predictions are compared by the class they name (``1``, ``1.0`` and ``true`` are
one class), and a binary classifier's probability of class 1 is that class from 0.5 up
(:mod:`loopline.monitoring.classes`).

Example:
    >>> recent = RecentAnswers()
    >>> recent.remember("r1", "churn", 3, False, [0.91, 0.12])
    >>> recent.match("r1", "churn", 3, 1, 0), recent.match("r1", "churn", 3, None, 1)
    (('stable', True), None)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from loopline.monitoring.classes import class_name, predicted_class

#: Requests remembered for their labels; the oldest are forgotten first.
MAX_REQUESTS = 100_000
#: Predicted rows remembered in all: a few requests of a million rows each do not hold
#: every row's prediction in memory.
MAX_ROWS = 1_000_000


class _Answer:
    __slots__ = ("is_candidate", "labelled", "model", "predictions", "revision")

    def __init__(
        self, model: str, revision: int, is_candidate: bool, predictions: Sequence[Any]
    ) -> None:
        self.model = model
        self.revision = revision
        self.is_candidate = is_candidate
        self.predictions = predictions
        self.labelled: set[int] | None = None  # made on the first label: most get none


class RecentAnswers:
    """Answers by request id, for :meth:`match` to score the labels sent for them.

    Example:
        >>> recent = RecentAnswers(); recent.remember("a", "m", 1, True, [1])
        >>> recent.match("a", "m", 1, None, True), recent.match("a", "m", 1, None, True)
        (('candidate', True), None)
    """

    def __init__(self, max_requests: int = MAX_REQUESTS, max_rows: int = MAX_ROWS) -> None:
        self.max_requests = max_requests
        self.max_rows = max_rows
        self._answers: OrderedDict[str, _Answer] = OrderedDict()
        self._rows = 0

    def __len__(self) -> int:
        return len(self._answers)

    def remember(
        self,
        request_id: str,
        model: str,
        revision: int,
        is_candidate: bool,
        predictions: Sequence[Any],
    ) -> None:
        """Keep one answer (its predictions by reference: the answer's own list).

        Example:
            >>> r = RecentAnswers(max_requests=1); r.remember("a", "m", 1, False, [0])
            >>> r.remember("b", "m", 1, False, [1]); len(r)
            1
        """
        old = self._answers.pop(request_id, None)
        if old is not None:
            self._rows -= len(old.predictions)
        self._answers[request_id] = _Answer(model, revision, is_candidate, predictions)
        self._rows += len(predictions)
        while self._answers and (
            len(self._answers) > self.max_requests or self._rows > self.max_rows
        ):
            _, dropped = self._answers.popitem(last=False)
            self._rows -= len(dropped.predictions)

    def match(
        self, request_id: str, model: str, revision: int, row: int | None, label: Any
    ) -> tuple[str, bool] | None:
        """The role (``stable``/``candidate``) that answered the labelled row and whether
        its prediction was right, or None when the label names no remembered prediction
        (see the module). A row is scored once; an answer is forgotten once every row of
        it was.

        Example:
            >>> r = RecentAnswers(); r.remember("a", "m", 1, False, ["cat", "dog"])
            >>> r.match("a", "m", 1, 0, "cat"), r.match("a", "m", 1, 5, "dog")
            (('stable', True), None)
        """
        answer = self._answers.get(request_id)
        if answer is None or answer.model != model or answer.revision != revision:
            return None
        n = len(answer.predictions)
        if row is None:
            if n != 1:
                return None  # which of the rows would this be the truth of?
            row = 0
        labelled = answer.labelled
        if labelled is None:
            labelled = answer.labelled = set()
        if row >= n or row in labelled:
            return None
        labelled.add(row)
        if len(labelled) == n:
            del self._answers[request_id]
            self._rows -= n
        truth = class_name(label)
        right = predicted_class(answer.predictions[row], truth) == truth
        return ("candidate" if answer.is_candidate else "stable"), right
