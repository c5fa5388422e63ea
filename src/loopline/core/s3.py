"""Bounded waits on S3: every S3 client Loopline opens gives up within a known time.

botocore's connect and read timeouts alone do not bound a request made through aiohttp
(found when a test hung for more than ten minutes on an S3 server that stopped answering):

* botocore asks for ``100 Continue`` before every upload body, and aiohttp starts its read
  timer only once the body is sent, so a server that accepts the connection and then says
  nothing is waited for forever. :class:`BoundedHTTPSession` drops that header: the body
  goes at once and the read timeout bounds the wait for the answer.
* aiohttp has no write timeout: a body larger than the socket buffers stalls for good when
  the server stops reading. On Linux the session's sockets carry ``TCP_USER_TIMEOUT`` equal
  to the read timeout, so the kernel drops a connection whose data sits unacknowledged (or
  unsent behind a zero window) that long.
* s3fs retries each call five times around botocore's own attempts, which multiplies the
  wait: its loop is cut to one pass, so ``LOOPLINE_S3_MAX_ATTEMPTS`` is the whole budget.

One request therefore ends within ``attempts x (connect + read timeout)`` plus a few seconds
of backoff, and :func:`translated` turns what it ends with into
:class:`~loopline.errors.BackendUnavailable` naming the endpoint and the settings.

This module imports botocore: import it where an S3 store is opened, not at the top of
modules that local-only code paths load.

Example:
    >>> opts = bounded_options({"endpoint_url": "http://minio:9000"})
    >>> opts["config_kwargs"]["read_timeout"], opts["config_kwargs"]["retries"]["mode"]
    (30.0, 'standard')
"""

from __future__ import annotations

import contextlib
import inspect
import socket
from collections.abc import Iterator, Mapping
from typing import Any

import aiohttp
from aiobotocore.httpsession import AIOHTTPSession
from botocore.exceptions import (
    BotoCoreError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from loopline.config import S3_CONNECT_TIMEOUT_S, S3_MAX_ATTEMPTS, S3_READ_TIMEOUT_S
from loopline.errors import BackendUnavailable

#: What to change when S3 does not answer, appended to every hint of :func:`unavailable`.
WAIT_SETTINGS = (
    "LOOPLINE_S3_CONNECT_TIMEOUT_S, LOOPLINE_S3_READ_TIMEOUT_S and LOOPLINE_S3_MAX_ATTEMPTS "
    "bound the wait"
)

# The endpoint gave no usable answer in time (as opposed to answering with an error).
_SILENCE: tuple[type[BaseException], ...] = (
    ConnectTimeoutError,
    ReadTimeoutError,
    EndpointConnectionError,
    ConnectionClosedError,
    TimeoutError,  # fsspec's FSTimeoutError and asyncio's are TimeoutErrors
    ConnectionError,
)

_HAS_SOCKET_FACTORY = "socket_factory" in inspect.signature(aiohttp.TCPConnector).parameters


def is_s3(url: str) -> bool:
    """Whether ``url`` names an S3 location (``s3://`` or ``s3a://``).

    Example:
        >>> is_s3("s3://bucket/x"), is_s3("gcs://bucket/x"), is_s3("/tmp/x")
        (True, False, False)
    """
    return url.startswith(("s3://", "s3a://"))


class BoundedHTTPSession(AIOHTTPSession):  # type: ignore[misc]  # aiobotocore is untyped
    """aiobotocore's aiohttp session with no unbounded wait (see the module docstring).

    Given to s3fs as ``config_kwargs["http_session_cls"]`` by :func:`bounded_options`;
    botocore builds one per client with the client's ``(connect, read)`` timeouts.

    Example:
        >>> # s3fs.S3FileSystem(config_kwargs={"http_session_cls": BoundedHTTPSession})
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        timeout = kwargs.get("timeout")
        read_s = timeout[1] if isinstance(timeout, list | tuple) else timeout
        if read_s and _HAS_SOCKET_FACTORY and hasattr(socket, "TCP_USER_TIMEOUT"):
            args_ = dict(kwargs.get("connector_args") or {})
            args_.setdefault("socket_factory", _user_timeout_socket(float(read_s)))
            kwargs["connector_args"] = args_
        super().__init__(*args, **kwargs)

    async def send(self, request: Any) -> Any:
        """Send ``request`` without ``Expect: 100-continue`` (not signed, safe to drop)."""
        if "Expect" in request.headers:
            del request.headers["Expect"]
        return await super().send(request)


def _user_timeout_socket(seconds: float) -> Any:
    """An aiohttp socket factory whose sockets give up on unacknowledged data after ``seconds``."""
    millis = max(1, int(seconds * 1000))

    def make(addr_info: tuple[Any, ...]) -> socket.socket:
        family, type_, proto = addr_info[0], addr_info[1], addr_info[2]
        sock = socket.socket(family, type_, proto)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, millis)
        return sock

    return make


def bounded_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``options`` for ``s3fs.S3FileSystem`` with every wait bounded.

    Timeouts and the retry policy the caller gave (``config_kwargs``, as
    :meth:`loopline.config.Settings.s3_storage_options` builds them) are kept; missing ones
    get the defaults of the ``LOOPLINE_S3_*`` settings. The HTTP session is always
    :class:`BoundedHTTPSession`.

    Example:
        >>> bounded_options({"config_kwargs": {"read_timeout": 2}})["config_kwargs"]["read_timeout"]
        2
    """
    opts = dict(options or {})
    config = dict(opts.get("config_kwargs") or {})
    config.setdefault("connect_timeout", S3_CONNECT_TIMEOUT_S)
    config.setdefault("read_timeout", S3_READ_TIMEOUT_S)
    config.setdefault("retries", {"mode": "standard", "total_max_attempts": S3_MAX_ATTEMPTS})
    config["http_session_cls"] = BoundedHTTPSession
    opts["config_kwargs"] = config
    return opts


def s3_filesystem(options: Mapping[str, Any] | None) -> Any:
    """An ``s3fs.S3FileSystem`` whose calls each end within the bounded waits.

    Example:
        >>> # fs = s3_filesystem({"endpoint_url": "http://minio:9000", "key": ..., "secret": ...})
    """
    import s3fs

    return _one_pass(s3fs.S3FileSystem(**bounded_options(options)))


def url_to_fs(url: str, options: Mapping[str, Any] | None) -> tuple[Any, str]:
    """The fsspec file system and root path for ``url``; S3 ones with bounded waits.

    Example:
        >>> fs, root = url_to_fs("memory://backups/x", None); root
        '/backups/x'
    """
    import fsspec

    if is_s3(url):
        fs, root = fsspec.core.url_to_fs(url, **bounded_options(options))
        return _one_pass(fs), str(root)
    fs, root = fsspec.core.url_to_fs(url, **dict(options or {}))
    return fs, str(root)


def _one_pass(fs: Any) -> Any:
    # s3fs's own retry loop (a class attribute, 5) wraps botocore's attempts; one pass leaves
    # the retry budget to botocore's standard mode, which retries the same transient errors.
    fs.retries = 1
    return fs


def endpoint_of(fs: Any) -> str:
    """The endpoint an S3 file system talks to, for messages.

    Example:
        >>> class Fs: endpoint_url = "http://minio:9000"; client_kwargs = {}
        >>> endpoint_of(Fs())
        'http://minio:9000'
    """
    url = getattr(fs, "endpoint_url", None) or (getattr(fs, "client_kwargs", None) or {}).get(
        "endpoint_url"
    )
    return str(url) if url else "AWS S3 (LOOPLINE_S3_ENDPOINT_URL is not set)"


def _speaks_s3(fs: Any) -> bool:
    protocol = getattr(fs, "protocol", ())
    return "s3" in ((protocol,) if isinstance(protocol, str) else tuple(protocol))


def _waits_of(fs: Any) -> str:
    config = getattr(fs, "config_kwargs", None) or {}
    retries = config.get("retries") or {}
    attempts = retries.get("total_max_attempts") or (
        retries["max_attempts"] + 1 if "max_attempts" in retries else "?"
    )
    return (
        f"{attempts} attempt(s), connect timeout {config.get('connect_timeout', '?')} s, "
        f"read timeout {config.get('read_timeout', '?')} s"
    )


def unavailable(what: str, fs: Any, exc: BaseException, hint: str) -> BackendUnavailable:
    """The error for ``exc`` raised by an S3 call doing ``what``, naming the endpoint.

    A timeout or a failed connection says how long was waited and which settings bound the
    wait; any other failure carries S3's own words.

    Example:
        >>> class Fs: protocol = "s3"; endpoint_url = "http://minio:9000"; config_kwargs = {}
        >>> err = unavailable("writing x", Fs(), TimeoutError("slow"), "check the server")
        >>> "http://minio:9000 did not answer" in str(err)
        True
    """
    if not _speaks_s3(fs):  # another fsspec store (a backup to gcs://, memory://, ...)
        return BackendUnavailable(f"{what}: {exc}", hint=hint)
    endpoint = endpoint_of(fs)
    if isinstance(exc, _SILENCE):
        return BackendUnavailable(
            f"{what}: the S3 endpoint {endpoint} did not answer ({_waits_of(fs)}): {exc}",
            hint=f"{hint}; check that the S3 server is up and reachable from this machine; "
            f"{WAIT_SETTINGS}",
        )
    return BackendUnavailable(f"{what}: the S3 endpoint {endpoint} failed: {exc}", hint=hint)


@contextlib.contextmanager
def translated(what: str, fs: Any, hint: str) -> Iterator[None]:
    """Raise :func:`unavailable`'s error for any S3 failure in the block but a missing key.

    ``FileNotFoundError`` passes through: callers turn it into their own ``NotFound``.

    Example:
        >>> # with translated("uploading x to s3://b/p", fs, "check DEST"): fs.put_file(a, b)
    """
    try:
        yield
    except FileNotFoundError:
        raise
    except (OSError, BotoCoreError) as exc:
        raise unavailable(what, fs, exc, hint) from exc
