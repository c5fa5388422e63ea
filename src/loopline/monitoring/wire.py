"""The bodies and answers of the monitoring routes ``/api/v1/monitor/...``, shared by the
server (:mod:`loopline.server.api_v1`) and the remote SDK (:mod:`.remote`).

Limits: at most :data:`MAX_LABELS` request ids per ``POST /monitor/labels`` (the SDK splits
longer lists into several requests); request ids and event names of 1-200 characters.

Example:
    >>> LabelsRequest(request_ids=["r-1"], labels=[1]).labels
    [1]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

from loopline.core.columns import MAX_REQUEST_ID_CHARS
from loopline.errors import InvalidInput

#: The most request ids (and labels) one ``POST /api/v1/monitor/labels`` may carry.
MAX_LABELS = 10_000

#: The longest text label.
MAX_LABEL_CHARS = 1000


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


def checked_labels(request_ids: Sequence[Any], labels: Sequence[Any]) -> None:
    """Refuse what ``POST /monitor/labels`` refuses with a 422: InvalidInput naming the
    first bad ``request_ids[i]`` or ``labels[i]`` (the SDK checks before storing or
    sending anything).

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
    for name, values, check, hint in rules:
        for i, value in enumerate(values):
            try:
                check(value)
            except ValueError as exc:
                raise InvalidInput(
                    f"{name}[{i}] is {value!r}: {exc}", field=f"{name}[{i}]", hint=hint
                ) from None


_ID_HINT = "send the request id the model server answered with (a text)"
_LABEL_HINT = "send a number, a text, true/false or None (a missing label) per id"


Label = Annotated[
    Any,
    AfterValidator(check_label),
    WithJsonSchema({"type": ["number", "string", "boolean", "null"]}),
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore")


class LabelsRequest(_Request):
    """Ground truth for logged predictions: one label per request id, in the same order."""

    request_ids: list[RequestId] = Field(
        min_length=1, max_length=MAX_LABELS, examples=[["a1b2c3d4-1", "a1b2c3d4-2"]]
    )
    labels: list[Label] = Field(min_length=1, max_length=MAX_LABELS, examples=[[1, 0]])
    model: str | None = Field(
        None, min_length=1, max_length=256, description="match only this model's predictions"
    )


class LabelsResponse(_Answer):
    """How many labels matched a logged prediction; the first unknown ids.

    ``unmatched_ids`` lists at most 20 of the ``unmatched`` ids; they are stored all the
    same (their prediction may still be in a model server's buffer).
    """

    received: int
    matched: int
    unmatched: int
    unmatched_ids: list[str]
    duplicates: int = 0


class BusinessRequest(_Request):
    """One business event with its value, optionally tied to a request and a model."""

    event: str = Field(min_length=1, max_length=200, examples=["rebooking_cost"])
    value: float = Field(examples=[120.0])
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
