"""Typed settings: environment variables ``LOOPLINE_*`` over an optional ``loopline.toml``.

This is the only module that reads the environment. Precedence, highest first: arguments
passed to :func:`loopline.init`, environment variables, ``loopline.toml`` in the working
directory (or the file named by ``LOOPLINE_CONFIG``), the defaults below.

Example:
    >>> s = Settings(uri="sqlite:///tmp/x.db")
    >>> s.uri
    'sqlite:///tmp/x.db'
"""

from __future__ import annotations

import functools
import os
import re
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from loopline.errors import ConfigError

DEFAULT_HOME = ".loopline"

#: The ``LOOPLINE_ONLINE_STORE`` schemes that name a Redis server (TCP, TLS, a Unix socket);
#: the online store opens them and ``loopline doctor`` pings them, from this one list.
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")

#: Bounded waits on S3 (see :mod:`loopline.core.s3`): the defaults of the
#: ``LOOPLINE_S3_*_TIMEOUT_S`` and ``LOOPLINE_S3_MAX_ATTEMPTS`` settings, also used when an
#: S3 store is opened with storage options that name none. One request gives up after at
#: most ``attempts x (connect + read)`` seconds plus a few seconds of backoff: 105 s here.
S3_CONNECT_TIMEOUT_S = 5.0
S3_READ_TIMEOUT_S = 30.0
S3_MAX_ATTEMPTS = 3

#: Who acts for the HTTP request being served, set by the servers' auth gate
#: (``token:NAME``); it wins over ``LOOPLINE_ACTOR`` so that the audit log names the token
#: behind each change made through a server started with ``--auth``.
request_actor: ContextVar[str | None] = ContextVar("loopline_request_actor", default=None)


#: Query parameters of a URI that carry a secret (libpq's ``password`` and ``sslpassword``,
#: redis-py's ``password``, ...): :func:`display_uri` hides their values too.
_SECRET_QUERY = re.compile(
    r"([?&](?:password|passwd|pwd|sslpassword|secret|token)=)[^&#]*", re.IGNORECASE
)


def display_uri(uri: str) -> str:
    """``uri`` as it may be shown - in messages, logs, ``loopline doctor``, stored records:
    the password of its user part and the values of secret query parameters become ``***``.

    A team's ``LOOPLINE_URI`` (``postgresql://loopline:PASSWORD@db/...``) and
    ``LOOPLINE_ONLINE_STORE`` (``redis://:PASSWORD@cache/0``) usually hold one; a log line
    or a doctor report must never repeat it.

    Example:
        >>> display_uri("postgresql://loopline:s3cret@db.internal:5432/loopline")
        'postgresql://loopline:***@db.internal:5432/loopline'
        >>> display_uri("redis://:s3cret@cache:6379/0")
        'redis://:***@cache:6379/0'
        >>> display_uri("postgresql://loopline@db/loopline?password=s3cret&sslmode=require")
        'postgresql://loopline@db/loopline?password=***&sslmode=require'
        >>> display_uri("sqlite:///.loopline/loopline.db")
        'sqlite:///.loopline/loopline.db'
    """
    scheme, sep, rest = uri.partition("://")
    if sep:
        # The user part ends at the last "@" before the query: a password may hold a "/"
        # or an "@" its writer forgot to percent-encode, and must be hidden all the same.
        end = min((i for i in (rest.find(c) for c in "?#") if i >= 0), default=len(rest))
        userinfo, at, after = rest[:end].rpartition("@")
        user, colon, _password = userinfo.partition(":")
        if at and colon and "/" not in user:
            rest = f"{user}:***@{after}{rest[end:]}"
        uri = f"{scheme}://{rest}"
    return _SECRET_QUERY.sub(r"\1***", uri)


class _TomlSource(PydanticBaseSettingsSource):
    """Reads ``[loopline]`` (or the top level) of ``loopline.toml``."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self._data = _read_toml()
        _check_keys(self._data, settings_cls)

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._data.items() if k in self.settings_cls.model_fields}


def _config_path() -> Path:
    return Path(os.environ.get("LOOPLINE_CONFIG", "loopline.toml"))


def _read_toml() -> dict[str, Any]:
    path = _config_path()
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path} is not valid TOML: {exc}", hint="fix the file or unset LOOPLINE_CONFIG"
        ) from exc
    if "loopline" not in data:
        # Settings at the top level: tables there are other sections, not settings.
        return {k: v for k, v in data.items() if not isinstance(v, dict)}
    section = data["loopline"]
    return section if isinstance(section, dict) else {}


#: Keys of ``[loopline]`` that are not settings: the loop's policies (``[loopline.loop.*]``,
#: read by :func:`loopline.loop.policy.load_policies`).
_OTHER_KEYS = ("loop",)


def _check_keys(data: dict[str, Any], settings_cls: type[BaseSettings]) -> None:
    """Refuse a key of ``loopline.toml`` that is no setting: a misspelt ``url`` or
    ``artifact`` was ignored, and the process quietly used the embedded default store -
    a laptop's runs never reached the team's database."""
    import difflib

    known = settings_cls.model_fields
    for key in data:
        if key in known or key in _OTHER_KEYS:
            continue
        close = difflib.get_close_matches(key, list(known), n=1)
        raise ConfigError(
            f"{_config_path()}: {key!r} is not a Loopline setting",
            hint=(f"did you mean {close[0]!r}? " if close else "")
            + "the settings are the LOOPLINE_* variables in lower case without the prefix "
            "(`uri`, `artifacts`, `online_store`, ...)",
        )


class Settings(BaseSettings):
    """Every Loopline setting, with its environment variable ``LOOPLINE_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="LOOPLINE_", extra="ignore")

    home: Path = Field(Path(DEFAULT_HOME), description="Folder of the embedded default store.")
    uri: str | None = Field(
        None,
        description="Metadata store: sqlite:///path, postgresql://..., or http(s)://server. "
        "Default: sqlite under LOOPLINE_HOME.",
    )
    artifacts: str | None = Field(
        None,
        description="Artifact store: a folder path, file://..., or s3://bucket/prefix. "
        "Default: LOOPLINE_HOME/artifacts.",
    )
    spool: Path | None = Field(
        None,
        description="Local folder where the prediction log writes each answered request "
        "before the answer is sent, until its batch is stored (a subfolder per store). "
        "Local even when the stores are not. Default: LOOPLINE_HOME/spool/predictions.",
    )
    online_store: str | None = Field(
        None, description="Online feature store: sqlite:///path or redis://host:port/db."
    )
    ray_address: str | None = Field(None, description="Ray cluster address for the ray executor.")
    s3_endpoint_url: str | None = Field(None, description="S3-compatible endpoint URL.")
    s3_access_key_id: str | None = Field(None, description="S3 access key id.")
    s3_secret_access_key: SecretStr | None = Field(None, description="S3 secret access key.")
    s3_region: str | None = Field(None, description="S3 region name.")
    s3_connect_timeout_s: float = Field(
        S3_CONNECT_TIMEOUT_S,
        gt=0,
        description="S3: seconds to wait for a connection to the endpoint, per attempt.",
    )
    s3_read_timeout_s: float = Field(
        S3_READ_TIMEOUT_S,
        gt=0,
        description="S3: seconds an attempt waits for the endpoint to answer, or (Linux) to "
        "take more of an upload, before it is given up.",
    )
    s3_max_attempts: int = Field(
        S3_MAX_ATTEMPTS,
        ge=1,
        le=20,
        description="S3: attempts per request on timeouts, connection errors, throttling and "
        "5xx answers, after which BackendUnavailable names the endpoint. Worst case per "
        "request: attempts x (connect + read timeout) plus a few seconds of backoff.",
    )
    actor: str | None = Field(None, description="Who is acting, for the audit log. Default: $USER.")
    sqlite_busy_timeout_ms: int = Field(30_000, ge=0, description="SQLite busy timeout.")
    http_timeout_s: float = Field(
        60.0, gt=0, description="Remote mode: timeout of one request to a Loopline server."
    )
    http_retry_s: float = Field(
        120.0,
        ge=0,
        description="Remote mode: how long a request is retried, with backoff, on connection "
        "errors and 503 before BackendUnavailable is raised.",
    )
    db_retry_s: float = Field(
        30.0,
        ge=0,
        description="PostgreSQL: how long a metric write is retried, with backoff, while the "
        "database is unreachable or restarting (a write whose commit was cut off is looked "
        "up, never applied twice) before BackendUnavailable is raised.",
    )
    debug: bool = Field(False, description="Show tracebacks on errors.")
    max_request_mb: float = Field(
        64.0,
        gt=0,
        description="`loopline server`: largest request body in MB, artifact uploads "
        "excepted (413 beyond). `loopline serve` has its own: --max-body-mb.",
    )
    max_artifact_mb: float = Field(
        5120.0,
        gt=0,
        description="`loopline server`: largest artifact upload in MB (413 beyond).",
    )
    request_read_timeout_s: float = Field(
        60.0,
        gt=0,
        description="Servers: seconds a client has to send a request's headers, and the "
        "longest pause while it sends the body; beyond, the connection is closed (408 for "
        "late headers), so that slow clients cannot hold the server's connections.",
    )
    token: SecretStr | None = Field(
        None,
        description="Remote mode: the API token sent as 'Authorization: Bearer' to a server "
        "started with --auth (make one with `loopline tokens create`).",
    )
    auth: bool = Field(
        False,
        description="Servers: require an API token on every request but /health "
        "(`loopline server --auth`, `loopline serve --auth` set it).",
    )
    allowed_hosts: str | None = Field(
        None,
        description="Servers: Host header values answered besides localhost, 127.0.0.1 and "
        "[::1] (any port), comma separated: 'name', 'name:port', '*.domain', or '*' for any; "
        "others get 403 (DNS rebinding). `--allowed-hosts` sets it; unset, `loopline server` "
        "and `loopline serve` allow only those three on a loopback address and any Host on "
        "another (--host 0.0.0.0).",
    )
    auth_refresh_s: float = Field(
        5.0,
        gt=0,
        le=300,
        description="Servers with auth: seconds between reloads of the tokens, i.e. the "
        "longest a revoked token is still accepted.",
    )

    @field_validator("s3_endpoint_url")
    @classmethod
    def _endpoint_has_a_scheme(cls, value: str | None) -> str | None:
        # botocore's own words for "minio:9000" ("Invalid endpoint") named no setting, and
        # came only at the first upload.
        if value and not value.startswith(("http://", "https://")):
            raise ValueError(
                f"LOOPLINE_S3_ENDPOINT_URL={value!r} must begin with http:// or https:// "
                f"(e.g. https://{value})"
            )
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))

    @property
    def metadata_uri(self) -> str:
        """The metadata store URI, defaulting to SQLite under :attr:`home`."""
        return self.uri or f"sqlite:///{(self.home / 'loopline.db').as_posix()}"

    @property
    def artifacts_uri(self) -> str:
        """The artifact store location, defaulting to ``home/artifacts``."""
        return self.artifacts or str(self.home / "artifacts")

    @property
    def spool_dir(self) -> Path:
        """The prediction log's spool folder, defaulting to ``home/spool/predictions``."""
        return self.spool or self.home / "spool" / "predictions"

    @property
    def actor_name(self) -> str:
        """The name recorded in the audit log: the request's token, else this process's."""
        return (
            request_actor.get()
            or self.actor
            or os.environ.get("USER")
            or os.environ.get("USERNAME")
            or _account_name()
            or "unknown"
        )

    def s3_storage_options(self) -> dict[str, Any]:
        """Keyword arguments for ``s3fs.S3FileSystem`` built from the S3 settings.

        Example:
            >>> Settings(s3_read_timeout_s=2).s3_storage_options()["config_kwargs"]["read_timeout"]
            2.0
        """
        opts: dict[str, Any] = {}
        if self.s3_endpoint_url:
            opts["endpoint_url"] = self.s3_endpoint_url
        if self.s3_access_key_id:
            opts["key"] = self.s3_access_key_id
        if self.s3_secret_access_key:
            opts["secret"] = self.s3_secret_access_key.get_secret_value()
        if self.s3_region:
            opts["client_kwargs"] = {"region_name": self.s3_region}
        # Plain values only: the options travel to step workers in other processes.
        opts["config_kwargs"] = {
            "connect_timeout": self.s3_connect_timeout_s,
            "read_timeout": self.s3_read_timeout_s,
            "retries": {"mode": "standard", "total_max_attempts": self.s3_max_attempts},
        }
        return opts


@functools.cache
def _account_name() -> str | None:
    """This process's login name from the password database, or None where there is none.

    Containers, cron and systemd units often run without ``USER``: the audit log said
    'unknown' for what root (or the image's user) did.

    Example:
        >>> isinstance(_account_name(), str | None)
        True
    """
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name or None
    except (ImportError, AttributeError, KeyError):  # Windows; a uid with no entry
        return None


def load_settings(**overrides: Any) -> Settings:
    """Build settings from overrides, the environment and ``loopline.toml``.

    Example:
        >>> load_settings(uri="sqlite:///:memory:").uri
        'sqlite:///:memory:'
    """
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)
    except ValueError as exc:
        raise ConfigError(f"invalid Loopline setting: {exc}", hint="see README, Settings") from exc
