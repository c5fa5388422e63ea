"""The JSON text of a request body, read into Python values: what the model server's
endpoints do with the bytes before any of them looks at the body's shape.

Separate from :mod:`loopline.serving.inputs` (the shapes of a predict body) because the
feedback endpoint reads its body the same way, and because what is refused here is about
text, not rows: a body that is not UTF-8, a string holding a lone surrogate escape
(:class:`MalformedBody`, answered with 400), and a key given twice in one object (an
:class:`~loopline.errors.InvalidInput`, 422).

Example:
    >>> loads(b'{"instances": [[1.0, 2.0]]}')
    {'instances': [[1.0, 2.0]]}
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from loopline.errors import InvalidInput


class MalformedBody(ValueError):
    """The body is not JSON text (answered with 400); ``field`` says where, when known.

    Example:
        >>> MalformedBody("the body is not valid UTF-8").field
        'body'
    """

    def __init__(self, message: str, field: str = "body", hint: str = "send a JSON object"):
        super().__init__(message)
        self.field = field
        self.hint = hint


#: A lone surrogate: in a string the standard parser made, what an escape like \ud800 with
#: no partner became (a pair becomes one character). Such a string is not text: it has no
#: UTF-8, so no answer echoing it could be written.
_SURROGATE = re.compile("[\ud800-\udfff]")
#: The JSON escape of a surrogate (\ud800 to \udfff): only a body holding one is searched.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_TEXT_HINT = (
    "send JSON text in UTF-8; a character beyond U+FFFF is escaped as a pair, e.g. \\ud83d\\ude00"
)


def loads(body: bytes) -> Any:
    """Parse JSON text; NaN and Infinity are accepted (the signature then rejects them).

    A body that is not UTF-8 (a byte order mark is allowed), or whose strings hold a lone
    surrogate escape (``\\ud800`` without its partner), is :class:`MalformedBody` naming
    the byte offset or the place of the string: neither is text.

    Example:
        >>> loads(b'{"x": NaN}')["x"]
        nan
        >>> try:
        ...     loads(b'{"k": "\\\\udfff"}')
        ... except MalformedBody as exc:
        ...     print(exc.field)
        k
    """
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        error = exc
    else:
        # Outside strings a colon ends each key, so as many colons as members counted in
        # the parsed objects means that no key was given twice (one C count; the members
        # counted are a lower bound). Fewer members - a key twice, a colon inside a string
        # or an object deeper than a row - and the body is parsed again, exactly.
        if body.count(b":") != _members(payload):
            _refuse_duplicate_keys(body)
        return payload
    # The standard parser reads NaN/Infinity literals. Given bytes, it would also decode
    # surrogates encoded in UTF-8 (surrogatepass) and it keeps lone surrogate escapes; both
    # are refused here, as orjson refuses them.
    try:
        text = body.decode(json.detect_encoding(body))
    except UnicodeDecodeError as bad:
        encoding = bad.encoding.upper().replace("-SIG", "")
        raise MalformedBody(
            f"the body is not valid {encoding}: byte {body[bad.start]:#04x} at offset "
            f"{bad.start} ({bad.reason})",
            hint=_TEXT_HINT,
        ) from None
    try:
        payload = json.loads(text, object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError):
        raise MalformedBody(f"the body is not valid JSON: {error}") from None
    if _SURROGATE_ESCAPE.search(text):
        _refuse_lone_surrogates(payload)
    return payload


def _members(payload: Any) -> int:
    """The members of the objects in ``payload`` at the top, as its values and as items of
    its lists (where every shape of a body keeps its objects): a lower bound of them all.

    Example:
        >>> _members({"instances": [{"a": 1, "b": 2}, {"a": 3, "b": 4}], "key": "k"})
        6
    """
    if type(payload) is list:
        return sum(len(x) for x in payload if type(x) is dict)
    if type(payload) is not dict:
        return 0
    count = len(payload)
    for value in payload.values():
        if type(value) is dict:
            count += len(value)
        elif type(value) is list and value and type(value[0]) is dict:  # not rows as lists
            count += sum(len(x) for x in value if type(x) is dict)
    return count


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object's members as a dict; InvalidInput naming a key given twice."""
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                shown = key if len(key) <= 40 else key[:40] + "..."
                raise InvalidInput(
                    f"the body gives the key {shown!r} twice in one object; a JSON parser "
                    "keeps one of the values, so which one counts would be a guess",
                    field=shown,
                    hint="send each key once per object",
                )
            seen.add(key)
    return found


def _refuse_duplicate_keys(body: bytes) -> None:
    """Parse ``body`` (JSON that orjson took) again, refusing a key given twice."""
    try:
        json.loads(body.decode("utf-8-sig"), object_pairs_hook=_unique_keys)
    except RecursionError:
        raise MalformedBody(
            "the body nests arrays or objects too deeply", hint="send rows of plain values"
        ) from None


def _refuse_lone_surrogates(payload: Any) -> None:
    """MalformedBody naming the first string (or object key) with a lone surrogate."""
    # Iterative: a body nested as deep as the parser allows must not overflow the stack.
    stack: list[tuple[Any, tuple[Any, ...]]] = [(payload, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            found = _SURROGATE.search(value)
            if found:
                raise _lone_surrogate(path, "the string", found.group())
        elif isinstance(value, dict):
            for k, v in value.items():
                found = _SURROGATE.search(k)
                if found:
                    shown = ascii(k if len(k) <= 40 else k[:40] + "...")
                    raise _lone_surrogate(path, f"the key {shown}", found.group())
                stack.append((v, (*path, k)))
        elif isinstance(value, list):
            stack.extend((v, (*path, i)) for i, v in enumerate(value))


def _lone_surrogate(path: tuple[Any, ...], subject: str, surrogate: str) -> MalformedBody:
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
    return MalformedBody(
        f"{where or 'the body'}: {subject} holds a lone surrogate ({ascii(surrogate)[1:-1]}); "
        "a surrogate escape without its partner is not a character, so the body is not text",
        field=where or "body",
        hint=_TEXT_HINT,
    )
