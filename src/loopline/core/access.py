"""Which role an HTTP request needs: an explicit table of (method, route pattern) -> role.

Both servers describe their endpoints in one :class:`AccessTable` each
(``loopline.server.access``, ``loopline.serving.auth``) and look every request up in it
before anything else runs. A route is written as FastAPI writes it (``/runs/{run_id}``,
``/artifacts/{path:path}``); the role is ``viewer``, ``editor``, ``admin`` or
:data:`PUBLIC` (no token needed, e.g. ``/health``). A request the table does not name gets
:data:`DENY` from :meth:`AccessTable.lookup` - default deny; the servers decide what an
unnamed path that reaches no endpoint at all answers (a 404 for a valid token).

``HEAD`` is looked up as ``GET``. Static routes are a dict lookup; parametrised ones are
tried in table order, each a compiled regex, and the answer is remembered for the next
request to the same path (at most :data:`MEMO_SIZE` paths, then the memo starts over).

Example:
    >>> table = AccessTable([("GET", "/runs/{run_id}", "viewer"), ("GET", "/health", PUBLIC)])
    >>> table.lookup("GET", "/runs/abc"), table.lookup("DELETE", "/runs/abc")
    ('viewer', 'deny')
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

from loopline.core.auth import ROLES, Role

PUBLIC: Literal["public"] = "public"
DENY: Literal["deny"] = "deny"
Need = Role | Literal["public", "deny"]
Rule = tuple[str, str, Need]
MEMO_SIZE = 4096
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(:path)?\}")


def compile_route(pattern: str) -> re.Pattern[str]:
    """A regex matching the paths of the FastAPI-style route ``pattern``.

    Example:
        >>> bool(compile_route("/a/{x}/b/{p:path}").fullmatch("/a/1/b/c/d.txt"))
        True
    """
    out, last = [], 0
    for m in _PARAM.finditer(pattern):
        out.append(re.escape(pattern[last : m.start()]))
        out.append(".*" if m.group(2) else "[^/]+")
        last = m.end()
    out.append(re.escape(pattern[last:]))
    return re.compile("".join(out))


class AccessTable:
    """The role each (method, route) needs; see the module docstring.

    Example:
        >>> AccessTable([("POST", "/runs", "editor")]).lookup("POST", "/runs")
        'editor'
    """

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules: list[Rule] = []
        self._static: dict[tuple[str, str], Need] = {}
        self._patterns: list[tuple[str, re.Pattern[str], Need]] = []
        self._paths: list[re.Pattern[str]] = []
        self._memo: dict[tuple[str, str], Need] = {}
        for method, pattern, need in rules:
            if need not in (*ROLES, PUBLIC, DENY):
                raise ValueError(f"{method} {pattern}: unknown role {need!r}")
            key = (method.upper(), pattern)
            if key in self._static or any(r[:2] == key for r in self.rules):
                raise ValueError(f"{method} {pattern} is in the access table twice")
            self.rules.append((key[0], pattern, need))
            if _PARAM.search(pattern):
                regex = compile_route(pattern)
                self._patterns.append((key[0], regex, need))
                self._paths.append(regex)
            else:
                self._static[key] = need
                self._paths.append(re.compile(re.escape(pattern)))

    def lookup(self, method: str, path: str) -> Need:
        """The role ``method path`` needs, or :data:`DENY` if the table does not name it.

        Example:
            >>> AccessTable([]).lookup("GET", "/anything")
            'deny'
        """
        method = "GET" if method == "HEAD" else method
        key = (method, path)
        found = self._static.get(key) or self._memo.get(key)
        if found is not None:
            return found
        found = DENY
        for rule_method, regex, need in self._patterns:
            if rule_method == method and regex.fullmatch(path):
                found = need
                break
        if len(self._memo) >= MEMO_SIZE:
            self._memo = {}  # bounded: a scan of made-up paths cannot grow it
        self._memo[key] = found
        return found

    def knows_path(self, path: str) -> bool:
        """True when some rule, of any method, matches ``path``.

        Example:
            >>> AccessTable([("POST", "/runs", "editor")]).knows_path("/runs")
            True
        """
        return any(regex.fullmatch(path) for regex in self._paths)

    def covers(self, method: str, pattern: str) -> bool:
        """True when the table has a rule for exactly this method and route pattern.

        Example:
            >>> AccessTable([("GET", "/a/{x}", "viewer")]).covers("GET", "/a/{x}")
            True
        """
        method = "GET" if method == "HEAD" else method
        return any(m == method and p == pattern for m, p, _ in self.rules)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header value, else None.

    Example:
        >>> bearer_token("Bearer ll_abc"), bearer_token("Basic eDp5")
        ('ll_abc', None)
    """
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def is_json_media_type(content_type: str) -> bool:
    """Whether a ``Content-Type`` value says JSON: ``application/json`` or
    ``application/*+json``, in any case, parameters (``; charset=utf-8``) aside.

    Both servers take a request body only when it says so: a web page on another site can
    make a browser send a form or an untyped body (``text/plain``) without asking the
    server, but a JSON body cross-site only after a CORS preflight that neither server
    grants - so a body of any other type is refused, never parsed (against CSRF).

    Example:
        >>> is_json_media_type("application/json; charset=utf-8"), is_json_media_type("text/plain")
        (True, False)
    """
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or (
        kind.startswith("application/") and kind.endswith("+json")
    )
