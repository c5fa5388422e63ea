"""Benchmark: experiment tracking, Loopline against MLflow in the same run, both on SQLite.

Cases (MLflow's side is ``bench/anchors/mlflow_tracking.py``, run in its own venv):

* (a) embedded ingest, 100,000 points from a training loop: what one ``run.log_metric``
  costs the loop, and 100,000 ``log_metric`` calls (flushed) against MLflow's
  ``mlflow.log_metric`` loop (extrapolated from 2,000 calls); sustained ingest, 1,000 steps
  x 100 metrics through ``run.log_metrics`` then ``flush`` (``bench/tracking_ingest.py``),
  against ``MlflowClient.log_batch`` in chunks of 1,000. Targets: < 10 µs per call,
  >= 50x log_batch's points/s.
* (b) the same sustained ingest over HTTP: the remote SDK (``LOOPLINE_URI=http://...``) to
  ``loopline server`` against the MLflow client's ``log_batch`` to ``mlflow server``, one
  worker each, on loopback. Target >= 50x.
* (c) the unmodified MLflow client running one mixed script (runs, params, tags, metrics one
  by one and batched, nested runs, a search) against ``loopline server`` and against
  ``mlflow server``. Target >= 5x less wall time. Two ceilings are measured beside it: the
  script's own time outside HTTP, and the script against ``bench/replay_server.py``, which
  answers from a recording of our server's answers and does nothing else.
* (d) 1,000 runs with two params and two metrics each, then ``search_runs`` with a filter
  and an order: the Loopline SDK (embedded) against MLflow's client on SQLite. Targets >= 10x
  on both.

Every workload runs in its own process (Loopline's in ``bench/loopline_tracking.py``) and
in a fresh temporary folder outside any git repository (a run records the git commit and
diff when it starts inside one; MLflow's ``MlflowClient.create_run`` does not). Loopline's
figures are medians of ``--repeat`` runs; MLflow's slow cases of (a) run once; (d) runs
``--repeat`` fresh processes a side, alternating, and quotes the medians. Over HTTP both
servers run side by side (after a pause and an uncounted warm-up run): Loopline's ingest is
measured before and after MLflow's, and the mixed script alternates between the two servers
``--repeat`` times. The machine's load average at start and end is recorded with the
results: on a shared machine every figure moves with it, MLflow's fsync-bound ones most.

Usage:
    python bench/bench_tracking.py [--repeat 3] [--runs 1000]

Example:
    .venv/bin/python bench/bench_tracking.py
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, anchor_python, fmt_ratio, free_port, run_json, write_result

ANCHOR = ["mlflow>=3.4,<4"]
ANCHOR_SCRIPT = ROOT / "bench" / "anchors" / "mlflow_tracking.py"
LOOPLINE_SCRIPT = ROOT / "bench" / "loopline_tracking.py"
LOOPLINE_PY = ROOT / ".venv" / "bin" / "python"
REPLAY_SCRIPT = ROOT / "bench" / "replay_server.py"


_SCRATCH: list[Path] = []


def _fresh(tag: str) -> Path:
    """A new empty folder for one case (outside any git repository), removed at the end."""
    folder = Path(tempfile.mkdtemp(prefix=f"ll-bench-{tag}-"))
    _SCRATCH.append(folder)
    return folder


class Server:
    """A server process on loopback, stopped on exit."""

    def __init__(self, cmd: list[str], env: dict[str, str], port: int, cwd: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = cwd / "server.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                cmd, env={**os.environ, **env}, cwd=cwd, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{cmd[0]} exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"{cmd} did not become healthy: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def loopline_server(folder: Path) -> Server:
    port = free_port()
    env = {
        "LOOPLINE_URI": f"sqlite:///{folder / 'loopline.db'}",
        "LOOPLINE_ARTIFACTS": str(folder / "artifacts"),
    }
    cmd = [str(LOOPLINE_PY), "-m", "loopline.cli.main", "server", "--port", str(port)]
    return Server(cmd, env, port, folder)


def mlflow_server(mlflow_py: Path, folder: Path) -> Server:
    port = free_port()
    cmd = [
        str(mlflow_py.parent / "mlflow"), "server",
        "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
        "--artifacts-destination", str(folder / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    return Server(cmd, {}, port, folder)


def replay_server(recording: Path, folder: Path, durable: bool = False) -> Server:
    """``bench/replay_server.py`` on ``recording``: answers, no work (see case (c)); with
    ``durable``, each write is also made durable (one ``fdatasync``) before its answer."""
    port = free_port()
    cmd = [str(LOOPLINE_PY), str(REPLAY_SCRIPT), str(recording), str(port)]
    if durable:
        cmd += ["--durable", str(folder / "writes.log")]
    return Server(cmd, {}, port, folder)


def _settle(*urls: str, seconds: float = 10.0) -> None:
    """Wait after the servers answer: ``mlflow server`` keeps starting helper processes
    (its job runners) for some seconds, which would slow whatever runs first."""
    time.sleep(seconds)
    for url in urls:
        httpx.get(f"{url}/health", timeout=30).raise_for_status()


def _verdict(met: bool | None) -> str:
    return "-" if met is None else "met" if met else "MISSED"


def _quiet(seconds: float = 2.0) -> None:
    """Before a timed process: write out what earlier ones left dirty (the servers of case
    (c), the other side's database) and let exiting processes finish, so that neither side
    pays for the one before it."""
    os.sync()
    time.sleep(seconds)


def mlflow(mlflow_py: Path, mode: str, uri: str, cwd: Path, *args: str) -> dict[str, Any]:
    """One mode of the anchor script, in the MLflow venv."""
    result: dict[str, Any] = run_json(mlflow_py, ANCHOR_SCRIPT, mode, uri, *args, cwd=cwd)
    return result


def loopline(mode: str, uri: str, artifacts: Path, cwd: Path, *args: str) -> dict[str, Any]:
    """One workload of ``bench/loopline_tracking.py``, in a fresh process of our venv."""
    result: dict[str, Any] = run_json(
        LOOPLINE_PY, LOOPLINE_SCRIPT, mode, uri, str(artifacts), *args, cwd=cwd
    )
    return result


# -- the cases ---------------------------------------------------------------------------


def _row(
    case: str, ours: str, anchor: str, theirs: str, ratio: float, target: str, met: bool
) -> dict[str, Any]:
    return {"case": case, "loopline": ours, "anchor": anchor, "anchor_value": theirs,
            "ratio": fmt_ratio(ratio), "target": target, "met": met}  # fmt: skip


def case_a(mlflow_py: Path, repeat: int, details: dict[str, Any]) -> list[dict[str, Any]]:
    work = _fresh("a")
    ingest = loopline("ingest", f"sqlite:///{work / 'll.db'}", work / "art", work, str(repeat))
    loops = [
        loopline("log_metric_loop", f"sqlite:///{work / f'loop{i}.db'}", work / "art", work)
        for i in range(repeat)
    ]
    loop_all = [r["seconds"] for r in loops]
    loop_s = statistics.median(loop_all)
    m_metric = mlflow(mlflow_py, "log_metric", f"sqlite:///{work / 'm1.db'}", work)
    m_batch = mlflow(mlflow_py, "log_batch", f"sqlite:///{work / 'm2.db'}", work)
    details["a"] = {
        "loopline_ingest": ingest,
        "loopline_log_metric_loop_100k_s": loop_all,
        "mlflow_log_metric": m_metric,
        "mlflow_log_batch": m_batch,
    }
    us = ingest["log_metric_us_median"]
    mlflow_100k = m_metric["us_per_call"] * 100_000 / 1e6
    rate = ingest["points_per_s_median"]
    return [
        _row("(a) one log_metric call, cost to the loop", f"{us:.2f} µs", "mlflow.log_metric",
             f"{m_metric['us_per_call']:,.0f} µs", m_metric["us_per_call"] / us, "< 10 µs",
             us < 10),
        _row("(a) 100k log_metric calls + flush, embedded SQLite", f"{loop_s:.2f} s",
             "mlflow.log_metric x 100k (extrapolated from 2k)", f"{mlflow_100k:,.0f} s",
             mlflow_100k / loop_s, "", True),
        _row("(a) sustained ingest 1000 steps x 100 metrics (log_metrics + flush)",
             f"{rate:,.0f} points/s", "MlflowClient.log_batch (chunks of 1,000)",
             f"{m_batch['points_per_s']:,.0f} points/s", rate / m_batch["points_per_s"],
             ">= 50x", rate / m_batch["points_per_s"] >= 50),
    ]  # fmt: skip


def case_b(mlflow_py: Path, repeat: int, details: dict[str, Any]) -> list[dict[str, Any]]:
    work = _fresh("b")
    (work / "ours").mkdir()
    (work / "theirs").mkdir()
    with (
        loopline_server(work / "ours") as mine,
        mlflow_server(mlflow_py, work / "theirs") as anchor,
    ):
        _settle(mine.url, anchor.url)
        loopline("ingest", mine.url, work / "unused", work, "1")  # warm-up, not counted
        before = loopline("ingest", mine.url, work / "unused", work, str(repeat))
        m_batch = mlflow(mlflow_py, "log_batch", anchor.url, work)
        after = loopline("ingest", mine.url, work / "unused", work, str(repeat))
    rates = before["points_per_s_all"] + after["points_per_s_all"]
    details["b"] = {
        "loopline_remote_ingest_before": before,
        "loopline_remote_ingest_after": after,
        "mlflow_server_log_batch": m_batch,
    }
    rate = statistics.median(rates)
    ratio = rate / m_batch["points_per_s"]
    return [
        _row("(b) ingest over HTTP, 1000 steps x 100 metrics, to the server",
             f"{rate:,.0f} points/s", "MLflow client log_batch to mlflow server",
             f"{m_batch['points_per_s']:,.0f} points/s", ratio, ">= 50x", ratio >= 50),
    ]  # fmt: skip


def case_c(mlflow_py: Path, repeat: int, details: dict[str, Any]) -> list[dict[str, Any]]:
    # Both servers run side by side and the runs alternate, so that a busy spell of the
    # machine (its disk above all) falls on both sides alike. A third server replays the
    # answers ours gave the warm-up run and does nothing else: the script against it is
    # the fastest any server under uvicorn could make it; a fourth does the same and makes
    # each write durable (one fdatasync), the fastest a server keeping every answered write
    # could make it.
    work = _fresh("c")
    for side in ("ours", "theirs", "replay", "durable"):
        (work / side).mkdir()
    recording = work / "replay" / "answers.json"
    ours, theirs, replayed, durably = [], [], [], []
    with (
        loopline_server(work / "ours") as mine,
        mlflow_server(mlflow_py, work / "theirs") as anchor,
    ):
        _settle(mine.url, anchor.url)
        mlflow(mlflow_py, "mixed", mine.url, work, str(recording))  # warm-up, not counted
        mlflow(mlflow_py, "mixed", anchor.url, work)
        with (
            replay_server(recording, work / "replay") as null,
            replay_server(recording, work / "durable", durable=True) as synced,
        ):
            mlflow(mlflow_py, "mixed", null.url, work)
            mlflow(mlflow_py, "mixed", synced.url, work)
            for _ in range(repeat):
                ours.append(mlflow(mlflow_py, "mixed", mine.url, work))
                theirs.append(mlflow(mlflow_py, "mixed", anchor.url, work))
                replayed.append(mlflow(mlflow_py, "mixed", null.url, work))
                durably.append(mlflow(mlflow_py, "mixed", synced.url, work))
    assert {r["runs_found"] for r in ours + theirs + replayed + durably} == {10}
    details["c"] = {
        "loopline_server": ours,
        "mlflow_server": theirs,
        "replay_server": replayed,
        "durable_replay_server": durably,
    }
    ours_s = statistics.median(r["seconds"] for r in ours)
    theirs_s = statistics.median(r["seconds"] for r in theirs)
    null_s = statistics.median(r["seconds"] for r in replayed)
    synced_s = statistics.median(r["seconds"] for r in durably)
    # The client's own time (the script's wall time outside its HTTP exchanges) is a floor
    # that no server lowers; the replay server adds what one uvicorn exchange per call
    # costs at the least. Both rows are ceilings, not targets.
    client_s = statistics.median(r["client_seconds"] for r in ours)
    exchanges = ours[0]["exchanges"]
    return [
        _row("(c) unmodified MLflow client, mixed script, wall time", f"{ours_s:.2f} s",
             "the same script against mlflow server", f"{theirs_s:.2f} s", theirs_s / ours_s,
             ">= 5x", theirs_s / ours_s >= 5),
        {**_row(f"(c) the same script against a server that does nothing ({exchanges} "
                "exchanges answered from a recording, under uvicorn)", f"{null_s:.2f} s",
                "the same script against mlflow server", f"{theirs_s:.2f} s",
                theirs_s / null_s, "ceiling for a uvicorn server", True), "met": None},
        {**_row("(c) the same script against that server making each write durable (one "
                "fdatasync per write, into a preallocated file)", f"{synced_s:.2f} s",
                "the same script against mlflow server", f"{theirs_s:.2f} s",
                theirs_s / synced_s, "ceiling for a durable server", True), "met": None},
        {**_row("(c) the same script's own time outside HTTP (MLflow client floor)",
                f"{client_s:.2f} s", "the same script against mlflow server",
                f"{theirs_s:.2f} s", theirs_s / client_s, "ceiling for any server", True),
         "met": None},
    ]  # fmt: skip


_D_FIGURES = ("create_seconds", "search_seconds_median")


def case_d(
    mlflow_py: Path, runs: int, repeat: int, details: dict[str, Any]
) -> list[dict[str, Any]]:
    # Each side runs in ``repeat`` fresh processes, alternating: on this machine the same
    # workload runs up to 1.6x slower in one process than in the next (SQL and Python
    # alike, whatever the core), so one process per side is a draw, not a measure.
    mine, anchors = [], []
    for i in range(repeat):
        work = _fresh(f"d{i}")
        _quiet()
        mine.append(
            loopline("runs_search", f"sqlite:///{work / 'll.db'}", work / "art", work, str(runs))
        )
        _quiet()
        anchors.append(mlflow(mlflow_py, "runs_search", f"sqlite:///{work / 'm.db'}", work))
        assert mine[-1]["found"] == anchors[-1]["found"], (mine[-1], anchors[-1])
    details["d"] = {"loopline": mine, "mlflow": anchors}
    ours = {k: statistics.median(r[k] for r in mine) for k in _D_FIGURES}
    theirs = {k: statistics.median(r[k] for r in anchors) for k in _D_FIGURES}
    ours["found"] = mine[0]["found"]
    create = theirs["create_seconds"] / ours["create_seconds"]
    search = theirs["search_seconds_median"] / ours["search_seconds_median"]
    return [
        _row(f"(d) create {runs} runs (2 params, 2 metrics, ended)",
             f"{ours['create_seconds'] * 1000 / runs:.1f} ms/run", "MlflowClient on SQLite",
             f"{theirs['create_seconds'] * 1000 / runs:.1f} ms/run", create, ">= 10x",
             create >= 10),
        _row(f"(d) search_runs over {runs} runs, filter + order ({ours['found']} found)",
             f"{ours['search_seconds_median'] * 1000:.1f} ms", "MlflowClient.search_runs",
             f"{theirs['search_seconds_median'] * 1000:.1f} ms", search, ">= 10x",
             search >= 10),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--cases", default="abcd", help="which cases to run, e.g. 'ad'")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folders")
    args = parser.parse_args()
    mlflow_py = anchor_python("mlflow", ANCHOR)
    details: dict[str, Any] = {"load_average_start": os.getloadavg(), "repeat": args.repeat}
    rows: list[dict[str, Any]] = []
    cases = {
        "a": lambda: case_a(mlflow_py, args.repeat, details),
        "b": lambda: case_b(mlflow_py, args.repeat, details),
        "c": lambda: case_c(mlflow_py, args.repeat, details),
        "d": lambda: case_d(mlflow_py, args.runs, args.repeat, details),
    }
    try:
        for key in args.cases:
            started = time.perf_counter()
            found = cases[key]()
            rows += found
            for row in found:
                print(f"{row['case']}: {row['loopline']} vs {row['anchor_value']} -> "
                      f"{row['ratio']} (target {row['target'] or '-'}, "
                      f"{_verdict(row['met'])})", flush=True)  # fmt: skip
            details[f"{key}_seconds"] = round(time.perf_counter() - started, 1)
    finally:
        if not args.keep:
            for folder in _SCRATCH:
                shutil.rmtree(folder, ignore_errors=True)
    details["load_average_end"] = os.getloadavg()
    rows, details = _with_earlier(rows, details, args.cases)
    path = write_result("tracking", rows, details)
    print(f"wrote {path}")


def _with_earlier(
    rows: list[dict[str, Any]], details: dict[str, Any], cases: str
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """This run's rows and details, with the earlier results' rows and details of the cases
    not run (``--cases c`` would otherwise drop (a), (b) and (d) from the README), in case
    order; ``details["earlier"]`` says when those were measured."""
    path = ROOT / "bench" / "results" / "tracking.json"
    if set("abcd") <= set(cases) or not path.exists():
        return rows, details
    earlier = json.loads(path.read_text())
    kept = [r for r in earlier["rows"] if r["case"][1:2] not in cases]
    merged = {**{k: v for k, v in earlier["details"].items() if k[:1] not in cases}, **details}
    when = earlier["details"].get("earlier", {}).get("when", earlier["when"])
    merged["earlier"] = {"cases": "".join(c for c in "abcd" if c not in cases), "when": when}
    return sorted(kept + rows, key=lambda r: r["case"][1:2]), merged


if __name__ == "__main__":
    main()
