"""A process that has imported the ``loopline`` CLI once and forks a child per command.

A command is ``python -m loopline.cli.main ARGS`` (or another module) or ``python SCRIPT
ARGS``: the servers and the writer processes the tests start are forked here too, not only
the short CLI calls.

Run as a script by :mod:`tests.cli_run` (never imported by the tests): ``python
tests/cli_zygote.py SOCKET``. It imports what nearly every ``loopline`` command imports
(SQLAlchemy, pydantic, Typer, the tracking API, pandas) and the two servers' apps with what
they import as they start, then
serves requests on the Unix socket ``SOCKET``: each names the module or script, the
arguments, the environment and the working folder, and carries the child's stdin, stdout
and stderr as file descriptors. For each, a waiter is forked, which forks the command's
process, sends its pid, waits for it and sends its exit status. The command's process sets
its environment, folder, ``sys.path`` and ``sys.argv`` as ``python -m MODULE ARGS`` (or
``python SCRIPT ARGS``) would have, runs it as ``__main__`` and exits the interpreter the
usual way (non-daemon threads joined, ``atexit`` handlers run).

It exits when its stdin closes: the pytest worker that started it has gone.
"""

from __future__ import annotations

import gc
import json
import os
import runpy
import select
import signal
import socket
import sys
from pathlib import Path
from typing import Any

# The interpreter's own entries, as a fresh `python -m` would have them after its first
# (the working folder) and PYTHONPATH's.
_BASE_PATH = sys.path[1:]


def _preload() -> None:
    import pandas
    import pyarrow
    import rich.console
    import rich.table
    import sqlalchemy
    import uvicorn

    import loopline.cli._common
    import loopline.cli.main
    import loopline.core.context
    import loopline.server.app
    import loopline.serving.app
    import loopline.tracking.api

    del loopline, pandas, pyarrow, rich, sqlalchemy, uvicorn
    _preload_servers()


#: What the two servers import as they start, beyond their apps' modules: their commands,
#: the server loop, uvicorn's event loop, HTTP parser and lifespan, and skops.io, which
#: loads (and saves) a scikit-learn model: it imports scikit-learn and lists every public
#: type of it, ~2 s of CPU (~5 s under the suite's load) in each model server, and in each
#: server loop's retrain. It starts no thread (nor OpenMP's) as it is imported.
_SERVER_MODULES = (
    "loopline.cli._listen",
    "loopline.cli.server_cmd",
    "loopline.cli.serve_cmd",
    "loopline.loop.runner",
    "skops.io",
    "uvicorn.lifespan.on",
    "uvicorn.loops.uvloop",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.websockets.wsproto_impl",
)


def _preload_servers() -> None:
    """Import every module of ``loopline server``'s app (create_app imports its routers,
    the UI and the MLflow routes only when it builds the app) and :data:`_SERVER_MODULES`:
    ~1.4 s of CPU that each server a test starts paid again after the fork."""
    import importlib
    import pkgutil

    import loopline.server

    names = [m.name for m in pkgutil.walk_packages(loopline.server.__path__, "loopline.server.")]
    for name in [*names, *_SERVER_MODULES]:
        importlib.import_module(name)


def _run_command(request: dict[str, Any], fds: list[int]) -> None:
    """In the command's process: become ``python -m MODULE ARGS`` (``loopline.cli.main`` by
    default) or ``python SCRIPT ARGS``, and run."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(str(request["cwd"]))
    cwd = str(Path.cwd())  # as `python -m` puts it first on sys.path
    env: dict[str, str] = request["env"]
    os.environ.clear()
    os.environ.update(env)
    extra = [str(Path(p).absolute()) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    script = request.get("script")
    if script is not None:
        # As `python SCRIPT`: the script's own folder first on sys.path, then PYTHONPATH.
        sys.path[:] = [str(Path(script).resolve().parent), *extra, *_BASE_PATH]
        sys.argv = [script, *request["args"]]
        runpy.run_path(script, run_name="__main__")
    else:
        module = request.get("module", "loopline.cli.main")
        sys.path[:] = [cwd, *extra, *_BASE_PATH]
        sys.argv = ["loopline" if module == "loopline.cli.main" else module, *request["args"]]
        # Run from its source as `python -m` does, not as the module the preload imported.
        sys.modules.pop(module, None)
        runpy.run_module(module, run_name="__main__", alter_sys=True)


def _serve(path: str) -> tuple[dict[str, Any], list[int]] | None:
    """Accept requests until stdin closes; in a command's process, return its request."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    print("ready", flush=True)
    while True:
        while True:  # reap the waiters that have finished
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
        readable, _, _ = select.select([listener, sys.stdin], [], [], 1.0)
        if sys.stdin in readable and not os.read(sys.stdin.fileno(), 1):
            return None
        if listener not in readable:
            continue
        conn, _ = listener.accept()
        with conn:
            message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
            request = json.loads(message)
            if os.fork() == 0:  # the waiter
                listener.close()
                child = os.fork()
                if child == 0:
                    conn.close()
                    return request, fds
                for fd in fds:
                    os.close(fd)
                conn.sendall(f"{child}\n".encode())
                _, status = os.waitpid(child, 0)
                conn.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
                os._exit(0)
            for fd in fds:
                os.close(fd)


def main() -> None:
    """Preload, serve, and in each command's process run the command."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker's ^C is its own to handle
    _preload()
    # Out of the collector's sight: a child's collections would otherwise walk (and so copy,
    # page by page) every object the preload made, as CPython's docs advise before a fork.
    gc.collect()
    gc.freeze()
    sys.stdout.flush()
    job = _serve(sys.argv[1])
    if job is None:
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _run_command(*job)


if __name__ == "__main__":
    main()
