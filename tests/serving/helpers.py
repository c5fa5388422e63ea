"""Tiny models, registered for real, and a real ``loopline serve`` process, for the tests.

Data: columns ``a``, ``b`` (floats) and ``bucket`` (an int in 0..3); the label is
``a + 0.5 b > 0``. Models train in milliseconds on a few hundred rows.

* :func:`good_model` - logistic regression on all columns (any ``bucket`` value works);
* :func:`weak_model` - logistic regression that ignores ``a`` (clearly worse);
* :func:`picky_model` - one-hot encodes ``bucket`` with ``handle_unknown="error"``, so it
  raises on a ``bucket`` it never saw (e.g. 9): a model that fails on some inputs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import loopline as ll
from loopline.core.context import Context
from tests.cli_run import popen
from tests.health import wait_healthy
from tests.ports import free_port

FEATURES = ["a", "b", "bucket"]


def toy_data(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """Features and a ``label`` column."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {"a": rng.normal(size=n), "b": rng.normal(size=n), "bucket": rng.integers(0, 4, size=n)}
    )
    noise = rng.normal(scale=0.3, size=n)
    frame["label"] = (frame.a + 0.5 * frame.b + noise > 0).astype(np.int64)
    return frame


def good_model(data: pd.DataFrame) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression().fit(data[FEATURES], data["label"])


def weak_model(data: pd.DataFrame) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression().fit(data[FEATURES].assign(a=0.0), data["label"])


def picky_model(data: pd.DataFrame) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    encode = ColumnTransformer(
        [("bucket", OneHotEncoder(handle_unknown="error"), ["bucket"])], remainder="passthrough"
    )
    return Pipeline([("encode", encode), ("clf", LogisticRegression())]).fit(
        data[FEATURES], data["label"]
    )


def register_without_example(model: Any, name: str) -> int:
    """Log ``model`` without an input example (so without a signature) and register it."""
    with ll.start_run(experiment=f"exp-{name}") as run:
        run.log_model(model, "model")
    return int(ll.registry.register(run, name).version)


def register(model: Any, name: str, data: pd.DataFrame, train_ref: str | None = None) -> int:
    """Log ``model`` in a run (reading ``train_ref`` for lineage) and register it."""
    with ll.start_run(experiment=f"exp-{name}") as run:
        if train_ref is not None:
            ref_name, _, ref_version = train_ref.partition("@")
            ll.datasets.get(ref_name, int(ref_version))
        run.log_model(model, "model", input_example=data[FEATURES].head(5))
    return int(ll.registry.register(run, name).version)


@contextmanager
def serving(ctx: Context, *args: str, poll: float = 0.2, wait: str = "/health") -> Iterator[str]:
    """A real ``loopline serve`` process on the context's store; yields its base URL once
    ``wait`` answers 200 (``/livez`` for a server whose models may not load)."""
    port = free_port()
    env = {
        **os.environ,
        "LOOPLINE_URI": ctx.settings.metadata_uri,
        "LOOPLINE_ARTIFACTS": ctx.settings.artifacts_uri,
        "LOOPLINE_ACTOR": "test-server",
    }
    log = Path(ctx.settings.artifacts_uri).parent / f"serve-{port}.log"
    with log.open("wb") as out:
        proc = popen(
            [
                sys.executable,
                "-m",
                "loopline.cli.main",
                "serve",
                "--port",
                str(port),
                "--poll-interval",
                str(poll),
                *args,
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, log.read_text, timeout=120, what="loopline serve", path=wait)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(predicate: Any, timeout: float = 30.0, every: float = 0.1) -> Any:
    """Poll ``predicate()`` until it returns a truthy value; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(every)


def row(a: float = 0.5, b: float = 0.5, bucket: int = 1) -> dict[str, Any]:
    return {"a": a, "b": b, "bucket": bucket}


def corrupt(ctx: Context, name: str, version: int) -> Path:
    """Flip one byte of the model file of ``name`` version ``version`` in the (local)
    artifact store, as a failing disk would; return the object's path."""
    import json

    logged = ll.registry.get(name, version).logged_model
    assert logged is not None and logged.manifest_digest
    manifest = json.loads(ctx.artifacts.get_bytes(logged.manifest_digest))
    path: Path = ctx.artifacts.local_path(manifest["files"][0]["digest"])  # type: ignore[attr-defined]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    return path
