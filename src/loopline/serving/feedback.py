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

**Several workers and replicas.** An answer is remembered by the worker process that gave
it, and a label may reach any other worker (``--workers N``) or replica behind the load
balancer. A label for a request this worker does not remember is therefore stored
(``feedback_labels``, :class:`Relay`) for the others: every worker serving a running
rollout reads, each poll, the labels the others stored for the revisions it serves and
scores those it answered, into its own counters - which the canary judges summed over
every worker and replica - and deletes them. The answer to ``/feedback`` counts such
labels as ``pending`` (not ``unmatched``: the request may well have been answered
elsewhere). A pending label no worker scored within :data:`LABEL_HORIZON_S` expires:
one worker deletes it (:meth:`Relay.expire`) and counts it ``expired`` in
``loopline_feedback_labels_total`` and the rollout's live window - or, when the server
logs predictions and its request is in the prediction log, stores it as a monitoring
label (``logged``), which live performance joins with the logged prediction.

Labels and predictions are compared by the class they name (``1``, ``1.0`` and ``true`` are
one class), and a binary classifier's probability of class 1 is that class from 0.5 up
(:mod:`loopline.monitoring.classes`).

:func:`read_feedback` checks a body before anything is matched, and refuses it whole
(422, naming the field and the index) when a label could not be scored: a label is a
finite number, true/false or a text of at most :data:`MAX_LABEL_CHARS` characters (null,
an object or an array names no class); a request id is a string of 1 to 200 characters; a
row is a whole number from 0; one request carries at most :data:`MAX_FEEDBACK` labels (as
``POST /api/v1/monitor/labels``).

Example:
    >>> recent = RecentAnswers()
    >>> recent.remember("r1", "churn", 3, False, [0.91, 0.12])
    >>> recent.match("r1", "churn", 3, 1, 0), recent.match("r1", "churn", 3, None, 1)
    (('stable', True), None)
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy.engine import Engine

from loopline.core.columns import MAX_REQUEST_ID_CHARS
from loopline.core.context import Context
from loopline.errors import InvalidInput
from loopline.monitoring.classes import class_name, predicted_class
from loopline.monitoring.limits import MAX_LABEL_CHARS, MAX_LABELS, MAX_ROW
from loopline.serving import store
from loopline.serving.store import HandedOff

log = logging.getLogger("loopline.serving")

#: Requests remembered for their labels; the oldest are forgotten first.
MAX_REQUESTS = 100_000
#: Predicted rows remembered in all: a few requests of a million rows each do not hold
#: every row's prediction in memory.
MAX_ROWS = 1_000_000
#: The most labels one ``/feedback`` request carries: as many as one request to the
#: monitoring API's ``POST /api/v1/monitor/labels``.
MAX_FEEDBACK = MAX_LABELS

#: One checked label: (request id, row or None, label).
Feedback = tuple[str, int | None, bool | int | float | str]
#: How long (seconds) a label handed between workers waits for the worker that answered
#: its request (``LOOPLINE_SERVE_LABEL_HORIZON_S``). Every worker reads a handed-off label
#: within a poll or two (1 s each by default), and the one that remembers the request
#: scores it then; a label still waiting after 600 polls names a request no worker
#: remembers (never made, forgotten among the last :data:`MAX_REQUESTS`, answered before
#: a restart or for a rollout that ended), and expires.
LABEL_HORIZON_S = 600.0
#: Expired labels are looked for at most this often (seconds), and at least four times
#: per horizon.
EXPIRE_EVERY = 60.0

_ITEM_FIELDS = frozenset(("request_id", "label", "row"))
_LIST_FIELDS = frozenset(("labels",))
_SHAPE = (
    "send {'request_id': ..., 'label': ...} or {'labels': [{'request_id': ..., 'label': ...}, ...]}"
)
_ROW_HINT = "add 'row': N to label row N (from 0) of a request of several rows"


def read_feedback(payload: Any) -> list[Feedback]:
    """The labels of a ``/feedback`` body, checked (see the module); InvalidInput names the
    first bad field (``label``, or ``labels[3].label`` in a list of labels).

    Example:
        >>> read_feedback({"labels": [{"request_id": "r1", "row": 2, "label": "spam"}]})
        [('r1', 2, 'spam')]
        >>> try:
        ...     read_feedback({"request_id": "r1", "label": None})
        ... except InvalidInput as exc:
        ...     print(exc.field, "-", exc.message)
        label - label is null: a label is a finite number, true/false or a text
    """
    if not isinstance(payload, dict):
        raise InvalidInput(f"the body is {_shown(payload)}", field="body", hint=_SHAPE)
    if "labels" not in payload:
        return [_item(payload, "")]
    _no_other_fields(payload, _LIST_FIELDS, "", "a body with 'labels' has no other field")
    items = payload["labels"]
    if not isinstance(items, list):
        raise InvalidInput(f"labels is {_shown(items)}, not an array", field="labels", hint=_SHAPE)
    if len(items) > MAX_FEEDBACK:
        raise InvalidInput(
            f"labels has {len(items)} labels; one request takes at most {MAX_FEEDBACK}",
            field="labels",
            hint=f"send them in several requests of at most {MAX_FEEDBACK} labels",
        )
    return [_item(item, f"labels[{i}]") for i, item in enumerate(items)]


def _item(item: Any, at: str) -> Feedback:
    """One label object; ``at`` is where it is in the body ("" for the body itself)."""
    prefix = f"{at}." if at else ""
    if not isinstance(item, dict):
        raise InvalidInput(f"{at} is {_shown(item)}, not an object", field=at, hint=_SHAPE)
    _no_other_fields(item, _ITEM_FIELDS, prefix, "a label has request_id, label and row")
    for name in ("request_id", "label"):
        if name not in item:
            raise InvalidInput(f"{prefix}{name} is missing", field=prefix + name, hint=_SHAPE)
    rid, label, row = item["request_id"], item["label"], item.get("row")
    if type(rid) is not str or not 0 < len(rid) <= MAX_REQUEST_ID_CHARS:
        # str(None) was the id 'None': a label that named nothing was answered 200.
        raise InvalidInput(
            f"{prefix}request_id is {_shown(rid)}: a request id is a string of 1 to "
            f"{MAX_REQUEST_ID_CHARS} characters",
            field=f"{prefix}request_id",
            hint="send the request_id the prediction's answer gave",
        )
    if not _is_label(label):
        raise InvalidInput(
            f"{prefix}label is {_shown(label)}: {_label_rule(label)}",
            field=f"{prefix}label",
            hint=f"send the true class or value: a number, true/false or a text of at most "
            f"{MAX_LABEL_CHARS} characters",
        )
    if row is not None and (type(row) is not int or not 0 <= row <= MAX_ROW):
        if type(row) is int and row > MAX_ROW:
            problem = f"{prefix}row {row} is past the last row a request can have"
        else:
            problem = f"{prefix}row is {_shown(row)}"
        raise InvalidInput(
            f"{problem}: a row is a whole number from 0 (the request's first row) to "
            f"{MAX_ROW}, written without a fraction or an exponent",
            field=f"{prefix}row",
            hint="give the row of the request the label is for, from 0, or leave it out "
            "for a request of one row",
        )
    return rid, row, label


def _no_other_fields(body: dict[str, Any], fields: frozenset[str], prefix: str, rule: str) -> None:
    """InvalidInput naming the first field of ``body`` that is not among ``fields``: a
    misspelt "row" would label the request as a whole, silently."""
    for name in body:
        if name not in fields:
            raise InvalidInput(
                f"unknown field {name!r}: {rule}", field=f"{prefix}{name}", hint=_ROW_HINT
            )


def _is_label(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) <= MAX_LABEL_CHARS
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, int)  # bool too


def _label_rule(value: Any) -> str:
    if isinstance(value, float):
        return "a label must be finite"
    if isinstance(value, str):
        return f"a text label has at most {MAX_LABEL_CHARS} characters"
    return "a label is a finite number, true/false or a text"


def _shown(value: Any) -> str:
    """A parsed JSON value as a message shows it: short, and in JSON's words - never in a
    form the client did not send (orjson reads the integer 10**30 as the float 1e+30)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
        if value.is_integer() and abs(value) >= 2**53:
            return f"a number of about {value:.3g}, too large to be exact"
        return f"the number {value!r}"
    if isinstance(value, int):
        text = str(value) if abs(value) < 10**30 else f"an integer of {len(str(abs(value)))} digits"
        return f"the number {text}"
    if isinstance(value, str):
        if len(value) > 40:
            return f"a text of {len(value)} characters"
        return f"the text {value!r}"
    return "an array" if isinstance(value, list) else "an object"


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


def log_expired(ctx: Context, expired: Sequence[HandedOff]) -> set[int]:
    """Store as monitoring labels (:func:`loopline.monitoring.labels.log_labels`, for
    their model) the expired labels whose request the prediction log holds; their ids.

    No worker remembered their request any more (answered before a restart, or long
    ago), but its prediction was logged: live performance joins the label with it. A batch
    the monitoring rules refuse (a text label for a model that predicts numbers) is logged
    as a warning and stays expired.

    Example:
        >>> # log_expired(ctx, [(12, "churn", 7, "r-1", None, 1)])  -> {12}
    """
    # Imported here: the prediction log's readers need pandas/pyarrow, the server not.
    from loopline.monitoring.labelled_requests import logged_rows
    from loopline.monitoring.labels import log_labels

    by_model: dict[str, list[HandedOff]] = {}
    for item in expired:
        by_model.setdefault(item[1], []).append(item)
    out: set[int] = set()
    for model, items in by_model.items():
        known = logged_rows([h[3] for h in items], model, ctx)
        kept = [h for h in items if h[3] in known]
        if not kept:
            continue
        try:
            log_labels(
                [h[3] for h in kept],
                [h[5] for h in kept],
                model=model,
                rows=[h[4] for h in kept],
                ctx=ctx,
            )
        except InvalidInput as exc:
            log.warning("expired labels of %s could not be logged for monitoring: %s", model, exc)
            continue
        out.update(h[0] for h in kept)
    return out


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

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._answers

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


class Relay:
    """Labels for requests another worker or replica answered, passed through the store.

    :meth:`send` stores the labels this worker received but does not remember the request
    of; :meth:`receive` reads the labels the other workers stored for the given deployment
    revisions since the last call. Both do I/O: the model server runs them off its event
    loop. The rows are read by id, one poll behind the newest id read: PostgreSQL hands ids
    out before the insert commits, so a row may appear after a higher one was read; rows
    read twice are returned once.

    Example:
        >>> import tempfile, loopline
        >>> ctx = loopline.init(uri="sqlite:///:memory:", artifacts=tempfile.mkdtemp())
        >>> a, b = Relay("worker-a"), Relay("worker-b")
        >>> b.receive(ctx.engine, [("churn", 3)])
        []
        >>> a.send(ctx.engine, "churn", 3, [("r-9", None, 1)])
        >>> [row[1:] for row in b.receive(ctx.engine, [("churn", 3)])]
        [('churn', 3, 'r-9', None, 1)]
        >>> b.receive(ctx.engine, [("churn", 3)]), a.receive(ctx.engine, [("churn", 3)])
        ([], [])
    """

    def __init__(self, worker: str, horizon: float = LABEL_HORIZON_S) -> None:
        self.worker = worker
        self.horizon = horizon
        self._after: int | None = None  # the query's lower bound: ids above it are read
        self._newest = 0  # the highest id read so far
        self._seen: set[int] = set()  # ids above _after already returned
        self._expired_at = time.monotonic()

    def start(self, engine: Engine) -> None:
        """Receive the labels stored from now on (the model server calls it as it starts,
        before it answers: a label for its first answers may arrive before its first poll).

        Example:
            >>> # relay.start(ctx.engine)
        """
        self._after = self._newest = store.last_label_id(engine)

    def send(self, engine: Engine, name: str, revision: int, labels: Sequence[Feedback]) -> None:
        """Store ``labels`` (for revision ``revision`` of deployment ``name``) for the other
        workers; durable when it returns.

        Example:
            >>> # relay.send(ctx.engine, "churn", 7, [("r-1", None, 1)])
        """
        store.hand_off_labels(engine, name, revision, self.worker, labels)

    def receive(self, engine: Engine, revisions: Collection[tuple[str, int]]) -> list[HandedOff]:
        """The labels other workers stored for these (name, revision) pairs that this one
        has not received yet (none from before :meth:`start`, or the first call).

        Example:
            >>> # relay.receive(ctx.engine, [("churn", 7)])  -> [(12, "churn", 7, "r-1", None, 1)]
        """
        if self._after is None:
            self.start(engine)
        assert self._after is not None
        rows = store.handed_off_labels(engine, revisions, self._after, self.worker)
        fresh = [r for r in rows if r[0] not in self._seen]
        self._after, self._newest = self._newest, max((r[0] for r in rows), default=self._newest)
        after = self._after
        self._seen = {i for i in self._seen if i > after} | {r[0] for r in rows if r[0] > after}
        return fresh

    def resolve(self, engine: Engine, ids: Collection[int]) -> None:
        """Delete the handed-off labels this worker scored (or found unscorable): the
        request was this worker's, so no other will score them, and they must not expire.

        Example:
            >>> # relay.resolve(ctx.engine, [12, 13])
        """
        store.drop_labels(engine, ids)

    def expire(self, engine: Engine) -> list[HandedOff]:
        """The labels handed off more than ``horizon`` seconds ago, deleted: no worker
        remembered their request. Looked for at most every :data:`EXPIRE_EVERY` seconds
        (a quarter of the horizon when that is shorter); among several workers, each
        expired label is returned to exactly one.

        Example:
            >>> import tempfile, loopline
            >>> ctx = loopline.init(uri="sqlite:///:memory:", artifacts=tempfile.mkdtemp())
            >>> a, b = Relay("worker-a"), Relay("worker-b", horizon=0.0)
            >>> a.send(ctx.engine, "churn", 3, [("never-made", None, 1)])
            >>> [row[1:] for row in b.expire(ctx.engine)], a.expire(ctx.engine)
            ([('churn', 3, 'never-made', None, 1)], [])
        """
        if time.monotonic() - self._expired_at < min(EXPIRE_EVERY, self.horizon / 4):
            return []
        self._expired_at = time.monotonic()
        return store.expire_labels(engine, time.time() - self.horizon)
