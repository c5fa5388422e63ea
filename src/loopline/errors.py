"""One exception tree for all of Loopline; every error says what to do next.

The tree::

    LooplineError                   base: message + hint, an HTTP status, a CLI exit code
    ├── ConfigError                 a setting is wrong or missing (names the setting)
    ├── BackendUnavailable          a configured backend does not answer (names the setting)
    ├── InvalidInput                a caller passed a bad value (names the field)
    │   └── ContractViolation       data breaks its contract (column, rule, expected, actual)
    ├── NotFound                    an object that does not exist (names what was looked up)
    ├── Conflict                    the request clashes with stored state (e.g. a param re-logged)
    │   └── LostLeadership          a loop pass whose process no longer leads the loop
    ├── IntegrityError              stored bytes or rows fail verification (names the object)
    └── PermissionDenied            the caller lacks the role for the action

:data:`ERROR_TABLE` maps each class to its HTTP status and CLI exit code in one place; the
server and the CLI both read it, so a bad request is a 4xx on the wire and exit 2 in a shell.
"""

from __future__ import annotations

from dataclasses import dataclass


class LooplineError(Exception):
    """Base of every error Loopline raises on purpose.

    ``message`` says what went wrong, ``hint`` what to do about it.

    Example:
        >>> str(LooplineError("store is locked", hint="close the other writer"))
        'store is locked (hint: close the other writer)'
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message

    @property
    def http_status(self) -> int:
        """The HTTP status this error maps to (see :data:`ERROR_TABLE`)."""
        return _lookup(type(self)).http_status

    @property
    def exit_code(self) -> int:
        """The CLI exit code this error maps to (see :data:`ERROR_TABLE`)."""
        return _lookup(type(self)).exit_code

    @property
    def code(self) -> str:
        """A stable machine-readable name, e.g. ``NOT_FOUND``."""
        return _lookup(type(self)).code


def remedy(exc: BaseException, default: str) -> str:
    """What to do about ``exc``: its own hint when it is a :class:`LooplineError` with one
    (e.g. which process holds SQLite's lock), else ``default``. For errors that wrap it.

    Example:
        >>> remedy(LooplineError("locked", hint="end the stopped process"), "retry")
        'end the stopped process'
        >>> remedy(OSError("disk full"), "retry")
        'retry'
    """
    if isinstance(exc, LooplineError) and exc.hint:
        return exc.hint
    return default


class ConfigError(LooplineError):
    """A setting is invalid or missing; the message names the setting to fix."""


class BackendUnavailable(LooplineError):
    """A configured backend (database, bucket, folder, Redis) cannot be reached or written."""


class InvalidInput(LooplineError):
    """A value passed by the caller is invalid; the message names the field."""

    def __init__(self, message: str, *, field: str | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.field = field


class ContractViolation(InvalidInput):
    """Data breaks its contract."""


class NotFound(LooplineError):
    """The object looked up does not exist."""


class Conflict(LooplineError):
    """The request clashes with what is already stored."""


class LostLeadership(Conflict):
    """This process no longer runs the loop: another one took the loop lock (a newer
    leadership term), so the write of its pass was refused and the pass stops."""


class IntegrityError(LooplineError):
    """Stored data failed verification (hash mismatch, broken audit chain)."""


class PermissionDenied(LooplineError):
    """The caller is not allowed to do this."""


@dataclass(frozen=True)
class ErrorMapping:
    """How one error class shows itself over HTTP and in a shell."""

    http_status: int
    exit_code: int
    code: str


#: The single table from error class to HTTP status and CLI exit code.
ERROR_TABLE: dict[type[LooplineError], ErrorMapping] = {
    ConfigError: ErrorMapping(500, 2, "CONFIG_ERROR"),
    BackendUnavailable: ErrorMapping(503, 2, "BACKEND_UNAVAILABLE"),
    ContractViolation: ErrorMapping(422, 3, "CONTRACT_VIOLATION"),
    InvalidInput: ErrorMapping(422, 2, "INVALID_INPUT"),
    NotFound: ErrorMapping(404, 4, "NOT_FOUND"),
    LostLeadership: ErrorMapping(409, 5, "LOST_LEADERSHIP"),
    Conflict: ErrorMapping(409, 5, "CONFLICT"),
    IntegrityError: ErrorMapping(500, 6, "INTEGRITY_ERROR"),
    PermissionDenied: ErrorMapping(403, 7, "PERMISSION_DENIED"),
    LooplineError: ErrorMapping(500, 1, "ERROR"),
}


def _lookup(cls: type[LooplineError]) -> ErrorMapping:
    for klass in cls.__mro__:
        if klass in ERROR_TABLE:
            return ERROR_TABLE[klass]
    return ERROR_TABLE[LooplineError]
