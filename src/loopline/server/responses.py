"""A JSON response rendered by orjson (fast, and it handles NaN, numpy and datetimes)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse


class OrjsonResponse(JSONResponse):
    """``JSONResponse`` rendered with orjson.

    Example:
        >>> OrjsonResponse({"a": 1}).body
        b'{"a":1}'
    """

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
