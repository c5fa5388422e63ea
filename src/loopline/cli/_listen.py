"""What ``loopline server`` and ``loopline serve`` say when they start: where, and with auth?"""

from __future__ import annotations

import ipaddress
import os
from typing import TYPE_CHECKING

from loopline.cli._common import err_console

#: The --allowed-hosts help of both servers (loopline server, loopline serve).
ALLOWED_HOSTS_HELP = (
    "Host header names answered besides localhost, 127.0.0.1 and [::1], comma "
    "separated ('name', 'name:port', '*.domain', '*' for any); others get 403 (DNS "
    "rebinding). Default: LOOPLINE_ALLOWED_HOSTS, else none on a loopback --host and "
    "'*' on another."
)

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


def configure_hosts(host: str, allowed_hosts: str | None) -> str:
    """Set the Host names the server answers (``LOOPLINE_ALLOWED_HOSTS``) for this process
    and uvicorn's workers, and return them; a bad name is a ConfigError here, at start.

    ``allowed_hosts`` (``--allowed-hosts``) wins; then the setting (environment,
    ``loopline.toml``); else, bound to a loopback address, only ``localhost``,
    ``127.0.0.1`` and ``[::1]`` (the names a DNS rebinding attack cannot use), and on any
    other address any Host (``*``): its names - a Service, a load balancer, a pod IP - are
    not known here. Call it before the context is first built.

    Example:
        >>> # configure_hosts("0.0.0.0", None) -> '*'
    """
    from loopline.config import load_settings
    from loopline.core.hosts import AllowedHosts

    if allowed_hosts is None:
        allowed_hosts = load_settings().allowed_hosts
    if allowed_hosts is None:
        allowed_hosts = "" if is_loopback(host) else "*"
    AllowedHosts.parse(allowed_hosts)
    os.environ["LOOPLINE_ALLOWED_HOSTS"] = allowed_hosts
    return allowed_hosts


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
    from loopline.core.hosts import OPTION, AllowedHosts

    hosts = AllowedHosts.parse(ctx.settings.allowed_hosts)
    names = (
        f"any Host name ({OPTION} NAME,... limits it, against DNS rebinding)"
        if hosts.any
        else f"Host {hosts.describe()} only ({OPTION} adds names)"
    )
    err_console.print(
        f"{what} listening on http://{shown}:{port} ({where}); "
        f"auth {'ON: every request but /health needs a token' if auth else 'OFF'}; {names}",
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
