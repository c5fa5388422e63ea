"""Benchmark: one-row predictions over HTTP, ``loopline serve`` against ``mlflow models serve``.

Workload: the same scikit-learn LogisticRegression (8 float columns) served by both, one
worker each, on loopback, in the same run. Every request is one row as
``{"dataframe_split": {"columns": [...], "data": [[...]]}}`` - a body both servers accept -
and both validate it against the model's schema. Measured per server:

* sequential latency: p50 / p99 over ``--requests`` requests on one keep-alive connection;
* throughput: ``--concurrency`` clients (keep-alive connections, asyncio, raw HTTP/1.1)
  for ``--duration`` seconds.

And the router's overhead: the same Loopline server answering a deployment in a canary at
50 % (two versions, counters kept, analysis running every second) against a direct one.
Its p50 row is paired: ``--pairs`` rounds of ``--pair-requests`` sequential requests to
each route, back to back, the route that goes first alternating, and the median of the
rounds' canary/direct p50 ratios. (It was the best canary p50 of three rounds over the
best direct p50: one lucky direct round decided it, and the same code read from -3 % to
+18 % on this shared machine against a paired overhead of 3-5 %.) The prediction log's
cost is paired the same way: the server as it runs by default (every answered request
written to the spool before its answer, then to the log in batches) against a second one
started with ``--no-log-predictions``.

A second model, a tree ensemble (scikit-learn ``HistGradientBoostingClassifier``, 100
trees), is measured the same way against MLflow, and against Loopline itself with
``--native-threads 0`` (each prediction on an OpenMP team as wide as the machine, as the
library does by default) to show what one native thread per prediction gives. No target:
the issue's targets are for the linear model; these rows are reported.

Targets: throughput >= 5x MLflow's, p50 < 1.5 ms, p99 <= MLflow's / 5, router overhead
<= 10 %, prediction log <= 5 % of a request.

Usage:
    python bench/bench_serving.py [--requests 2000] [--duration 10] [--concurrency 8]

Example:
    python bench/bench_serving.py --no-anchor
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pickle
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loopline as ll
from _common import ROOT, WORK, anchor_python, fmt_ratio, free_port, run_json, write_result

COLUMNS = [f"f{i}" for i in range(8)]
ANCHOR = ["mlflow>=3.4,<4"]


# -- the load generator: raw HTTP/1.1 on keep-alive connections -----------------------------


def _request(path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _parse_head(head: bytes) -> tuple[int, int]:
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = -1
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
        elif name.strip().lower() == b"transfer-encoding":
            raise RuntimeError("chunked responses are not supported by this load generator")
    if length < 0:
        raise RuntimeError("response without Content-Length")
    return status, length


def sequential(
    port: int, path: str, body: bytes, n: int, warmup: int = 200
) -> tuple[list[float], bytes]:
    """Latencies (seconds) of ``n`` requests one after another, and the last body."""
    req = _request(path, body)
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    out: list[float] = []
    last = b""
    try:
        for i in range(warmup + n):
            start = time.perf_counter()
            sock.sendall(req)
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    raise RuntimeError("server closed the connection")
                buf += chunk
            head, _, buf = buf.partition(b"\r\n\r\n")
            status, length = _parse_head(head)
            while len(buf) < length:
                buf += sock.recv(65536)
            last, buf = buf[:length], buf[length:]
            if status != 200:
                raise RuntimeError(f"status {status}: {last[:300]!r}")
            if i >= warmup:
                out.append(time.perf_counter() - start)
    finally:
        sock.close()
    return out, last


async def _client(
    port: int, req: bytes, deadline: float, lat: list[float], errors: list[int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while (start := time.perf_counter()) < deadline:
            writer.write(req)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            status, length = _parse_head(head[:-4])
            await reader.readexactly(length)
            if status == 200:
                lat.append(time.perf_counter() - start)
            else:
                errors.append(status)
    finally:
        writer.close()


async def _load(port: int, req: bytes, clients: int, seconds: float) -> dict[str, Any]:
    warm: list[float] = []
    await asyncio.gather(
        *[_client(port, req, time.perf_counter() + 1.0, warm, []) for _ in range(clients)]
    )
    lat: list[float] = []
    errors: list[int] = []
    start = time.perf_counter()
    await asyncio.gather(
        *[_client(port, req, start + seconds, lat, errors) for _ in range(clients)]
    )
    elapsed = time.perf_counter() - start
    return {
        "requests": len(lat),
        "errors": len(errors),
        "seconds": elapsed,
        "rps": len(lat) / elapsed,
        **_percentiles(lat, "loaded_"),
    }


def throughput(port: int, path: str, body: bytes, clients: int, seconds: float) -> dict[str, Any]:
    """Requests per second with ``clients`` concurrent keep-alive connections."""
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    result: dict[str, Any] = runner(_load(port, _request(path, body), clients, seconds))
    return result


def _percentiles(lat: list[float], prefix: str = "") -> dict[str, float]:
    if not lat:
        return {}
    arr = np.sort(np.asarray(lat)) * 1000
    return {
        f"{prefix}p50_ms": float(np.percentile(arr, 50)),
        f"{prefix}p99_ms": float(np.percentile(arr, 99)),
        f"{prefix}mean_ms": float(arr.mean()),
    }


# -- the two servers --------------------------------------------------------------------


def _wait(port: int, path: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                if b" 200 " in s.recv(1024).split(b"\r\n", 1)[0]:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server on :{port} did not become ready: {log.read_text()[-3000:]}")


def _start(
    cmd: list[str], env: dict[str, str], health: str, log: Path
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    full = [*cmd, "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            full, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
        )
    _wait(port, health, proc, log)
    return proc, port


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _setup_loopline(work: Path, model: LogisticRegression, X: pd.DataFrame) -> dict[str, str]:
    uri, artifacts = f"sqlite:///{work / 'loopline.db'}", str(work / "artifacts")
    ll.init(uri=uri, artifacts=artifacts)
    for name in ("bench", "bench-canary"):
        for _ in range(2):
            with ll.start_run(experiment="bench-serving") as run:
                run.log_model(model, "model", input_example=X.head(5))
            ll.registry.register(run, name)
        ll.deploy(name, 1)
    # A canary that never finishes its window: the router splits and counts all along.
    ll.deploy(
        "bench-canary",
        2,
        strategy="canary",
        steps=[50, 100],
        window_requests=10**9,
        window_seconds=10**7,
    )
    return {"LOOPLINE_URI": uri, "LOOPLINE_ARTIFACTS": artifacts}


def mlflow_model_server(
    py: Path, model: Any, work: Path, label: str, trusted: list[str] | None = None
) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """Save ``model`` (the very object Loopline serves) as an MLflow model with the anchor
    venv's Python ``py``; return the ``mlflow models serve`` command (one worker), the
    environment it needs and the MLflow and scikit-learn versions.

    ``trusted``: skops types MLflow must be told to trust (a tree predictor).
    """
    pkl = work / f"{label}.pkl"
    pkl.write_bytes(pickle.dumps(model))
    folder = work / f"mlflow-{label}"
    versions: dict[str, str] = run_json(
        py,
        ROOT / "bench" / "anchors" / "mlflow_serving.py",
        str(pkl),
        str(folder),
        json.dumps(COLUMNS),
        *([json.dumps(trusted)] if trusted else []),
    )
    cmd = [str(py.with_name("mlflow")), "models", "serve", "-m", str(folder)]
    # mlflow execs `uvicorn` by name: the anchor venv's bin must come first on PATH
    path_env = {"PATH": f"{py.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return [*cmd, "--env-manager", "local", "-w", "1"], path_env, versions


def measure(port: int, path: str, body: bytes, args: argparse.Namespace) -> dict[str, Any]:
    """Sequential latency, then throughput, of one endpoint (one round)."""
    lat, last = sequential(port, path, body, args.requests)
    result = {**_percentiles(lat), "answer": json.loads(last)}
    result.update(throughput(port, path, body, args.concurrency, args.duration))
    return result


DIRECT_PATH = "/v1/models/bench/predict"
CANARY_PATH = "/v1/models/bench-canary/predict"


Route = tuple[int, str]  # a server's port and a path on it


def paired_overhead(
    base: Route, other: Route, body: bytes, pairs: int, requests: int
) -> dict[str, Any]:
    """``other``'s p50 over ``base``'s, as the median of ``pairs`` paired rounds.

    Each round measures both routes back to back (``requests`` sequential requests each),
    the first route alternating, so a slow spell of the shared machine hits both sides
    of a round alike and neither side always goes first.
    """
    ratios, base_p50, other_p50 = [], [], []
    for i in range(pairs):
        p50: dict[Route, float] = {}
        for port, path in (base, other) if i % 2 == 0 else (other, base):
            lat, _ = sequential(port, path, body, requests, warmup=50)
            p50[port, path] = _percentiles(lat)["p50_ms"]
        base_p50.append(p50[base])
        other_p50.append(p50[other])
        ratios.append(p50[other] / p50[base])
    return {
        "overhead": statistics.median(ratios) - 1,
        "base_p50_ms": statistics.median(base_p50),
        "other_p50_ms": statistics.median(other_p50),
        "ratios": ratios,
        "pairs": pairs,
        "requests": requests,
    }


def best(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The best round of each figure: lowest p50, lowest p99, highest throughput.

    The machine may be shared: other load only ever slows a round down, so the best round
    is the closest to what the server itself costs. The same rule applies to both servers;
    every round is kept in the result's details.
    """
    return {
        "p50_ms": min(r["p50_ms"] for r in rounds),
        "p99_ms": min(r["p99_ms"] for r in rounds),
        "rps": max(r["rps"] for r in rounds),
        "answer": rounds[0]["answer"],
        "rounds": rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="best of N rounds, interleaved")
    parser.add_argument("--pairs", type=int, default=15, help="paired rounds, router p50")
    parser.add_argument("--pair-requests", type=int, default=500)
    parser.add_argument("--log-pairs", type=int, default=25, help="paired rounds, log on/off")
    parser.add_argument("--log-requests", type=int, default=1000)
    parser.add_argument("--no-anchor", action="store_true", help="skip MLflow")
    args = parser.parse_args()
    work = WORK / f"serving-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> None:
    """Set both servers up, measure them, write bench/results/serving.json."""
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.random((500, 8)), columns=COLUMNS)
    y = (X["f0"] + X["f1"] > 1).astype(int)
    model = LogisticRegression(max_iter=500).fit(X, y)
    tree = HistGradientBoostingClassifier(max_iter=100, early_stopping=False).fit(X, y)
    row = X.iloc[[7]]
    body = json.dumps(
        {"dataframe_split": {"columns": COLUMNS, "data": row.to_numpy().tolist()}}
    ).encode()
    expected = int(model.predict(row)[0])
    env = _setup_loopline(work, model, X)
    serve = [str(Path(sys.executable).with_name("loopline")), "serve", "--workers", "1"]
    details: dict[str, Any] = {
        "requests": args.requests,
        "duration_s": args.duration,
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "model": "LogisticRegression",
        "features": len(COLUMNS),
        "load_average_before": os.getloadavg(),
    }
    proc, port = _start(serve, env, "/health", work / "loopline.log")
    # The same server without the prediction log: what logging (the spool write before
    # each answer, the batches in the background) adds to a request.
    unlogged = [*serve, "--no-log-predictions"]
    bare, bare_port = _start(unlogged, env, "/health", work / "loopline-nolog.log")
    try:
        direct_rounds, canary_rounds = [], []
        for _ in range(args.rounds):
            direct_rounds.append(measure(port, DIRECT_PATH, body, args))
            canary_rounds.append(measure(port, CANARY_PATH, body, args))
        direct, canary = best(direct_rounds), best(canary_rounds)
        direct_route = (port, DIRECT_PATH)
        paired = paired_overhead(
            direct_route, (port, CANARY_PATH), body, args.pairs, args.pair_requests
        )
        # More and longer rounds than the router's: the log's background writer runs every
        # few seconds, and a round either meets it or not.
        logged = paired_overhead(
            (bare_port, DIRECT_PATH), direct_route, body, args.log_pairs, args.log_requests
        )
    finally:
        _stop(proc)
        _stop(bare)
    assert direct["answer"]["predictions"] == [expected], direct["answer"]
    details["loopline_direct"] = direct
    details["loopline_canary_50"] = canary
    rows: list[dict[str, Any]] = []
    overhead_rps = direct["rps"] / canary["rps"] - 1
    details["router_p50_paired"] = paired
    # Kept in the details for comparison with earlier runs: best canary over best direct.
    details["router_p50_best_of_rounds"] = canary["p50_ms"] / direct["p50_ms"] - 1
    overhead_p50 = paired["overhead"]
    if not args.no_anchor:
        py = anchor_python("mlflow", ANCHOR)
        mlflow_cmd, path_env, versions = mlflow_model_server(py, model, work, "model")
        details["mlflow_versions"] = versions
        proc, port = _start(mlflow_cmd, path_env, "/ping", work / "mlflow.log")
        try:
            anchor = best([measure(port, "/invocations", body, args) for _ in range(args.rounds)])
        finally:
            _stop(proc)
        assert anchor["answer"]["predictions"] == [expected], anchor["answer"]
        details["mlflow"] = anchor
        name = f"MLflow {versions['mlflow']} models serve"
        rows += [
            {
                "case": f"throughput, {args.concurrency} clients, 1 worker",
                "loopline": f"{direct['rps']:,.0f} req/s",
                "anchor": name,
                "anchor_value": f"{anchor['rps']:,.0f} req/s",
                "ratio": fmt_ratio(direct["rps"] / anchor["rps"]),
                "target": ">= 5x",
            },
            {
                "case": "sequential one-row latency p50",
                "loopline": f"{direct['p50_ms']:.3f} ms",
                "anchor": name,
                "anchor_value": f"{anchor['p50_ms']:.3f} ms",
                "ratio": fmt_ratio(anchor["p50_ms"] / direct["p50_ms"]),
                "target": "< 1.5 ms",
            },
            {
                "case": "sequential one-row latency p99",
                "loopline": f"{direct['p99_ms']:.3f} ms",
                "anchor": name,
                "anchor_value": f"{anchor['p99_ms']:.3f} ms",
                "ratio": fmt_ratio(anchor["p99_ms"] / direct["p99_ms"]),
                "target": "<= anchor / 5 (ratio >= 5x)",
            },
        ]
    rows.append(
        {
            "case": "router overhead: canary 50% vs direct (throughput)",
            "loopline": f"{canary['rps']:,.0f} req/s",
            "anchor": "loopline direct",
            "anchor_value": f"{direct['rps']:,.0f} req/s",
            "ratio": f"{overhead_rps:+.1%}",
            "target": "<= 10 %",
        }
    )
    rows.append(
        {
            "case": "router overhead: canary 50% vs direct (p50, median of paired rounds)",
            "loopline": f"{paired['other_p50_ms']:.3f} ms",
            "anchor": "loopline direct",
            "anchor_value": f"{paired['base_p50_ms']:.3f} ms",
            "ratio": f"{overhead_p50:+.1%}",
            "target": "<= 10 %",
        }
    )
    details["prediction_log_p50_paired"] = logged
    rows.append(
        {
            "case": "prediction log: on (default) vs off (p50, median of paired rounds)",
            "loopline": f"{logged['other_p50_ms']:.3f} ms",
            "anchor": "loopline serve --no-log-predictions",
            "anchor_value": f"{logged['base_p50_ms']:.3f} ms",
            "ratio": f"{logged['overhead']:+.1%}",
            "target": "<= 5 %",
        }
    )
    rows += run_tree(args, work, env, serve, tree, X, row, body)
    details["tree"] = {"model": "HistGradientBoostingClassifier", "trees": tree.n_iter_}
    path = write_result("serving", rows, details)
    for r in rows:
        print(
            f"{r['case']}: {r['loopline']} vs {r['anchor']} {r['anchor_value']} "
            f"({r['ratio']}; target {r['target']})"
        )
    print(f"wrote {path}")


def run_tree(
    args: argparse.Namespace,
    work: Path,
    env: dict[str, str],
    serve: list[str],
    tree: Any,
    X: pd.DataFrame,
    row: pd.DataFrame,
    body: bytes,
) -> list[dict[str, Any]]:
    """The tree model: Loopline (one native thread per prediction, the default, and the
    library's full team) and MLflow, in rounds interleaved over the three servers."""
    with ll.start_run(experiment="bench-serving") as run:
        run.log_model(tree, "model", input_example=X.head(5))
    ll.registry.register(run, "bench-tree")
    ll.deploy("bench-tree", 1)
    expected = int(tree.predict(row)[0])
    servers: dict[str, tuple[list[str], dict[str, str], str, str]] = {
        "one": ([*serve, "--model", "bench-tree"], env, "/health", "/v1/models/bench-tree/predict"),
        "team": (
            [*serve, "--model", "bench-tree", "--native-threads", "0"],
            env,
            "/health",
            "/v1/models/bench-tree/predict",
        ),
    }
    name = "MLflow models serve"
    if not args.no_anchor:
        cmd, path_env, versions = mlflow_model_server(
            anchor_python("mlflow", ANCHOR),
            tree,
            work,
            "tree",
            ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"],
        )
        name = f"MLflow {versions['mlflow']} models serve"
        servers["mlflow"] = (cmd, path_env, "/ping", "/invocations")
    rounds: dict[str, list[dict[str, Any]]] = {k: [] for k in servers}
    for _ in range(args.rounds):
        for key, (cmd, server_env, health, path) in servers.items():
            proc, port = _start(cmd, server_env, health, work / f"tree-{key}.log")
            try:
                rounds[key].append(measure(port, path, body, args))
            finally:
                _stop(proc)
            assert rounds[key][-1]["answer"]["predictions"] == [expected], rounds[key][-1]
    one, team = best(rounds["one"]), best(rounds["team"])
    for figures in (one, team):  # the best round, as best() does for the other figures
        figures["loaded_p99_ms"] = min(r["loaded_p99_ms"] for r in figures["rounds"])
    rows = [
        {
            "case": f"tree model: throughput, {args.concurrency} clients, 1 worker, one "
            "native thread vs the library's team (--native-threads 0)",
            "loopline": f"{one['rps']:,.0f} req/s",
            "anchor": "loopline --native-threads 0",
            "anchor_value": f"{team['rps']:,.0f} req/s",
            "ratio": fmt_ratio(one["rps"] / team["rps"]),
            "target": "reported",
        },
        {
            "case": f"tree model: latency p99 under load ({args.concurrency} clients), one "
            "native thread vs the library's team",
            "loopline": f"{one['loaded_p99_ms']:.2f} ms",
            "anchor": "loopline --native-threads 0",
            "anchor_value": f"{team['loaded_p99_ms']:.2f} ms",
            "ratio": fmt_ratio(team["loaded_p99_ms"] / one["loaded_p99_ms"]),
            "target": "reported",
        },
    ]
    if "mlflow" in rounds:
        anchor = best(rounds["mlflow"])
        rows += [
            {
                "case": f"tree model: throughput, {args.concurrency} clients, 1 worker",
                "loopline": f"{one['rps']:,.0f} req/s",
                "anchor": name,
                "anchor_value": f"{anchor['rps']:,.0f} req/s",
                "ratio": fmt_ratio(one["rps"] / anchor["rps"]),
                "target": "reported",
            },
            {
                "case": "tree model: sequential one-row latency p99",
                "loopline": f"{one['p99_ms']:.3f} ms",
                "anchor": name,
                "anchor_value": f"{anchor['p99_ms']:.3f} ms",
                "ratio": fmt_ratio(anchor["p99_ms"] / one["p99_ms"]),
                "target": "reported",
            },
        ]
    return rows


if __name__ == "__main__":
    main()
