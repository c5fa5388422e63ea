"""Loopline: a closed-loop MLOps platform in one package.

Example:
    >>> import loopline as ll
    >>> ctx = ll.init()  # ./.loopline: SQLite + a local artifact folder
"""

from __future__ import annotations

__version__ = "0.1.0"

from loopline.config import Settings, load_settings
from loopline.core.context import Context, get_context, init
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
