r"""JSON request bodies read as UTF-8 text, with no lone UTF-16 surrogate in a string.

Starlette reads a JSON body with :func:`json.loads` on its bytes, which decodes them with
``surrogatepass`` and turns an escape such as ``"\ud800"`` into a lone surrogate: a Python
``str`` that is not text. Such a string fails later, wherever it is encoded (the database
driver, orjson rendering the error that quotes it): a 500 instead of the client's error.
:class:`StrictJsonRoute` gives its endpoints a request whose :meth:`StrictJsonRequest.json`
refuses both forms, raising :class:`json.JSONDecodeError` with the character's place, which
FastAPI turns into its ``json_invalid`` validation error (a 400 or 422 naming the body).

NaN and Infinity stay accepted: MLflow's client sends them as bare literals.

A body of more than :data:`MAX_JSON_VALUES` values (object members and array items, nested
ones included) is refused the same way, before any endpoint model sees it: validating such a
body against a model that refuses it makes one error per value, and FastAPI turns each into
a dict - 12 MB of unknown keys took 10 s of CPU and 1.3 GB of memory, and 64 MB (the body
limit) would have taken the server down. No endpoint takes that many (the largest, 10,000
labels with their ids and rows, has about 30,000). A body nested deeper than Python's
parser goes (``[[[[...``) is refused as invalid JSON too.

Example:
    >>> loads_text(b'{"a": "\\ud83d\\ude00"}')  # a surrogate pair is one character
    {'a': '😀'}
    >>> try:
    ...     loads_text(b'{"a": "\\ud800"}')
    ... except json.JSONDecodeError as exc:
    ...     print(exc.pos, exc.msg)
    7 a lone UTF-16 surrogate (\ud800) is not text; send the string as UTF-8
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

#: Most values (object members and array items, at any depth) a JSON request body may hold.
MAX_JSON_VALUES = 100_000
#: An escape of a UTF-16 surrogate, high (D800-DBFF) or low (DC00-DFFF).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def loads_text(body: bytes) -> Any:
    r"""``body`` parsed as JSON, if it is UTF-8 text with no lone surrogate escape.

    Raises :class:`json.JSONDecodeError` (with the place of the offending byte or escape)
    for bytes that are not UTF-8 and for a ``\uD8xx``-``\uDFxx`` escape not part of a pair.

    Example:
        >>> loads_text(b'{"x": NaN}')
        {'x': nan}
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        shown = body.decode("utf-8", "replace")
        raise json.JSONDecodeError(
            f"byte {exc.start} is not UTF-8 ({exc.reason}); send the body as UTF-8 text",
            shown,
            len(body[: exc.start].decode("utf-8", "replace")),
        ) from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError(
            "the body is nested too deeply; send a flatter JSON document", text, 0
        ) from None
    if _SURROGATE_ESCAPE.search(text) is not None:
        _refuse_lone_surrogate(text)
    # Each value takes at least two characters ("1,"): a shorter body cannot be too many.
    if len(body) > 2 * MAX_JSON_VALUES and count_values(data) > MAX_JSON_VALUES:
        raise json.JSONDecodeError(
            f"the body holds more than {MAX_JSON_VALUES} values (object members and array "
            "items); send fewer per request",
            text,
            0,
        )
    return data


def count_values(data: Any) -> int:
    """How many values ``data`` holds: its objects' members and arrays' items, at any depth.

    Example:
        >>> count_values({"a": [1, 2, {"b": None}], "c": "x"})
        6
    """
    count = 0
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            count += len(item)
            stack.extend(v for v in item.values() if isinstance(v, dict | list))
        elif isinstance(item, list):
            count += len(item)
            stack.extend(v for v in item if isinstance(v, dict | list))
    return count


def _refuse_lone_surrogate(text: str) -> None:
    """Raise at the first surrogate escape of ``text`` not paired high-then-low.

    Only reached when the cheap search found one: a pair (an emoji written escaped) passes.
    """
    for found in _SURROGATE_ESCAPE.finditer(text):
        start = found.start()
        # An escaped backslash before it ("\\ud800") makes it plain text, not an escape.
        slashes = len(text[:start]) - len(text[:start].rstrip("\\"))
        if slashes % 2:
            continue
        unit = int(found.group()[2:], 16)
        if unit >= 0xDC00:  # a low half: fine only right after a high half
            if start >= 6 and _is_high(text[start - 6 : start]) and not _escaped(text, start - 6):
                continue
        else:
            follow = _SURROGATE_ESCAPE.match(text, start + 6)
            if follow is not None and int(follow.group()[2:], 16) >= 0xDC00:
                continue
        raise json.JSONDecodeError(
            f"a lone UTF-16 surrogate ({found.group()}) is not text; send the string as UTF-8",
            text,
            start,
        )


def _is_high(escape: str) -> bool:
    found = _SURROGATE_ESCAPE.fullmatch(escape)
    return found is not None and int(escape[2:], 16) < 0xDC00


def _escaped(text: str, start: int) -> bool:
    before = text[:start]
    return (len(before) - len(before.rstrip("\\"))) % 2 == 1


class StrictJsonRequest(Request):
    """A request whose :meth:`json` is :func:`loads_text`.

    Example:
        >>> StrictJsonRequest({"type": "http", "method": "POST", "headers": []}).method
        'POST'
    """

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads_text(await self.body())
        return self._json


class StrictJsonRoute(APIRoute):
    """A FastAPI route whose endpoint reads its JSON body with :func:`loads_text`.

    Example:
        >>> # router = APIRouter(route_class=StrictJsonRoute)
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            # The body is not read yet (the handler reads it): a new request object over
            # the same scope and receive channel reads it the strict way.
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return strict_handler
