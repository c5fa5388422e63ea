"""``loopline ...`` in a real child process on a test's store, as a user runs it.

Each command is a process of its own (its own environment, working folder, arguments,
stdin, stdout, stderr and exit status), forked from a per-worker process that has already
imported what ``loopline`` imports (``tests/cli_zygote.py``). A fresh ``python -m
loopline.cli.main`` spends ~0.5 s of CPU importing SQLAlchemy, pydantic, Typer and pandas
before it does anything; the suite runs the CLI some 300 times on two cores. Where the
fork server cannot serve a call (an environment that changes how Python starts, such as
``PYTHONHASHSEED``), the command starts from scratch instead.
"""

from __future__ import annotations

import atexit
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from loopline.core.context import Context

_ZYGOTE = Path(__file__).with_name("cli_zygote.py")
_lock = threading.Lock()
_server: tuple[subprocess.Popen[bytes], str, dict[str, str]] | None = None


def _startup_env(env: Mapping[str, str]) -> dict[str, str]:
    """The variables Python reads as it starts (all but PYTHONPATH, which the fork sets):
    the settings and the locale (the encoding of stdout)."""
    return {
        k: v
        for k, v in env.items()
        if (k.startswith("PYTHON") and k != "PYTHONPATH") or k in ("LANG", "LC_ALL", "LC_CTYPE")
    }


def _fork_server() -> tuple[subprocess.Popen[bytes], str, dict[str, str]]:
    global _server
    with _lock:
        if _server is None or _server[0].poll() is not None:
            folder = tempfile.mkdtemp(prefix="loopline-cli-")
            path = str(Path(folder) / "fork.sock")
            # PYTHONPATH is kept: the preload must import the loopline the tests import (a
            # clone's src/ on PYTHONPATH, not the copy installed in the environment), or
            # every command would run the installed one.
            env = {
                k: v
                for k, v in os.environ.items()
                if not k.startswith("LOOPLINE_") and k != "PYTEST_CURRENT_TEST"
            }
            proc = subprocess.Popen(
                [sys.executable, str(_ZYGOTE), path],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
                cwd=folder,
            )
            assert proc.stdout is not None
            if proc.stdout.readline() != b"ready\n":
                proc.kill()
                raise RuntimeError("the loopline fork server did not start")
            atexit.register(proc.kill)
            atexit.register(shutil.rmtree, folder, True)
            _server = (proc, path, _startup_env(env))
        return _server


def _read_all(fds: dict[int, bytearray], deadline: float) -> bool:
    """Read each pipe to its end; False when ``deadline`` passes first."""
    with selectors.DefaultSelector() as sel:
        for fd in fds:
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            for key, _ in sel.select(left):
                chunk = os.read(key.fd, 1 << 16)
                if chunk:
                    fds[key.fd] += chunk
                else:
                    sel.unregister(key.fd)
    return True


def _text(data: bytes) -> str:
    # As subprocess.run(text=True) decodes: universal newlines.
    return data.decode().replace("\r\n", "\n").replace("\r", "\n")


def run_cli(
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path | str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """``loopline ARGS`` with exactly ``env`` in ``cwd``, output captured as text; raises
    :class:`subprocess.TimeoutExpired` (the process killed) after ``timeout`` seconds, as
    ``subprocess.run`` does.

    Example:
        >>> # run_cli(["runs", "ls"], env=os.environ).returncode
    """
    argv = [sys.executable, "-m", "loopline.cli.main", *args]
    server = _fork_server()
    if _startup_env(env) != server[2]:
        return _fresh(argv, env, cwd, timeout)
    folder = str(Path(cwd).absolute() if cwd is not None else Path.cwd())
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    null = os.open(os.devnull, os.O_RDONLY)
    request = json.dumps({"args": list(args), "env": dict(env), "cwd": folder}).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        try:
            conn.connect(server[1])
            socket.send_fds(conn, [request], [null, out_w, err_w])
            answers = conn.makefile("rb")
            pid = int(answers.readline())
        except (OSError, ValueError):  # the fork server is gone: no command was started
            os.close(out_r)
            os.close(err_r)
            return _fresh(argv, env, cwd, timeout)
        finally:
            for fd in (null, out_w, err_w):
                os.close(fd)
        output = {out_r: bytearray(), err_r: bytearray()}
        try:
            finished = _read_all(output, time.monotonic() + timeout)
            if not finished:
                os.kill(pid, signal.SIGKILL)
            code = int(answers.readline())
        finally:
            os.close(out_r)
            os.close(err_r)
    stdout, stderr = _text(bytes(output[out_r])), _text(bytes(output[err_r]))
    if not finished:
        raise subprocess.TimeoutExpired(argv, timeout, stdout, stderr)
    return subprocess.CompletedProcess(argv, code, stdout, stderr)


def _fresh(
    argv: list[str], env: Mapping[str, str], cwd: Path | str | None, timeout: float
) -> subprocess.CompletedProcess[str]:
    """The command in a new interpreter, as ``python -m`` starts it."""
    return subprocess.run(
        argv, capture_output=True, text=True, env=dict(env), cwd=cwd, timeout=timeout
    )


def run_loopline(
    ctx: Context,
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run ``loopline ARGS`` (in ``cwd``) against ``ctx``'s store with a wide terminal
    (tables unwrapped); ``env`` adds or overrides variables.

    Example:
        >>> # run_loopline(ctx, "runs", "ls", "--json").stdout
    """
    full = {
        **os.environ,
        "LOOPLINE_URI": ctx.settings.metadata_uri,
        "LOOPLINE_ARTIFACTS": ctx.settings.artifacts_uri,
        "COLUMNS": "200",
        **(env or {}),
    }
    return run_cli(args, env=full, cwd=cwd, timeout=timeout)
