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
import contextlib
import json
import os
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
from typing import IO, Any

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


def _text(data: bytes) -> str:
    # As subprocess.run(text=True) decodes: universal newlines.
    return data.decode().replace("\r\n", "\n").replace("\r", "\n")


def _fork(
    run: dict[str, str],
    args: Sequence[str],
    env: Mapping[str, str],
    cwd: Path | str | None,
    fds: tuple[int, int, int],
) -> tuple[int, socket.socket] | None:
    """Ask the fork server to start ``run`` (a module or a script) with ``args``; return the
    child's pid and the connection its exit status comes on, or None where the fork server
    cannot run it (start it from scratch then). The caller keeps its ``fds``."""
    server = _fork_server()
    if _startup_env(env) != server[2]:
        return None
    folder = str(Path(cwd).absolute() if cwd is not None else Path.cwd())
    request = json.dumps({**run, "args": list(args), "env": dict(env), "cwd": folder}).encode()
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(server[1])
        socket.send_fds(conn, [request], list(fds))
        pid = int(_line(conn, None) or b"")
    except (OSError, ValueError):  # the fork server is gone: no command was started
        conn.close()
        return None
    return pid, conn


def _line(conn: socket.socket, timeout: float | None) -> bytes | None:
    """One line from the fork server (the pid, then the exit status), None on a timeout.

    Reads a byte at a time: nothing after the line may be consumed."""
    conn.settimeout(timeout)
    line = b""
    try:
        while not line.endswith(b"\n"):
            byte = conn.recv(1)
            if not byte:
                raise OSError("the fork server closed the connection")
            line += byte
    except (TimeoutError, BlockingIOError):
        if line:  # a partial line: the rest is on its way
            conn.settimeout(None)
            return line + (_line(conn, None) or b"")
        return None
    return line


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
    proc = popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise subprocess.TimeoutExpired(argv, timeout, _text(out), _text(err)) from None
    return subprocess.CompletedProcess(argv, proc.wait(), _text(out), _text(err))


class ForkedProcess:
    """A process the fork server started for :func:`popen`, with the parts of
    :class:`subprocess.Popen` the tests use. Its parent is the fork server's waiter, which
    sends its exit status (negative for a signal, as Popen's ``returncode``)."""

    def __init__(
        self,
        args: list[str],
        pid: int,
        conn: socket.socket,
        pipes: dict[str, int],
        text: bool,
    ) -> None:
        self.args = args
        self.pid = pid
        self.returncode: int | None = None
        self._conn = conn
        self._readers: list[threading.Thread] | None = None  # communicate's, once started
        self._read: list[Any] = [None, None]
        mode = "r" if text else "rb"  # text as Popen's: the locale's encoding, universal newlines
        self.stdout: IO[Any] | None = (
            open(pipes["stdout"], mode) if "stdout" in pipes else None  # noqa: SIM115
        )
        self.stderr: IO[Any] | None = (
            open(pipes["stderr"], mode) if "stderr" in pipes else None  # noqa: SIM115
        )

    def poll(self) -> int | None:
        """The exit status, or None while the process runs."""
        return self._status(0)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to end; raise TimeoutExpired after ``timeout`` seconds."""
        status = self._status(timeout)
        if status is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return status

    def _status(self, timeout: float | None) -> int | None:
        if self.returncode is None:
            line = _line(self._conn, timeout)
            if line is None:
                return None
            self.returncode = int(line)
            self._conn.close()
        return self.returncode

    def communicate(self, timeout: float | None = None) -> tuple[Any, Any]:
        """Read stdout and stderr to their end and wait, as Popen.communicate does; after a
        timeout, a second call goes on reading where the first stopped."""
        if self._readers is None:
            self._readers = [
                threading.Thread(target=self._drain, args=(i, f), daemon=True)
                for i, f in enumerate((self.stdout, self.stderr))
                if f is not None
            ]
            for reader in self._readers:
                reader.start()
        deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
        for reader in self._readers:
            reader.join(max(0.0, deadline - time.monotonic()))
            if reader.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
        self.wait(max(0.0, deadline - time.monotonic()))
        for f in (self.stdout, self.stderr):
            if f is not None:
                f.close()
        return self._read[0], self._read[1]

    def _drain(self, i: int, f: IO[Any]) -> None:
        self._read[i] = f.read()  # text mode: what a readline() already buffered comes first

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` unless the process has already ended."""
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        """SIGTERM, as Popen.terminate."""
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL, as Popen.kill."""
        self.send_signal(signal.SIGKILL)

    def __enter__(self) -> ForkedProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        for f in (self.stdout, self.stderr):
            if f is not None:
                f.close()
        self.wait()


#: What :func:`popen` returns.
Process = ForkedProcess | subprocess.Popen[Any]


def _target(stream: Any, pipes: dict[str, int], name: str, opened: list[int]) -> int:
    """The file descriptor the child gets for ``stream`` (Popen's stdout= or stderr=)."""
    if stream is None:
        return {"stdout": 1, "stderr": 2}[name]
    if stream == subprocess.DEVNULL:
        fd = os.open(os.devnull, os.O_WRONLY)
        opened.append(fd)
        return fd
    if stream == subprocess.PIPE:
        read, write = os.pipe()
        pipes[name] = read
        opened.append(write)
        return write
    return stream if isinstance(stream, int) else int(stream.fileno())


def popen(
    argv: Sequence[str],
    *,
    stdout: Any = None,
    stderr: Any = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    text: bool = False,
) -> Process:
    """``subprocess.Popen(argv, ...)`` for ``[sys.executable, "-m", MODULE, ...]`` or
    ``[sys.executable, SCRIPT, ...]``, forked from the fork server (the imports done once);
    anything else, or where the fork server cannot serve it, a real Popen. stdin is
    /dev/null; stdout and stderr as Popen takes them (None, DEVNULL, PIPE, a file, and
    STDOUT for stderr).

    Example:
        >>> # popen([sys.executable, "-m", "loopline.cli.main", "server"], stderr=PIPE)
    """
    env = dict(os.environ if env is None else env)
    exe, *rest = argv
    run: dict[str, str] | None = None
    if exe == sys.executable and len(rest) >= 2 and rest[0] == "-m":
        run, args = {"module": rest[1]}, rest[2:]
    elif exe == sys.executable and rest and rest[0].endswith(".py"):
        run, args = {"script": str(Path(cwd or ".", rest[0]).absolute())}, rest[1:]
    if run is not None:
        pipes: dict[str, int] = {}
        opened: list[int] = []
        null = os.open(os.devnull, os.O_RDONLY)
        opened.append(null)
        try:
            out = _target(stdout, pipes, "stdout", opened)
            err = out if stderr == subprocess.STDOUT else _target(stderr, pipes, "stderr", opened)
            forked = _fork(run, args, env, cwd, (null, out, err))
        finally:
            for fd in opened:
                os.close(fd)
        if forked is not None:
            return ForkedProcess(list(argv), *forked, pipes, text)
        for fd in pipes.values():
            os.close(fd)
    return subprocess.Popen(list(argv), stdout=stdout, stderr=stderr, env=env, cwd=cwd, text=text)


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
