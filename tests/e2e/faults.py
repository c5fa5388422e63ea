"""Helpers of the fault tests: writer processes that record what was acknowledged, a
``loopline server`` that can be killed and started again on its port, and a private
PostgreSQL cluster that can be restarted without touching the shared test cluster.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.cli_run import Process, popen
from tests.health import wait_healthy

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PG_BIN = Path(os.environ.get("LOOPLINE_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


def wait_until(predicate: Any, timeout: float, what: str, every: float = 0.1) -> Any:
    """Poll ``predicate()`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(every)


# -- writers -------------------------------------------------------------------------------


@dataclass
class Writer:
    """One ``fault_writer.py`` process and the file where it records its acknowledgements."""

    mode: str
    out: Path
    proc: Process
    log: Path

    def lines(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        text = self.out.read_text()
        return [json.loads(line) for line in text.splitlines() if line.endswith("}")]

    def run_id(self) -> str:
        return str(next(line["run_id"] for line in self.lines() if "run_id" in line))

    def acks(self) -> list[dict[str, Any]]:
        return [line for line in self.lines() if "acked" in line]

    def last_acked(self) -> int:
        """The last step acknowledged (-1 before the first acknowledgement)."""
        acks = self.acks()
        return int(acks[-1]["acked"]) if acks else -1

    def done(self) -> int | None:
        return next((int(line["done"]) for line in self.lines() if "done" in line), None)


@dataclass
class WriterGroup:
    """Writer processes that stop together when the stop file appears."""

    folder: Path
    env: dict[str, str]
    writers: list[Writer] = field(default_factory=list)

    @property
    def stop_file(self) -> Path:
        return self.folder / "stop"

    def start(self, mode: str, count: int) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(count):
            i = len(self.writers)
            out, log = self.folder / f"writer-{i}.jsonl", self.folder / f"writer-{i}.log"
            with log.open("wb") as err:
                proc = popen(
                    [sys.executable, str(HERE / "fault_writer.py"), mode, str(out),
                     str(self.stop_file)],
                    env={**os.environ, **self.env},
                    cwd=self.folder,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                )  # fmt: skip
            self.writers.append(Writer(mode, out, proc, log))

    def check_alive(self) -> None:
        for w in self.writers:
            if w.proc.poll() is not None and w.done() is None:
                raise AssertionError(f"writer {w.out.name} died: {w.log.read_text()[-3000:]}")

    def wait_acked_beyond(self, marks: list[int], timeout: float, what: str) -> None:
        """Wait until each writer acknowledged a step beyond its mark."""

        def all_past() -> bool:
            self.check_alive()
            return all(w.last_acked() > m for w, m in zip(self.writers, marks, strict=True))

        wait_until(all_past, timeout, what)

    def marks(self) -> list[int]:
        return [w.last_acked() for w in self.writers]

    def stop(self, timeout: float = 180) -> None:
        self.stop_file.touch()
        deadline = time.monotonic() + timeout
        for w in self.writers:
            try:
                w.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()
                raise AssertionError(
                    f"writer {w.out.name} did not stop: {w.log.read_text()[-3000:]}"
                ) from None
            assert w.proc.returncode == 0, w.log.read_text()[-3000:]
            assert w.done() is not None, w.log.read_text()[-3000:]

    def kill_all(self) -> None:
        for w in self.writers:
            if w.proc.poll() is None:
                w.proc.kill()
                w.proc.wait()


# -- a loopline server on a fixed port -----------------------------------------------------


class KillableServer:
    """``loopline server`` (or ``loopline serve``: ``command``) on a fixed loopback port,
    which can be SIGKILLed and restarted."""

    def __init__(
        self, port: int, env: dict[str, str], log: Path, command: tuple[str, ...] = ("server",)
    ) -> None:
        self.port = port
        self.env = env
        self.log = log
        self.command = command
        self.url = f"http://127.0.0.1:{port}"
        self.proc: Process | None = None

    def start(self, timeout: float = 60) -> None:
        with self.log.open("ab") as out:
            self.proc = popen(
                [
                    sys.executable,
                    "-m",
                    "loopline.cli.main",
                    *self.command,
                    "--port",
                    str(self.port),
                ],
                env={**os.environ, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_healthy(
            self.url,
            self.proc,
            lambda: self.log.read_text()[-3000:],
            timeout=timeout,
            what=f"loopline {self.command[0]}",
        )

    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, in-flight requests are cut off."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- a private PostgreSQL cluster ----------------------------------------------------------


class PrivateCluster:
    """A PostgreSQL cluster of the test's own (``initdb`` in a temporary folder)."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder = folder
        self.port = port
        self.data = folder / "data"
        self.sock = folder / "sock"
        self.uri = f"postgresql://postgres@127.0.0.1:{port}/faults"

    def _as_pg(self, *cmd: str) -> list[str]:
        # initdb refuses to run as root: the cluster then belongs to 'postgres'.
        return ["runuser", "-u", "postgres", "--", *cmd] if os.getuid() == 0 else list(cmd)

    def _run(self, *cmd: str, timeout: float = 120) -> None:
        subprocess.run(self._as_pg(*cmd), check=True, capture_output=True, timeout=timeout)

    def pg_ctl(self, *args: str) -> None:
        opts = f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1"
        self._run(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "server.log"),
            "-w", "-t", "60", "-o", opts, *args,
        )  # fmt: skip

    def start(self) -> None:
        self.sock.mkdir(parents=True, exist_ok=True)
        if os.getuid() == 0:
            subprocess.run(["chown", "-R", "postgres", str(self.folder)], check=True)
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust")
        self.pg_ctl("start")
        self._run(
            str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
            "-qc", "CREATE DATABASE faults",
        )  # fmt: skip

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every session is cut off, then the server is back."""
        self.pg_ctl("restart", "-m", "fast")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                self._as_pg(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                            "-w", "stop"),
                capture_output=True,
                timeout=60,
            )  # fmt: skip

    def describe(self) -> str:
        return shlex.join(self._as_pg(str(PG_BIN / "pg_ctl"), "-D", str(self.data)))
