"""``ll.monitor`` against a Loopline server: labels and business events over
``/api/v1/monitor``, when ``LOOPLINE_URI`` is ``http(s)://``.

The requests and answers are the models of :mod:`.wire`, which the server uses too. A long
list of labels goes in requests of :data:`~.limits.MAX_LABELS` ids; their reports are added
up (the first 20 unknown ids are kept). Errors keep their class across the wire (a 422
becomes :class:`~loopline.errors.InvalidInput` naming the field).

Example:
    >>> # ll.init(uri="http://127.0.0.1:5000")
    >>> # ll.monitor.log_labels(["r-1"], [1]).matched
"""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from loopline.config import Settings
from loopline.errors import InvalidInput
from loopline.monitoring.limits import MAX_LABELS, SHOWN_IDS, first_distinct
from loopline.monitoring.wire import (
    BusinessRequest,
    BusinessResponse,
    DriftResultsResponse,
    LabelsRequest,
    LabelsResponse,
)
from loopline.tracking.remote import HttpTransport

API = "/api/v1/monitor"
_M = TypeVar("_M", bound=BaseModel)
_transports: dict[str, HttpTransport] = {}
_lock = threading.Lock()


def _checked(kind: type[_M], /, **values: Any) -> _M:
    """The request body, or InvalidInput naming the first bad field (as the server would)."""
    try:
        return kind.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise InvalidInput(f"{where}: {err['msg']}", field=where) from exc


def _shifted(exc: InvalidInput, offset: int) -> InvalidInput:
    """The server's error about ``labels[i]`` (``rows[i]``) of one request, as
    ``labels[offset + i]``."""
    found = re.fullmatch(r"(labels|rows)\[(\d+)\]", exc.field or "")
    if found is None or offset == 0:
        return exc
    name, at = found.group(1), offset + int(found.group(2))
    message = re.sub(r"^label \d+ ", f"label {at} ", exc.message)
    message = re.sub(rf"^{name}\[\d+\]", f"{name}[{at}]", message)
    return InvalidInput(message, field=f"{name}[{at}]", hint=exc.hint)


def transport(settings: Settings) -> HttpTransport:
    """The process's HTTP transport to the server of ``settings`` (one per server URL).

    Example:
        >>> # transport(get_context().settings).base_url
    """
    with _lock:
        found = _transports.get(settings.metadata_uri)
        if found is None:
            found = HttpTransport.from_settings(settings)
            weakref.finalize(found, found.close)
            _transports[settings.metadata_uri] = found
        return found


def log_labels(
    settings: Settings,
    ids: Sequence[str],
    labels: Sequence[Any],
    model: str | None,
    rows: Sequence[int | None] | str | None = None,
) -> LabelsResponse:
    """POST the labels (and their ``rows``), :data:`MAX_LABELS` at a time; one report for
    all of them (its ``warnings`` are the server's of the last request; the SDK words
    them again from the sums).

    Labels are stored content-addressed and the last write wins, so a request retried
    after a lost answer stores the same labels again, harmlessly.

    Example:
        >>> # log_labels(settings, ["r-1"], [1], None).matched
    """
    each = rows if rows is not None and not isinstance(rows, str) else None
    keys = list(ids) if each is None else list(zip(ids, each, strict=True))
    total = LabelsResponse(
        received=0, matched=0, unmatched=0, unmatched_ids=[], duplicates=len(keys) - len(set(keys))
    )
    for start in range(0, len(ids), MAX_LABELS):
        body = _checked(
            LabelsRequest,
            request_ids=list(ids[start : start + MAX_LABELS]),
            labels=list(labels[start : start + MAX_LABELS]),
            model=model,
            rows=rows if each is None else list(each[start : start + MAX_LABELS]),
        )
        try:
            raw = transport(settings).request(
                "POST",
                f"{API}/labels",
                body=body.model_dump_json(exclude_none=True).encode(),
                idempotent=True,
            )
        except InvalidInput as exc:
            raise _shifted(exc, start) from exc
        part = LabelsResponse.model_validate_json(raw.content)
        total.received += part.received
        total.matched += part.matched
        total.unmatched += part.unmatched
        total.unmatched_ids.extend(part.unmatched_ids)
        total.no_row += part.no_row
        total.no_row_ids.extend(part.no_row_ids)
        total.out_of_range += part.out_of_range
        total.out_of_range_rows.extend(part.out_of_range_rows)
    # Each request's answer lists an id once; an id in two requests is still one id.
    total.unmatched_ids = first_distinct(total.unmatched_ids, SHOWN_IDS)
    total.no_row_ids = first_distinct(total.no_row_ids, SHOWN_IDS)
    del total.out_of_range_rows[SHOWN_IDS:]
    return total


def log_business(
    settings: Settings, event: str, value: float, request_id: str | None, model: str | None
) -> BusinessResponse:
    """POST one business event (not retried once sent: a repeat would count it twice).

    Example:
        >>> # log_business(settings, "refund", 12.0, "r-1", None)
    """
    body = _checked(BusinessRequest, event=event, value=value, request_id=request_id, model=model)
    raw = transport(settings).request(
        "POST",
        f"{API}/business",
        body=body.model_dump_json(exclude_none=True).encode(),
        idempotent=False,
    )
    return BusinessResponse.model_validate_json(raw.content)


def read_drift(settings: Settings, model: str, limit: int = 100) -> DriftResultsResponse:
    """GET the newest stored drift results of ``model``.

    Example:
        >>> # read_drift(settings, "flights").results[0].drifted
    """
    raw = transport(settings).request(
        "GET", f"{API}/drift", params={"model": model, "limit": limit}, idempotent=True
    )
    return DriftResultsResponse.model_validate_json(raw.content)
