"""The bodies and answers of the monitoring routes ``/api/v1/monitor/...``, shared by the
server (:mod:`loopline.server.api_v1`) and the remote SDK (:mod:`.remote`).

Limits: at most :data:`MAX_LABELS` request ids per ``POST /monitor/labels`` (the SDK splits
longer lists into several requests); request ids and event names of 1-200 characters; a
label's ``row`` a whole number from 0 to :data:`MAX_ROW`.

Example:
    >>> LabelsRequest(request_ids=["r-1"], labels=[1]).labels
    [1]
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

from loopline.core.columns import MAX_REQUEST_ID_CHARS
from loopline.core.text import check_no_control, check_no_nul
from loopline.errors import InvalidInput
from loopline.monitoring.limits import MAX_LABEL_CHARS, MAX_LABELS, MAX_ROW

#: ``rows="all"``: each label is for every row of its request.
ALL_ROWS = "all"


RequestId = Annotated[str, Field(min_length=1, max_length=MAX_REQUEST_ID_CHARS)]


def check_label(value: Any) -> bool | int | float | str | None:
    """A label: a number, a short text, true/false or null; ValueError for anything else.

    The one rule for labels: the server's bodies validate with it, and so does the
    embedded ``ll.monitor.log_labels`` (through :func:`checked_labels`).

    Example:
        >>> check_label(1), check_label("spam")
        (1, 'spam')
    """
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("a label must be a finite number")
    if isinstance(value, str) and len(value) > MAX_LABEL_CHARS:
        raise ValueError(f"a text label has at most {MAX_LABEL_CHARS} characters")
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise ValueError("a label is a number, a text, true/false or null")


def _all_pass(name: str, values: Sequence[Any]) -> bool:
    """Whether every one of ``values`` (of ``name``: request_ids, labels or rows) surely
    passes its check, told by a few passes in C (``map``, ``set``, ``min``) instead of a
    Python call per value: 4 ms of a 10,000-label call went to the loop. Only lists of
    one plain type are judged here; False sends the list to the check of each value,
    which names the first bad one.

    Example:
        >>> _all_pass("labels", [1, None, True]), _all_pass("labels", [1.0, float("nan")])
        (True, False)
    """
    kinds = set(map(type, values))
    if not kinds:
        return True
    if name == "request_ids":
        if kinds != {str}:
            return False
        return min(map(len, values)) >= 1 and max(map(len, values)) <= MAX_REQUEST_ID_CHARS
    if name == "labels":
        if kinds <= {int, bool, type(None)}:  # check_label takes any of these
            return True
        if kinds == {float}:
            return all(map(math.isfinite, values))
        return kinds == {str} and max(map(len, values)) <= MAX_LABEL_CHARS
    if name == "rows":
        return kinds == {int} and min(values) >= 0 and max(values) <= MAX_ROW
    return False


def finite_number(value: Any) -> float | None:
    """``value`` as a float when it is a finite real number - a Python or NumPy integer or
    float (values often come out of a DataFrame as ``numpy.int64``) - else None: a bool
    (NumPy's too) is no amount, and a number written as text is not coerced.

    Example:
        >>> import numpy as np
        >>> finite_number(np.int64(3)), finite_number(np.float32(2.5)), finite_number(7)
        (3.0, 2.5, 7.0)
        >>> [finite_number(v) for v in (True, np.True_, "3", float("nan"), 10**400)]
        [None, None, None, None, None]
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None  # numpy.bool_ is not a numbers.Real
    try:
        number = float(value)
    except OverflowError:  # an int past float's range
        return None
    return number if math.isfinite(number) else None


def check_request_id(value: Any) -> str:
    """A request id as the server takes it (:data:`RequestId`): a text of 1-200
    characters; ValueError for anything else (None is not the id ``'None'``).

    Example:
        >>> check_request_id("r-1")
        'r-1'
    """
    if not isinstance(value, str):
        raise ValueError(f"a request id is a text, got {type(value).__name__}")
    if not 1 <= len(value) <= MAX_REQUEST_ID_CHARS:
        raise ValueError(f"a request id has 1 to {MAX_REQUEST_ID_CHARS} characters")
    return value


def check_row(value: Any) -> int | None:
    """The row a label names: a whole number from 0 to :data:`MAX_ROW` (the row's index
    in its request), or None (the request as a whole); ValueError for anything else (a
    bool, 2.0 or "2" is not a row).

    Example:
        >>> check_row(2), check_row(None)
        (2, None)
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"a row is a whole number or null, got {type(value).__name__}")
    if not 0 <= value <= MAX_ROW:
        raise ValueError(f"a row is from 0 (the request's first row) to {MAX_ROW}")
    return value


def check_names(**names: str | None) -> None:
    """Refuse a monitoring name (an event's, a model's) holding NUL or another control
    character, naming its field; None (not given) passes.

    Names are shown in reports and tables; ESC in one would rewrite a terminal, and
    PostgreSQL cannot store a NUL.

    Example:
        >>> check_names(event="refund", model=None)
    """
    for field, name in names.items():
        if name is not None:
            check_no_nul(name, field)
            check_no_control(name, field)


def checked_labels(
    request_ids: Sequence[Any], labels: Sequence[Any], rows: Sequence[Any] | str | None = None
) -> None:
    """Refuse what ``POST /monitor/labels`` refuses with a 422: InvalidInput naming the
    first bad ``request_ids[i]``, ``labels[i]`` or ``rows[i]`` (the SDK checks before
    storing or sending anything). ``rows`` is None, ``"all"`` or one row (or None) per id.

    Example:
        >>> try:
        ...     checked_labels(["r-1"], [float("inf")])
        ... except InvalidInput as exc:
        ...     print(exc.field, exc.message)
        labels[0] labels[0] is inf: a label must be a finite number
    """
    rules: tuple[tuple[str, Sequence[Any], Callable[[Any], Any], str], ...] = (
        ("request_ids", request_ids, check_request_id, _ID_HINT),
        ("labels", labels, check_label, _LABEL_HINT),
    )
    if isinstance(rows, str):
        if rows != ALL_ROWS:
            raise InvalidInput(
                f"rows is {rows!r}", field="rows", hint=f"{_ROWS_HINT}, or {ALL_ROWS!r}"
            )
    elif rows is not None:
        if len(rows) != len(request_ids):
            raise InvalidInput(
                f"got {len(request_ids)} request ids and {len(rows)} rows",
                field="rows",
                hint="pass one row (or None) per request id, in the same order",
            )
        rules += (("rows", rows, check_row, _ROWS_HINT),)
    for name, values, check, hint in rules:
        if _all_pass(name, values):
            continue
        for i, value in enumerate(values):
            try:
                check(value)
            except ValueError as exc:
                raise InvalidInput(
                    f"{name}[{i}] is {value!r}: {exc}", field=f"{name}[{i}]", hint=hint
                ) from None


_ID_HINT = "send the request id the model server answered with (a text)"
_LABEL_HINT = "send a number, a text, true/false or None (a missing label) per id"
_ROWS_HINT = (
    "send the index of the labelled row in its request (0 for the first) or None (the "
    "request as a whole) per id"
)


Label = Annotated[
    Any,
    AfterValidator(check_label),
    WithJsonSchema({"type": ["number", "string", "boolean", "null"]}),
]


_ROWS_DOC = (
    "the row of its request each label is for (from 0), or null for the request as a "
    "whole, one per request id; 'all': each label is for every row of its request"
)
_ROWS_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {
            "type": "array",
            "items": {"type": ["integer", "null"], "minimum": 0, "maximum": MAX_ROW},
            "maxItems": MAX_LABELS,
        },
        {"const": ALL_ROWS},
        {"type": "null"},
    ]
}


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore")


class LabelsRequest(_Request):
    """Ground truth for logged predictions: one label per request id, in the same order.

    ``rows`` says which row of its request each label is for: one index (from 0) or null
    per id; ``"all"``: every row of the request; absent: the request as a whole, which is
    compared with a prediction only when the request had one row.
    """

    request_ids: list[RequestId] = Field(
        min_length=1, max_length=MAX_LABELS, examples=[["a1b2c3d4-1", "a1b2c3d4-2"]]
    )
    labels: list[Label] = Field(min_length=1, max_length=MAX_LABELS, examples=[[1, 0]])
    model: str | None = Field(
        None, min_length=1, max_length=256, description="match only this model's predictions"
    )
    # Checked by checked_labels (as the embedded SDK checks it), so that a bad row is
    # named rows[i] over HTTP too.
    rows: Annotated[Any, WithJsonSchema(_ROWS_SCHEMA)] = Field(
        None, examples=[[0, 1, 2]], description=_ROWS_DOC
    )


class OutOfRange(_Answer):
    """A label for a row that its request does not have."""

    request_id: str
    row: int
    rows: int


class LabelsResponse(_Answer):
    """What became of the labels (``received`` = ``matched`` + ``unmatched`` +
    ``no_row`` + ``out_of_range``), and the first ids of each kind.

    The counts are of labels. ``unmatched_ids`` names the first 20 distinct request ids of
    the ``unmatched`` labels, each once in the order first seen (a request labelled row by
    row is one id); they are stored all the same (their prediction may still be in a model
    server's buffer). ``no_row_ids`` lists its ids the same way. ``no_row``: labels
    that name no row for a request that had several (compared with no prediction);
    ``out_of_range``: labels for a row past the request's last. ``warnings`` says so in
    words.
    """

    received: int
    matched: int
    unmatched: int
    unmatched_ids: list[str]
    duplicates: int = 0
    no_row: int = 0
    no_row_ids: list[str] = []
    out_of_range: int = 0
    out_of_range_rows: list[OutOfRange] = []
    warnings: list[str] = []


class BusinessRequest(_Request):
    """One business event with its value, optionally tied to a request and a model."""

    event: str = Field(min_length=1, max_length=200, examples=["rebooking_cost"])
    # strict: a bool or a number written as text is not a value (true was stored as 1.0).
    value: float = Field(strict=True, examples=[120.0])
    request_id: RequestId | None = None
    model: str | None = Field(None, min_length=1, max_length=256)


class BusinessResponse(_Answer):
    """The event as stored."""

    event: str
    value: float
    request_id: str | None
    model: str | None


class DriftResultModel(_Answer):
    """The drift of one window of logged predictions, as the loop computed it."""

    id: int
    model: str
    version: str
    ts: float
    window_start: float | None
    window_end: float | None
    rows: int
    reference: str | None
    drifted: list[str]
    scores: dict[str, float]


class DriftResultsResponse(_Answer):
    """The newest stored drift results of one model, newest first."""

    model: str
    results: list[DriftResultModel]
