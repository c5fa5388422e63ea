"""What ``loopline server`` and ``loopline serve`` say when they start: where, and with auth?"""

from __future__ import annotations

import ipaddress
import os
from typing import TYPE_CHECKING

from loopline.cli._common import err_console

if TYPE_CHECKING:
    from loopline.core.context import Context


def is_loopback(host: str) -> bool:
    """True when ``host`` is reachable from this machine only.

    Example:
        >>> is_loopback("127.0.0.1"), is_loopback("0.0.0.0"), is_loopback("localhost")
        (True, False, True)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def enable_auth(auth: bool) -> None:
    """Pass ``--auth`` on to the settings of this process and of uvicorn's workers.

    Call it before the context is first built.

    Example:
        >>> # enable_auth(True); get_context().settings.auth -> True
    """
    if auth:
        os.environ["LOOPLINE_AUTH"] = "1"


def announce(what: str, host: str, port: int, *, ctx: Context) -> None:
    """Print the address bound and whether tokens are required; warn when that is unsafe.

    Example:
        >>> # announce("loopline server", "127.0.0.1", 5000, ctx=get_context())
    """
    auth = ctx.settings.auth
    active_tokens = None
    if auth:
        from loopline.core.auth import count_active

        active_tokens = count_active(ctx.engine)
    where = "loopback only" if is_loopback(host) else "reachable from the network"
    shown = f"[{host}]" if ":" in host else host
    err_console.print(
        f"{what} listening on http://{shown}:{port} ({where}); "
        f"auth {'ON: every request but /health needs a token' if auth else 'OFF'}",
        highlight=False,
    )
    if not auth and not is_loopback(host):
        err_console.print(
            f"[bold yellow]warning:[/] {host} is not a loopback address and auth is off: "
            "anyone who can reach this port can read and change everything. Start with --auth "
            "(and put a TLS proxy in front), or bind --host 127.0.0.1.",
            highlight=False,
        )
    if auth and active_tokens == 0:
        err_console.print(
            "[bold yellow]warning:[/] no active API token yet, so every request will get 401: "
            "make one with `loopline tokens create --role admin`",
            highlight=False,
        )
