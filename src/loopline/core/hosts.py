"""Which ``Host`` headers a server answers: protection against DNS rebinding.

A web page on ``attacker.example`` can make its own name resolve to ``127.0.0.1`` after it
loaded (DNS rebinding); from then on the browser treats requests to
``http://attacker.example:5000`` as same-origin, sends them to a server on this machine and
lets the page read the answers - a server without ``--auth`` could be read and written by
any site its user visits. Such requests still carry ``Host: attacker.example:5000``, so
both servers (``loopline server``, ``loopline serve``) refuse a Host they do not know with
**403** before anything else runs.

Always allowed: ``localhost``, ``127.0.0.1`` and ``[::1]``, on any port (no other site can
use these names). ``LOOPLINE_ALLOWED_HOSTS`` (or ``--allowed-hosts``) adds names, comma
separated: ``models.internal`` (any port), ``models.internal:8080`` (that port only),
``*.example.com`` (any name under example.com) or ``*`` (any Host: no check). The commands
default it by the address they bind: a loopback address checks (nothing added); another
address (``--host 0.0.0.0``) defaults to ``*``, because the names such a server is reached
by (a Service, a load balancer, a pod IP) are not known here - set it to your server's
names to check there too. ``/health`` (and the model server's ``/livez``) is answered
whatever the Host, for probes that call a pod by its IP.

The check costs one set lookup per request: every Host value let in is remembered.

Example:
    >>> hosts = AllowedHosts.parse("models.internal, *.example.com")
    >>> [hosts.allows(h) for h in (b"localhost:5000", b"a.example.com", b"evil.example:80")]
    [True, True, False]
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from loopline.errors import ConfigError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
# Any ASGI app, however its caller spells the scope's type (Starlette's or a plain dict).
ASGIApp = Callable[..., Awaitable[None]]

#: Names only this machine can stand behind.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
SETTING = "LOOPLINE_ALLOWED_HOSTS"
OPTION = "--allowed-hosts"
#: Paths answered whatever the Host (probes call a pod by its IP address).
#: ``/livez`` is the model server's liveness probe; ``loopline server`` has none (a 404).
OPEN_PATHS = frozenset({"/health", "/livez"})
_MEMO_SIZE = 1024
_NAME = re.compile(r"(\*\.)?[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?|\[[0-9a-f:.]+\]")


def _split(host: str) -> tuple[str, str] | None:
    """``(name, port)`` of a Host value (port "" when absent), or None when malformed."""
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            return None
        name, rest = host[: end + 1], host[end + 1 :]
        if rest and not rest.startswith(":"):
            return None
        port = rest[1:]
    elif ":" in host:
        name, _, port = host.partition(":")
    else:
        name, port = host, ""
    if port and not port.isdigit():
        return None
    return name, port


class AllowedHosts:
    """The Host values a server answers (see the module docstring).

    Example:
        >>> AllowedHosts.parse("").describe()
        'localhost, 127.0.0.1, [::1]'
        >>> AllowedHosts.parse("*").any
        True
    """

    def __init__(
        self, names: frozenset[str], exact: frozenset[str], suffixes: tuple[str, ...], any: bool
    ) -> None:
        self.names = names  # any port
        self.exact = exact  # name:port
        self.suffixes = suffixes  # ".example.com"
        self.any = any
        self._seen: set[bytes] = set()

    @classmethod
    def parse(cls, value: str | None) -> AllowedHosts:
        """The loopback names plus the comma-separated entries of ``value``.

        An entry that is no host name (a URL, a path, a stray character) is a
        :class:`ConfigError` naming it.

        Example:
            >>> sorted(AllowedHosts.parse("a.internal:8080").exact)
            ['a.internal:8080']
        """
        names, exact, suffixes, any_host = set(LOOPBACK_NAMES), set(), [], False
        for raw in (value or "").split(","):
            entry = raw.strip().lower()
            if not entry:
                continue
            if entry == "*":
                any_host = True
                continue
            parts = _split(entry)
            if (
                parts is None
                or not _NAME.fullmatch(parts[0])
                or (parts[0].startswith("*.") and parts[1])
            ):
                raise ConfigError(
                    f"allowed host {raw.strip()!r} is not a host name",
                    hint=f"{SETTING} / {OPTION} takes names, comma separated: "
                    "'models.internal', 'models.internal:8080', '*.example.com' (any port) "
                    "or '*' for any",
                )
            name, port = parts
            if name.startswith("*."):
                suffixes.append(name[1:])
            elif port:
                exact.add(entry)
            else:
                names.add(name)
        return cls(frozenset(names), frozenset(exact), tuple(suffixes), any_host)

    def describe(self) -> str:
        """The allowed names, for messages.

        Example:
            >>> AllowedHosts.parse("b.internal").describe()
            'localhost, 127.0.0.1, [::1], b.internal'
        """
        if self.any:
            return "any"
        extra = sorted(self.names - set(LOOPBACK_NAMES)) + sorted(self.exact)
        extra += [f"*{s}" for s in self.suffixes]
        return ", ".join([*LOOPBACK_NAMES, *extra])

    def allows(self, host: bytes) -> bool:
        """True when a request with this Host header value may be answered.

        Example:
            >>> AllowedHosts.parse("").allows(b"[::1]:8080")
            True
        """
        if self.any or host in self._seen:
            return True
        ok = self._check(host.decode("latin-1").lower())
        if ok:
            if len(self._seen) >= _MEMO_SIZE:  # bounded: a client may send many names
                self._seen.clear()  # in place: HostCheck holds this set
            self._seen.add(host)
        return ok

    def _check(self, host: str) -> bool:
        parts = _split(host)
        if parts is None:
            return False
        name, port = parts
        if name in self.names or f"{name}:{port}" in self.exact:
            return True
        return any(name.endswith(s) for s in self.suffixes)


#: Builds the refusal: (path, message, hint) -> an ASGI app answering it.
Refusal = Callable[[str, str, str], ASGIApp]


class HostCheck:
    """ASGI middleware: 403 for a Host header that :class:`AllowedHosts` does not allow.

    A request without a Host header (HTTP/1.0) goes on: a browser always sends one.

    Example:
        >>> # app = HostCheck(app, AllowedHosts.parse(ctx.settings.allowed_hosts), refuse)
    """

    def __init__(self, app: ASGIApp, hosts: AllowedHosts, refuse: Refusal) -> None:
        self.app = app
        self.hosts = hosts
        self.refuse = refuse
        self._seen = hosts._seen  # the Host values let in so far: one set lookup each

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":  # no websockets on these servers
            for key, value in scope["headers"]:
                if key == b"host":
                    if value not in self._seen and not self._allows(scope, value):
                        await self._refuse(scope, value, receive, send)
                        return
                    break
        await self.app(scope, receive, send)

    def _allows(self, scope: Scope, host: bytes) -> bool:
        return self.hosts.allows(host) or scope["path"] in OPEN_PATHS

    async def _refuse(self, scope: Scope, host: bytes, receive: Receive, send: Send) -> None:
        shown = host.decode("latin-1")
        name = (_split(shown.lower()) or (shown,))[0]
        message = (
            f"Host {shown!r} is not allowed on this server: a page of another site can "
            "reach it by that name (DNS rebinding)"
        )
        hint = (
            f"if {name!r} is a name of this server, start it with {OPTION} {name} (or "
            f"{SETTING}={name}); allowed now: {self.hosts.describe()}"
        )
        await self.refuse(scope["path"], message, hint)(scope, receive, send)


def protect(app: ASGIApp, hosts: AllowedHosts, refuse: Refusal) -> ASGIApp:
    """``app`` behind a :class:`HostCheck`, or ``app`` itself when any Host is allowed.

    Example:
        >>> async def app(scope, receive, send): ...
        >>> protect(app, AllowedHosts.parse("*"), lambda *a: app) is app
        True
    """
    return app if hosts.any else HostCheck(app, hosts, refuse)
