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

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from loopline.errors import ConfigError

DEFAULT_HOME = ".loopline"


class _TomlSource(PydanticBaseSettingsSource):
    """Reads ``[loopline]`` (or the top level) of ``loopline.toml``."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self._data = _read_toml()

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._data.items() if k in self.settings_cls.model_fields}


def _read_toml() -> dict[str, Any]:
    path = Path(os.environ.get("LOOPLINE_CONFIG", "loopline.toml"))
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path} is not valid TOML: {exc}", hint="fix the file or unset LOOPLINE_CONFIG"
        ) from exc
    section = data.get("loopline", data)
    return section if isinstance(section, dict) else {}


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
    online_store: str | None = Field(
        None, description="Online feature store: sqlite:///path or redis://host:port/db."
    )
    ray_address: str | None = Field(None, description="Ray cluster address for the ray executor.")
    s3_endpoint_url: str | None = Field(None, description="S3-compatible endpoint URL.")
    s3_access_key_id: str | None = Field(None, description="S3 access key id.")
    s3_secret_access_key: SecretStr | None = Field(None, description="S3 secret access key.")
    s3_region: str | None = Field(None, description="S3 region name.")
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
    debug: bool = Field(False, description="Show tracebacks on errors.")

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
    def actor_name(self) -> str:
        """The name recorded in the audit log for actions of this process."""
        return self.actor or os.environ.get("USER") or os.environ.get("USERNAME") or "unknown"

    def s3_storage_options(self) -> dict[str, Any]:
        """Keyword arguments for ``s3fs.S3FileSystem`` built from the S3 settings."""
        opts: dict[str, Any] = {}
        if self.s3_endpoint_url:
            opts["endpoint_url"] = self.s3_endpoint_url
        if self.s3_access_key_id:
            opts["key"] = self.s3_access_key_id
        if self.s3_secret_access_key:
            opts["secret"] = self.s3_secret_access_key.get_secret_value()
        if self.s3_region:
            opts["client_kwargs"] = {"region_name": self.s3_region}
        return opts


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
