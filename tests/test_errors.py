from __future__ import annotations

import pytest

from loopline import errors


@pytest.mark.parametrize(
    ("cls", "status", "code"),
    [
        (errors.ConfigError, 500, 2),
        (errors.BackendUnavailable, 503, 2),
        (errors.InvalidInput, 422, 2),
        (errors.ContractViolation, 422, 3),
        (errors.NotFound, 404, 4),
        (errors.Conflict, 409, 5),
        (errors.IntegrityError, 500, 6),
        (errors.PermissionDenied, 403, 7),
    ],
    ids=lambda v: getattr(v, "__name__", str(v)),
)
def test_one_table_maps_status_and_exit_code(
    cls: type[errors.LooplineError], status: int, code: int
) -> None:
    exc = cls("boom", hint="do this")
    assert (exc.http_status, exc.exit_code) == (status, code)
    assert str(exc) == "boom (hint: do this)"


def test_every_error_class_is_in_the_table() -> None:
    classes = {
        c
        for c in vars(errors).values()
        if isinstance(c, type) and issubclass(c, errors.LooplineError)
    }
    assert classes == set(errors.ERROR_TABLE)
