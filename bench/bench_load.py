"""Benchmark: a bounded load test with locust on loopback, Loopline against its anchors.

Workloads (the users are in ``bench/locust_workload.py``; locust runs headless in its own
process, ``--users`` users spawned at once, no wait between requests, ``--duration``
seconds per target):

* **predict** - one-row predictions of the same scikit-learn LogisticRegression, served by
  ``loopline serve`` and by ``mlflow models serve`` (one worker each; the model set-up of
  ``bench/bench_serving.py``; Loopline with ``--no-log-predictions``, as MLflow keeps no
  prediction log);
* **tracking** - the MLflow REST API as the MLflow client uses it (log-metric, log-batch of
  10 points, a filtered search, get run), against ``loopline server`` and ``mlflow server``
  (one worker each, SQLite; the servers of ``bench/bench_tracking.py``);
* **api_v1** - Loopline's own reads (``/api/v1``: get run, metric history, search); no
  anchor has this API.

Reported per target: requests/s, p50/p95/p99 latency (every request's latency as locust
measures it), the number of failed requests, and Loopline's ratio to the anchor (req/s;
p99 latency). Results go to ``bench/results/load.json``. The load generator shares the
machine's cores with the server it loads - the same for every server - so the figures are
those of the pair, not of the server alone.

Usage:
    python bench/bench_load.py [--duration 20] [--users 8] [--no-anchor]

Example:
    .venv/bin/python bench/bench_load.py --duration 10 --no-anchor
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, anchor_python, fmt_ratio, write_result
from bench_serving import ANCHOR, COLUMNS, _setup_loopline, _start, _stop, mlflow_model_server
from bench_tracking import loopline_server, mlflow_server

LOCUSTFILE = ROOT / "bench" / "locust_workload.py"
LOCUST = Path(sys.executable).with_name("locust")


def locust(
    target: str, host: str, env: dict[str, str], args: argparse.Namespace, work: Path
) -> dict[str, Any]:
    """Run one bounded locust load against ``host``; the figures of every request."""
    samples = work / f"samples-{target}-{time.monotonic_ns()}.json"
    cmd = [
        str(LOCUST),
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        host,
        "--users",
        str(args.users),
        "--spawn-rate",
        str(args.users),
        "--run-time",
        f"{args.duration:g}s",
        "--stop-timeout",
        "5",
        "--only-summary",
        "--loglevel",
        "WARNING",
    ]
    full_env = {**os.environ, **env, "LOAD_TARGET": target, "LOAD_SAMPLES": str(samples)}
    done = subprocess.run(
        cmd, env=full_env, capture_output=True, text=True, timeout=args.duration + 120
    )
    if not samples.exists():
        raise RuntimeError(f"locust wrote no samples ({done.returncode}): {done.stderr[-3000:]}")
    data = json.loads(samples.read_text())
    lat = np.asarray([x for xs in data["latencies_ms"].values() for x in xs])
    errors = sum(data["errors"].values())
    span = float(data["span_s"])
    return {
        "requests": int(lat.size),
        "errors": errors,
        "error_kinds": data["errors"],
        "seconds": span,
        "rps": lat.size / span if span > 0 else 0.0,
        "p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
        "p95_ms": float(np.percentile(lat, 95)) if lat.size else None,
        "p99_ms": float(np.percentile(lat, 99)) if lat.size else None,
        "by_request": {
            name: {
                "requests": len(xs),
                "p50_ms": float(np.percentile(xs, 50)),
                "p99_ms": float(np.percentile(xs, 99)),
            }
            for name, xs in data["latencies_ms"].items()
            if xs
        },
    }


# -- the targets -------------------------------------------------------------------------


def _predict_body(work: Path) -> tuple[LogisticRegression, pd.DataFrame, Path]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.random((500, 8)), columns=COLUMNS)
    y = (X["f0"] + X["f1"] > 1).astype(int)
    model = LogisticRegression(max_iter=500).fit(X, y)
    body = work / "predict.json"
    body.write_text(
        json.dumps(
            {"dataframe_split": {"columns": COLUMNS, "data": X.iloc[[7]].to_numpy().tolist()}}
        )
    )
    return model, X, body


def predict(args: argparse.Namespace, work: Path, details: dict[str, Any]) -> list[dict[str, Any]]:
    model, X, body = _predict_body(work)
    env = _setup_loopline(work, model, X)
    serve = [
        str(Path(sys.executable).with_name("loopline")),
        "serve",
        "--workers",
        "1",
        "--no-log-predictions",
    ]
    proc, port = _start(serve, env, "/health", work / "serve.log")
    try:
        ours = locust(
            "predict",
            f"http://127.0.0.1:{port}",
            {"LOAD_PATH": "/v1/models/bench/predict", "LOAD_BODY_FILE": str(body)},
            args,
            work,
        )
    finally:
        _stop(proc)
    details["predict_loopline"] = ours
    if args.no_anchor:
        return [_row("predict, one row", ours, None, "mlflow models serve (skipped)")]
    cmd, path_env, versions = mlflow_model_server(
        anchor_python("mlflow", ANCHOR), model, work, "model"
    )
    proc, port = _start(cmd, path_env, "/ping", work / "mlflow-serve.log")
    try:
        theirs = locust(
            "predict",
            f"http://127.0.0.1:{port}",
            {"LOAD_PATH": "/invocations", "LOAD_BODY_FILE": str(body)},
            args,
            work,
        )
    finally:
        _stop(proc)
    details["predict_mlflow"] = theirs
    details["mlflow_versions"] = versions
    return [_row("predict, one row", ours, theirs, f"MLflow {versions['mlflow']} models serve")]


def _experiment(url: str, name: str) -> str:
    answer = httpx.post(f"{url}/api/2.0/mlflow/experiments/create", json={"name": name}, timeout=60)
    answer.raise_for_status()
    return str(answer.json()["experiment_id"])


def tracking(args: argparse.Namespace, work: Path, details: dict[str, Any]) -> list[dict[str, Any]]:
    (work / "ours").mkdir()
    rows = []
    with loopline_server(work / "ours") as mine:
        exp = _experiment(mine.url, "load")
        ours = locust("tracking", mine.url, {"LOAD_EXPERIMENT_ID": exp}, args, work)
        v1 = locust("api_v1", mine.url, _api_v1_setup(mine.url), args, work)
    details["tracking_loopline"] = ours
    details["api_v1_loopline"] = v1
    theirs = None
    name = "mlflow server (skipped)"
    if not args.no_anchor:
        py = anchor_python("mlflow", ANCHOR)
        (work / "theirs").mkdir()
        with mlflow_server(py, work / "theirs") as anchor:
            time.sleep(10)  # mlflow server keeps starting helper processes for a while
            exp = _experiment(anchor.url, "load")
            theirs = locust("tracking", anchor.url, {"LOAD_EXPERIMENT_ID": exp}, args, work)
        details["tracking_mlflow"] = theirs
        show = [str(py), "-c", "import mlflow; print(mlflow.__version__)"]
        version = subprocess.run(show, capture_output=True, text=True, check=True).stdout.strip()
        name = f"MLflow {version} server"
    rows.append(_row("tracking, MLflow REST API mix", ours, theirs, name))
    rows.append(_row("/api/v1 reads (get run, history, search)", v1, None, ""))
    return rows


def _api_v1_setup(url: str) -> dict[str, str]:
    """A run with two params and 100 points of metric ``h``, to read under load."""
    api = f"{url}/api/2.0/mlflow"
    exp = _experiment(url, "load-v1")
    run_id = httpx.post(f"{api}/runs/create", json={"experiment_id": exp}, timeout=60).json()[
        "run"
    ]["info"]["run_id"]
    now = int(time.time() * 1000)
    httpx.post(
        f"{api}/runs/log-batch",
        json={
            "run_id": run_id,
            "params": [{"key": "lr", "value": "0.1"}, {"key": "depth", "value": "6"}],
            "metrics": [
                {"key": "h", "value": i / 100, "timestamp": now, "step": i} for i in range(100)
            ],
        },
        timeout=60,
    ).raise_for_status()
    return {"LOAD_RUN_ID": run_id, "LOAD_EXPERIMENT_NAME": "load-v1"}


# -- the result --------------------------------------------------------------------------


def _figures(r: dict[str, Any]) -> str:
    return (
        f"{r['rps']:,.0f} req/s; p50/p95/p99 {r['p50_ms']:.1f}/{r['p95_ms']:.1f}/"
        f"{r['p99_ms']:.1f} ms; {r['errors']} errors of {r['requests'] + r['errors']:,}"
    )


def _row(
    case: str, ours: dict[str, Any], theirs: dict[str, Any] | None, anchor: str
) -> dict[str, Any]:
    if theirs is None:
        ratio, value, name = "-", "-", anchor or "(no anchor has this API)"
    else:
        ratio = (
            f"{fmt_ratio(ours['rps'] / theirs['rps'])} req/s, "
            f"{fmt_ratio(theirs['p99_ms'] / ours['p99_ms'])} p99"
        )
        value, name = _figures(theirs), anchor
    return {
        "case": case,
        "loopline": _figures(ours),
        "anchor": name,
        "anchor_value": value,
        "ratio": ratio,
        "target": "0 errors",
        "met": ours["errors"] == 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per target")
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--no-anchor", action="store_true", help="skip MLflow")
    parser.add_argument("--targets", default="predict,tracking")
    args = parser.parse_args()
    if not LOCUST.exists():
        raise SystemExit(f"{LOCUST} is missing: install the dev extra (pip install -e '.[dev]')")
    # Outside any git repository: a run records the git commit when it starts inside one.
    work = Path(tempfile.mkdtemp(prefix="ll-bench-load-"))
    details: dict[str, Any] = {
        "duration_s": args.duration,
        "users": args.users,
        "generator": "locust (FastHttpUser, one process, no wait between requests)",
        "load_average_start": os.getloadavg(),
    }
    rows: list[dict[str, Any]] = []
    try:
        for target in args.targets.split(","):
            rows += {"predict": predict, "tracking": tracking}[target](args, work, details)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    details["load_average_end"] = os.getloadavg()
    path = write_result("load", rows, details)
    for r in rows:
        print(f"{r['case']}: {r['loopline']} | {r['anchor']}: {r['anchor_value']} | {r['ratio']}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
