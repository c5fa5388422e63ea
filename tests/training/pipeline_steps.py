"""Steps and pipelines the pipeline tests run (importable, so every executor can run them).

Each step appends a line to ``<workdir>/<name>.count`` when its body runs, so a test can
tell a step that ran from one that was served by the cache, whatever process ran it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import loopline as ll


def bump(workdir: str, name: str) -> int:
    """Count one run of ``name``; return how many runs there have been."""
    path = Path(workdir) / f"{name}.count"
    with path.open("a") as f:
        f.write("x\n")
    return len(path.read_text().splitlines())


def count(workdir: str, name: str) -> int:
    """How many times ``name``'s body ran."""
    path = Path(workdir) / f"{name}.count"
    return len(path.read_text().splitlines()) if path.exists() else 0


@ll.step
def load(workdir: str, n: int) -> pd.DataFrame:
    bump(workdir, "load")
    return pd.DataFrame({"x": np.arange(n, dtype="int64")})


@ll.step
def double(workdir: str, df: pd.DataFrame) -> pd.DataFrame:
    bump(workdir, "double")
    return df.assign(x=df["x"] * 2)


@ll.step
def total(workdir: str, df: pd.DataFrame) -> dict[str, int]:
    bump(workdir, "total")
    return {"sum": int(df["x"].sum()), "rows": len(df)}


@ll.pipeline
def simple(workdir: str, n: int = 5) -> None:
    total(workdir, double(workdir, load(workdir, n)))


@ll.step(cache=False)
def read_source(workdir: str) -> str:
    bump(workdir, "read_source")
    return (Path(workdir) / "source.txt").read_text()


@ll.step
def shout(workdir: str, text: str) -> str:
    bump(workdir, "shout")
    return text.upper()


@ll.pipeline
def from_file(workdir: str) -> None:
    shout(workdir, read_source(workdir))


@ll.step(retries=2, retry_delay=0.2)
def flaky(workdir: str, fail_times: int) -> str:
    tries = bump(workdir, "flaky")
    with (Path(workdir) / "flaky.times").open("a") as f:
        f.write(f"{time.monotonic()}\n")
    if tries <= fail_times:
        raise RuntimeError(f"flaky failure on try {tries}")
    return f"ok after {tries}"


@ll.pipeline
def flaky_pipe(workdir: str, fail_times: int = 2) -> None:
    flaky(workdir, fail_times)


@ll.step(retries=1, retry_delay=0.01)
def always_fails(workdir: str) -> int:
    bump(workdir, "always_fails")
    raise ValueError("boom: this step always fails")


@ll.step
def after(workdir: str, value: Any) -> str:
    bump(workdir, "after")
    return f"after {value}"


@ll.step
def independent(workdir: str) -> list[int]:
    bump(workdir, "independent")
    time.sleep(0.2)
    return [1, 2, 3]


@ll.pipeline
def branches(workdir: str) -> None:
    after(workdir, always_fails(workdir))
    independent(workdir)


@ll.step(retries=1, retry_delay=0.0)
def exits(workdir: str) -> int:
    bump(workdir, "exits")
    raise SystemExit(3)  # what sys.exit(3) raises


@ll.pipeline
def exiting(workdir: str) -> None:
    after(workdir, exits(workdir))
    independent(workdir)


@ll.step(cache=False)
def gate(workdir: str) -> int:
    bump(workdir, "gate")
    if (Path(workdir) / "broken").exists():
        raise RuntimeError("the gate is broken")
    return 7


@ll.pipeline
def resumable(workdir: str) -> None:
    base = load(workdir, 3)
    double(workdir, base)
    after(workdir, [gate(workdir), base])


@ll.step
def nap(seconds: float, tag: str) -> dict[str, float]:
    start = time.time()
    time.sleep(seconds)
    return {"start": start, "end": time.time()}


@ll.pipeline
def parallel(seconds: float = 0.5) -> None:
    nap(seconds, "a")
    nap(seconds, "b")


@ll.step
def make_values(n: int) -> tuple[Any, ...]:
    frame = pd.DataFrame({"a": np.arange(n), "b": [f"r{i}" for i in range(n)]})
    return (
        frame,
        np.linspace(0, 1, n),
        b"\x00raw",
        {"nested": [1, 2.5, None], "nan": float("nan")},
        pd.Series([1.0, 2.0], name="s"),
        np.float64(2.5),
    )


@ll.step
def describe(
    frame: pd.DataFrame,
    arr: np.ndarray,
    raw: bytes,
    doc: dict[str, Any],
    series: pd.Series,
    scalar: float,
) -> dict[str, Any]:
    return {
        "frame": [type(frame).__name__, frame.shape[0], list(frame.columns)],
        "arr": [type(arr).__name__, float(arr.sum())],
        "raw": raw.hex(),
        "doc": doc["nested"],
        "nan": doc["nan"] != doc["nan"],
        "series": [type(series).__name__, series.name, float(series.sum())],
        "scalar": scalar,
    }


@ll.pipeline
def typed(n: int = 4) -> None:
    values = make_values(n)
    describe(values[0], values[1], values[2], values[3], values[4], values[5])


@ll.step
def fit_model(n: int) -> Any:
    from sklearn.linear_model import LinearRegression

    x = np.arange(n, dtype=float).reshape(-1, 1)
    return LinearRegression().fit(x, 3 * x.ravel() + 1)


@ll.step
def predict(model: Any, at: float) -> float:
    return float(model.predict(np.array([[at]]))[0])


@ll.pipeline
def modelling(n: int = 10) -> None:
    predict(fit_model(n), 10.0)


@ll.step
def exact_values(workdir: str) -> dict[str, Any]:
    bump(workdir, "exact_values")
    return {
        "zeta": {"b": 1, "a": [2, {"y": 1, "x": 0}]},  # JSON, keys not in sorted order
        "alpha": np.float32(0.1),
        "mid": [np.int8(-3), np.float64(2.5), np.str_("s"), np.bool_(True), 1.5],
        "blob": bytearray(b"\x00ab"),
    }


@ll.step
def type_names(workdir: str, values: dict[str, Any]) -> list[Any]:
    bump(workdir, "type_names")
    return [list(values), list(values["zeta"]), type(values["alpha"]).__name__]


@ll.pipeline
def exact(workdir: str) -> None:
    type_names(workdir, exact_values(workdir))


@ll.step
def subclass_output(kind: str) -> Any:
    import collections
    import enum

    if kind == "namedtuple":
        return collections.namedtuple("Pair", "a b")(1, 2)
    if kind == "ordered":
        return {"d": collections.OrderedDict(b=1, a=2)}
    return [enum.IntEnum("Level", "LOW HIGH").HIGH]


@ll.pipeline
def subclass(kind: str) -> None:
    subclass_output(kind)


@ll.step
def unstorable() -> Any:
    return object()


@ll.pipeline
def bad_output() -> None:
    after("unused", unstorable())


@ll.step
def noop(i: int, prev: Any = None) -> None:
    return None


@ll.pipeline
def chain(n: int = 100) -> None:
    prev = None
    for i in range(n):
        prev = noop(i, prev)


def quadratic(params: dict[str, Any]) -> float:
    """A tuning objective with its maximum 3.0 at x = 2."""
    return 3.0 - (params["x"] - 2.0) ** 2


def curve(params: dict[str, Any], trial: Any) -> float:
    """A tuning objective that reports a learning curve; poor ``x`` are worth pruning."""
    score = 0.0
    for step in range(8):
        score = (step + 1) / 8 * (1.0 - abs(params["x"] - 0.5))
        trial.report(score, step)
    return score


@ll.step(cache=False)
def hold(workdir: str) -> str:
    """Runs until ``<workdir>/go`` exists (at most 60 s): a step a test can watch running."""
    bump(workdir, "hold")
    deadline = time.monotonic() + 60
    while not (Path(workdir) / "go").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return "released"


@ll.pipeline
def held(workdir: str) -> None:
    after(workdir, hold(workdir))


@ll.step
def load_dataset(workdir: str, name: str) -> pd.DataFrame:
    bump(workdir, "load_dataset")
    return ll.datasets.get(name).to_pandas()


@ll.step
def rows_plus(workdir: str, df: pd.DataFrame, extra: int) -> int:
    bump(workdir, "rows_plus")
    return len(df) + extra


@ll.pipeline
def reads_data(workdir: str, name: str, extra: int = 0) -> None:
    rows_plus(workdir, load_dataset(workdir, name), extra)


@ll.step(cache=False, timeout=0.5)
def hangs(workdir: str) -> str:
    """Hangs (60 s) past its 0.5 s timeout."""
    bump(workdir, "hangs")
    time.sleep(60)
    return "woke up"


@ll.pipeline
def hanging(workdir: str) -> None:
    after(workdir, hangs(workdir))
    independent(workdir)


@ll.step(cache=False, timeout=0.5, retries=1, retry_delay=0.1)
def hangs_once(workdir: str) -> str:
    """Hangs on its first try only: the timeout is retried like any failure."""
    tries = bump(workdir, "hangs_once")
    if tries == 1:
        time.sleep(60)
    return f"ok after {tries}"


@ll.pipeline
def hanging_once(workdir: str) -> None:
    hangs_once(workdir)


@ll.step(cache=False)
def dies(workdir: str) -> int:
    """Kills its worker process (as the OOM killer would) while another step runs."""
    bump(workdir, "dies")
    time.sleep(0.3)
    os._exit(3)


@ll.step(cache=False)
def bystander(workdir: str) -> str:
    """Runs beside ``dies``: it must not fail with it."""
    bump(workdir, "bystander")
    time.sleep(1.0)
    return "survived"


@ll.pipeline
def dying(workdir: str) -> None:
    bystander(workdir)
    after(workdir, dies(workdir))
