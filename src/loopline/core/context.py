"""The process-wide Loopline context: settings plus the opened stores.

:func:`loopline.init` builds one; every SDK call uses :func:`get_context`, which builds the
embedded default (``./.loopline``) on first use. The embedded database migrates itself on
first open.

Example:
    >>> import tempfile
    >>> ctx = init(uri="sqlite:///:memory:", artifacts=tempfile.mkdtemp())
    >>> ctx.engine.dialect.name
    'sqlite'
"""

from __future__ import annotations

import threading
from functools import cached_property
from typing import TYPE_CHECKING, Any

from loopline.config import Settings, load_settings
from loopline.core.artifacts import ArtifactStore, open_artifact_store
from loopline.errors import ConfigError

# SQLAlchemy (the engine, the audit log) loads on first use: work that needs no database
# yet (a dataset's bytes being copied) can start without waiting ~0.2 s for it.
if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from loopline.core import audit


class Context:
    """Settings and the stores they name, opened lazily and once."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()

    @property
    def is_remote(self) -> bool:
        """True when the metadata URI is a Loopline server (``http(s)://``)."""
        return self.settings.metadata_uri.startswith(("http://", "https://"))

    @cached_property
    def engine(self) -> Engine:
        """The metadata database engine, migrated to the newest schema."""
        if self.is_remote:
            raise ConfigError(
                "this operation needs direct database access but LOOPLINE_URI is a server URL",
                hint="run it on the server, or set LOOPLINE_URI to the database",
            )
        from loopline.core.db import create_engine_for
        from loopline.core.db_migrations import ensure_schema

        engine = create_engine_for(
            self.settings.metadata_uri, busy_timeout_ms=self.settings.sqlite_busy_timeout_ms
        )
        ensure_schema(engine)
        return engine

    @cached_property
    def artifacts(self) -> ArtifactStore:
        """The artifact store."""
        return open_artifact_store(self.settings.artifacts_uri, self.settings.s3_storage_options())

    def audit(self, conn: Any, **event: Any) -> audit.AuditEvent:
        """Append an audit event in ``conn``'s transaction, as this process's actor."""
        from loopline.core import audit

        event.setdefault("actor", self.settings.actor_name)
        return audit.append(conn, **event)

    def close(self) -> None:
        """Dispose of the database engine's connections."""
        if "engine" in self.__dict__:
            self.__dict__.pop("engine").dispose()


_current: Context | None = None
_current_lock = threading.Lock()


def init(uri: str | None = None, artifacts: str | None = None, **settings: Any) -> Context:
    """Point Loopline at a metadata store and an artifact store; return the context.

    Example:
        >>> import tempfile
        >>> _ = init(uri="sqlite:///:memory:", artifacts=tempfile.mkdtemp())
    """
    global _current
    ctx = Context(load_settings(uri=uri, artifacts=artifacts, **settings))
    with _current_lock:
        if _current is not None:
            _current.close()
        _current = ctx
    return ctx


def get_context() -> Context:
    """The current context, building the default from settings on first use."""
    global _current
    with _current_lock:
        if _current is None:
            _current = Context(load_settings())
        return _current
