"""Loopline: a closed-loop MLOps platform in one package.

Example:
    >>> import loopline as ll
    >>> ctx = ll.init()  # ./.loopline: SQLite + a local artifact folder
"""

from __future__ import annotations

__version__ = "0.1.0"

from typing import TYPE_CHECKING

from loopline.errors import (
    BackendUnavailable,
    ConfigError,
    Conflict,
    ContractViolation,
    IntegrityError,
    InvalidInput,
    LooplineError,
    NotFound,
    PermissionDenied,
)

# Stage APIs load on first use so that `import loopline` stays fast (the model server's
# hot path imports it) and a stage's heavy dependencies load only when that stage is used.
if TYPE_CHECKING:
    from loopline.config import Settings, load_settings
    from loopline.core.context import Context, get_context, init

_LAZY: dict[str, tuple[str, str | None]] = {
    # settings and the context: SQLAlchemy and Alembic load only when a store is used
    "Settings": ("loopline.config", "Settings"),
    "load_settings": ("loopline.config", "load_settings"),
    "Context": ("loopline.core.context", "Context"),
    "get_context": ("loopline.core.context", "get_context"),
    "init": ("loopline.core.context", "init"),
    # tracking (stage 2)
    "start_run": ("loopline.tracking.api", "start_run"),
    "active_run": ("loopline.tracking.api", "active_run"),
    "get_run": ("loopline.tracking.api", "get_run"),
    "search_runs": ("loopline.tracking.api", "search_runs"),
    "metric_history": ("loopline.tracking.api", "metric_history"),
    # data (stage 1): modules used as namespaces, e.g. ll.datasets.register(...)
    "datasets": ("loopline.data.datasets", None),
    "contracts": ("loopline.data.contracts", None),
    "features": ("loopline.data.features", None),
    "gates": ("loopline.delivery.gates", None),
    "monitor": ("loopline.monitoring.api", None),
    "deploy": ("loopline.serving.deploy", "deploy"),
    "registry": ("loopline.training.registry", None),
    "step": ("loopline.training.pipeline", "step"),
    "pipeline": ("loopline.training.pipeline", "pipeline"),
    "tune": ("loopline.training.tuning", "tune"),
    "reproduce": ("loopline.training.reproduce", "reproduce"),
}


def __getattr__(name: str) -> object:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'loopline' has no attribute {name!r}")
    import importlib

    module = importlib.import_module(target[0])
    value = module if target[1] is None else getattr(module, target[1])
    globals()[name] = value
    return value


__all__ = [
    "BackendUnavailable",
    "ConfigError",
    "Conflict",
    "Context",
    "ContractViolation",
    "IntegrityError",
    "InvalidInput",
    "LooplineError",
    "NotFound",
    "PermissionDenied",
    "Settings",
    "__version__",
    "get_context",
    "init",
    "load_settings",
]
