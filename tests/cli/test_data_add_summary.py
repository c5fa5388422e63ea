"""Rich's own test of a terminal, as the quick re-add repeats it to skip importing Rich."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from loopline.cli.data_add_summary import styled


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Closed(io.StringIO):
    def isatty(self) -> bool:
        raise ValueError("I/O operation on closed file")


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"FORCE_COLOR": "1"},
        {"FORCE_COLOR": ""},
        {"FORCE_COLOR": "0"},
        {"TTY_COMPATIBLE": "1"},
        {"TTY_COMPATIBLE": "0", "FORCE_COLOR": "1"},
        {"TTY_COMPATIBLE": "maybe"},
        {"NO_COLOR": "1"},
    ],
)
@pytest.mark.parametrize("stream", [io.StringIO, _Tty, _Closed])
def test_styled_agrees_with_rich(
    environ: dict[str, str], stream: type[io.StringIO], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR", "TTY_INTERACTIVE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    out = stream()
    assert styled(out, environ) == Console(file=out).is_terminal
