"""A server that does no work: it answers each request with a recorded answer (bench (c)).

Case (c) of ``bench_tracking.py`` records the answers ``loopline server`` gave the mixed
MLflow script (``anchors/mlflow_tracking.py mixed URI RECORDING``), then runs the same
script against this server. For each method and path it hands out the recorded answers in
their order, starting over when they run out, so every run of the script gets the answers
it expects (ids included). It runs under uvicorn with the settings ``loopline server``
uses, so the script's wall time against it is what the MLflow client and one uvicorn
exchange per call cost with a server that takes no time: no server under uvicorn beats it.

With ``--durable FILE`` it also does the one thing a server that acknowledges writes must
do: before answering a request that writes (a POST other than a search), it writes the
request's body into ``FILE`` and waits for ``fdatasync``. ``FILE`` is allocated and written
whole at start and then overwritten in a circle, the cheapest durable write a file system
offers (no block allocation, no size change to journal). The script's time against it is
what a server that keeps every acknowledged write could reach at best on this disk.

Usage:
    .venv/bin/python bench/replay_server.py RECORDING PORT [--durable FILE]

Example:
    .venv/bin/python bench/replay_server.py /tmp/mixed.json 5999 --durable /tmp/writes.log
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

Answer = tuple[int, bytes]
_JSON = (b"content-type", b"application/json")


def load(recording: Path) -> dict[tuple[str, str], Iterator[Answer]]:
    """Each ``(method, path)``'s recorded answers, in order and repeating.

    Example:
        >>> # load(Path("mixed.json"))[("POST", "/api/2.0/mlflow/runs/create")]
    """
    answers: dict[tuple[str, str], list[Answer]] = {}
    for method, path, status, body in json.loads(recording.read_text()):
        answers.setdefault((method, path), []).append((status, body.encode()))
    return {key: itertools.cycle(found) for key, found in answers.items()}


class DurableLog:
    """A file of ``size`` bytes, written whole at start; each write is then put in it and
    made durable (``fdatasync``) before ``write`` returns, starting over when it is full.

    Example:
        >>> # DurableLog(Path("/tmp/writes.log")).write(b"{...}")
    """

    def __init__(self, path: Path, size: int = 64 * 1024 * 1024) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        self.size, self.offset = size, 0
        zeros = bytes(1024 * 1024)
        for start in range(0, size, len(zeros)):
            os.pwrite(self.fd, zeros, start)
        os.fsync(self.fd)

    def write(self, data: bytes) -> None:
        if self.offset + len(data) > self.size:
            self.offset = 0
        os.pwrite(self.fd, data, self.offset)
        self.offset += len(data)
        os.fdatasync(self.fd)


def app_for(recording: Path, durable: DurableLog | None = None) -> Any:
    """The ASGI app answering from ``recording`` (``/health`` answers 200); with ``durable``,
    the body of each request that writes is made durable in it before the answer.

    Example:
        >>> # uvicorn.run(app_for(Path("mixed.json")), port=5999)
    """
    answers = load(recording)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:  # read the whole body, as any server must
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        # Every POST but a search writes.
        writes = scope["method"] == "POST" and not scope["path"].endswith("/search")
        if durable is not None and writes:
            durable.write(b"".join(chunks))
        found = answers.get((scope["method"], scope["path"]))
        status, body = (200, b"{}") if found is None else next(found)
        headers = [_JSON, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


if __name__ == "__main__":
    import uvicorn

    # The same settings as ``loopline server`` (uvicorn picks uvloop and httptools).
    log = DurableLog(Path(sys.argv[4])) if sys.argv[3:4] == ["--durable"] else None
    uvicorn.run(
        app_for(Path(sys.argv[1]), log),
        host="127.0.0.1",
        port=int(sys.argv[2]),
        log_level="warning",
        access_log=False,
    )
