"""A server that does no work: it answers each request with a recorded answer (bench (c)).

Case (c) of ``bench_tracking.py`` records the answers ``loopline server`` gave the mixed
MLflow script (``anchors/mlflow_tracking.py mixed URI RECORDING``), then runs the same
script against this server. For each method and path it hands out the recorded answers in
their order, starting over when they run out, so every run of the script gets the answers
it expects (ids included). It runs under uvicorn with the settings ``loopline server``
uses, so the script's wall time against it is what the MLflow client and one uvicorn
exchange per call cost with a server that takes no time: no server under uvicorn beats it.

Usage:
    .venv/bin/python bench/replay_server.py RECORDING PORT

Example:
    .venv/bin/python bench/replay_server.py /tmp/mixed.json 5999
"""

from __future__ import annotations

import itertools
import json
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


def app_for(recording: Path) -> Any:
    """The ASGI app answering from ``recording`` (``/health`` answers 200).

    Example:
        >>> # uvicorn.run(app_for(Path("mixed.json")), port=5999)
    """
    answers = load(recording)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body", False):
            pass  # read the whole body, as any server must
        found = answers.get((scope["method"], scope["path"]))
        status, body = (200, b"{}") if found is None else next(found)
        headers = [_JSON, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


if __name__ == "__main__":
    import uvicorn

    # The same settings as ``loopline server`` (uvicorn picks uvloop and httptools).
    uvicorn.run(
        app_for(Path(sys.argv[1])),
        host="127.0.0.1",
        port=int(sys.argv[2]),
        log_level="warning",
        access_log=False,
    )
