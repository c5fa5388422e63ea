"""Benchmark: data drift on 25 columns, Loopline against Evidently 0.7's ``DataDriftPreset``.

Workloads (generated with a fixed seed, written as Parquet under ``bench/.work/drift`` and
deleted at the end): a reference and a current table of N rows (100,000 and 1,000,000) x 25
columns: 20 numeric (normal, each with its own mean and spread) and 5 categorical (strings,
6 levels each). Drift is injected in the current table in 3 numeric columns (``num_00`` to
``num_02``: the mean shifted by 0.5 standard deviation) and in 2 categorical columns
(``cat_0``, ``cat_1``: the level shares reversed). Nothing else changes.

Each round runs every contender once, each in a fresh process, in turn:

- Evidently: ``bench/anchors/evidently_drift.py`` in its own venv (``bench/.envs/evidently``):
  ``pd.read_parquet`` both files, ``Report([DataDriftPreset()]).run(current, reference)``.
- Loopline: a fresh process runs ``ll.monitor.drift(reference_path, current_path)`` (the
  Parquet files are read by Loopline) and prints the verdicts.
- Loopline CLI: ``loopline drift REF CUR --json``.

Wall time is the whole process (interpreter start-up, imports, reading the files, the drift
computation); peak memory is the process's maximum resident set size, from ``os.wait4``
(the driver generates no data itself and stays small, since a child's peak counts the
memory of the process it was forked from).
Both must flag exactly the 5 drifted columns.

Sketches: a ``DriftSketch`` is built from the 1M-row reference, the 1M-row current table is
logged into it in 10 batches of 100,000 rows, each batch's window is stored as JSON (as the
prediction log will do), and the time to load the 10 stored windows, merge them and compute
drift over the 1M-row window is measured (median of ``--repeat`` runs), as is the logging cost.

Usage:
    .venv/bin/python bench/bench_drift.py [--repeat 3] [--sizes 100000,1000000]

Example:
    .venv/bin/python bench/bench_drift.py --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, WORK, anchor_python, fmt_ratio, write_result

EVIDENTLY_PINS = ["evidently==0.7.23", "pandas<3"]
ANCHOR = Path(__file__).resolve().parent / "anchors" / "evidently_drift.py"
LOOPLINE_CLI = ROOT / ".venv" / "bin" / "loopline"
SEED = 20260407
N_NUMERIC, N_CATEGORICAL = 20, 5
DRIFTED = ["cat_0", "cat_1", "num_00", "num_01", "num_02"]
LEVELS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]
SHARES = [0.30, 0.25, 0.18, 0.12, 0.10, 0.05]
SPEED_TARGET, MEMORY_TARGET, SKETCH_TARGET_S = 20.0, 0.5, 1.0
SKETCH_BATCHES = 10


# -- data ------------------------------------------------------------------------------------


def make_data(folder: Path, rows: int) -> tuple[Path, Path]:
    """Write ``reference.parquet`` and ``current.parquet`` of ``rows`` rows into ``folder``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(SEED + rows)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for which in ("reference", "current"):
        cols: dict[str, Any] = {}
        for k in range(N_NUMERIC):
            mean, sd = float(k), 1.0 + k / 10
            if which == "current" and f"num_{k:02d}" in DRIFTED:
                mean += 0.5 * sd
            cols[f"num_{k:02d}"] = rng.normal(mean, sd, rows)
        for k in range(N_CATEGORICAL):
            shares = SHARES[::-1] if which == "current" and f"cat_{k}" in DRIFTED else SHARES
            codes = rng.choice(len(LEVELS), size=rows, p=shares)
            cols[f"cat_{k}"] = np.asarray(LEVELS, dtype=object)[codes]
        path = folder / f"{which}.parquet"
        pq.write_table(pa.table(cols), path)
        paths.append(path)
    return paths[0], paths[1]


# -- worker side (runs in a fresh process) --------------------------------------------------


def _worker_loopline(reference: str, current: str) -> None:
    started = time.perf_counter()
    import loopline as ll

    report = ll.monitor.drift(reference, current)
    print(
        json.dumps(
            {
                "dataset_drift": report.drifted,
                "share_drifted": report.share_drifted,
                "drifted_columns": sorted(report.drifted_columns),
                "tests": {name: c.test for name, c in report.columns.items()},
                "seconds": time.perf_counter() - started,
            }
        )
    )


def _worker_sketch(reference: str, current: str, store: str, repeat: int) -> None:
    import pyarrow.parquet as pq

    from loopline.monitoring.sketch import DriftSketch

    ref = pq.read_table(reference)
    started = time.perf_counter()
    sketch = DriftSketch.from_reference(ref)
    build = time.perf_counter() - started
    cur = pq.read_table(current)
    folder = Path(store)
    folder.mkdir(parents=True, exist_ok=True)
    size = -(-cur.num_rows // SKETCH_BATCHES)
    log_seconds = 0.0
    for i in range(SKETCH_BATCHES):
        window = sketch.window()
        batch = cur.slice(i * size, size)
        started = time.perf_counter()
        window.update(batch)
        log_seconds += time.perf_counter() - started
        (folder / f"window-{i:02d}.json").write_text(window.to_json())
    query: list[float] = []
    report = None
    for _ in range(repeat):
        started = time.perf_counter()
        windows = [DriftSketch.from_json(p.read_text()) for p in sorted(folder.glob("*.json"))]
        merged = DriftSketch.merge(windows)
        report = merged.drift()
        query.append(time.perf_counter() - started)
    assert report is not None
    print(
        json.dumps(
            {
                "build_seconds": build,
                "log_seconds": log_seconds,
                "log_rows": cur.num_rows,
                "query_seconds": query,
                "window_rows": report.n_current,
                "drifted_columns": sorted(report.drifted_columns),
                "tests": {name: c.test for name, c in report.columns.items()},
                "json_bytes": sum(p.stat().st_size for p in folder.glob("*.json")),
            }
        )
    )


# -- driver side ----------------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPLINE_")}
    env["LOOPLINE_HOME"] = str(WORK / "drift" / "home")
    return env


def measure(cmd: list[str], out_file: Path) -> tuple[float, float, Any]:
    """Run ``cmd`` in a fresh process: (wall seconds, peak RSS in MiB, JSON of its last line)."""
    with out_file.open("w") as out, (out_file.with_suffix(".err")).open("w") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=_env())
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n"
            f"{out_file.with_suffix('.err').read_text()[-3000:]}"
        )
    lines = out_file.read_text().strip().splitlines()
    return (
        seconds,
        usage.ru_maxrss / 1024,
        json.loads("\n".join(lines) if lines[0] == "{" else lines[-1]),
    )


def _round(evidently: Path, ref: Path, cur: Path, work: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    t, rss, res = measure([str(evidently), str(ANCHOR), str(ref), str(cur)], work / "ev.out")
    out["evidently"] = {"seconds": t, "rss_mib": rss, "result": res}
    cmd = [sys.executable, __file__, "--worker", "loopline", str(ref), str(cur)]
    t, rss, res = measure(cmd, work / "ll.out")
    out["loopline"] = {"seconds": t, "rss_mib": rss, "result": res}
    t, rss, res = measure(
        [str(LOOPLINE_CLI), "drift", str(ref), str(cur), "--json"], work / "cli.out"
    )
    flagged = sorted(name for name, c in res["columns"].items() if c["drifted"])
    out["cli"] = {"seconds": t, "rss_mib": rss, "result": {"drifted_columns": flagged}}
    return out


def _check(label: str, flagged: list[str]) -> bool:
    ok = sorted(flagged) == DRIFTED
    if not ok:
        print(f"  {label} flagged {flagged}, expected {DRIFTED}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="rounds (medians are quoted)")
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        if args.worker[0] == "loopline":
            _worker_loopline(args.worker[1], args.worker[2])
        elif args.worker[0] == "data":
            make_data(Path(args.worker[1]), int(args.worker[2]))
        else:
            _worker_sketch(args.worker[1], args.worker[2], args.worker[3], int(args.worker[4]))
        return
    evidently = anchor_python("evidently", EVIDENTLY_PINS)
    work = WORK / "drift"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rows: list[dict[str, Any]] = []
    details: dict[str, Any] = {"repeat": args.repeat, "drifted": DRIFTED, "sizes": {}}
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            # In a child process: the driver stays small, and a child's peak RSS counts the
            # memory of the process it was forked from (Linux keeps the high-water mark of
            # the address space it replaces at exec).
            folder = work / f"n{size}"
            subprocess.run(
                [sys.executable, __file__, "--worker", "data", str(folder), str(size)], check=True
            )
            ref, cur = folder / "reference.parquet", folder / "current.parquet"
            samples: dict[str, list[float]] = {}
            same = True
            last: dict[str, Any] = {}
            for i in range(args.repeat):
                last = _round(evidently, ref, cur, work)
                for who, m in last.items():
                    samples.setdefault(f"{who}/seconds", []).append(m["seconds"])
                    samples.setdefault(f"{who}/rss_mib", []).append(m["rss_mib"])
                    same &= _check(f"{who} at {size:,} rows", m["result"]["drifted_columns"])
                print(
                    f"{size:,} rows, round {i + 1}/{args.repeat}: "
                    + ", ".join(f"{k} {v[-1]:.2f}" for k, v in sorted(samples.items())),
                    flush=True,
                )
            med = {k: statistics.median(v) for k, v in samples.items()}
            ev_name = f"Evidently {last['evidently']['result']['evidently']} DataDriftPreset"
            for who, name in (("loopline", "ll.monitor.drift"), ("cli", "`loopline drift --json`")):
                speed = med["evidently/seconds"] / med[f"{who}/seconds"]
                mem = med[f"{who}/rss_mib"] / med["evidently/rss_mib"]
                big = size >= 1_000_000
                rows.append(
                    {
                        "case": f"{size:,} rows x 25 columns, {name}, wall time of the process",
                        "loopline": f"{med[f'{who}/seconds']:.2f} s",
                        "anchor": ev_name,
                        "anchor_value": f"{med['evidently/seconds']:.2f} s",
                        "ratio": fmt_ratio(speed),
                        "target": f">= {SPEED_TARGET:g}x" if big else "",
                        "met": (speed >= SPEED_TARGET and same) if big else same,
                    }
                )
                rows.append(
                    {
                        "case": f"{size:,} rows x 25 columns, {name}, peak RSS",
                        "loopline": f"{med[f'{who}/rss_mib']:.0f} MiB",
                        "anchor": ev_name,
                        "anchor_value": f"{med['evidently/rss_mib']:.0f} MiB",
                        "ratio": fmt_ratio(1 / mem),
                        "target": f"<= {MEMORY_TARGET:g} of anchor" if big else "",
                        "met": mem <= MEMORY_TARGET if big else True,
                    }
                )
            details["sizes"][str(size)] = {
                "same_columns_flagged": same,
                "samples": {k: [round(x, 3) for x in v] for k, v in sorted(samples.items())},
                "medians": {k: round(v, 3) for k, v in sorted(med.items())},
                "evidently": last["evidently"]["result"],
                "loopline": last["loopline"]["result"],
            }
            if size == max(int(s) for s in args.sizes.split(",")):
                cmd = [
                    sys.executable,
                    __file__,
                    "--worker",
                    "sketch",
                    str(ref),
                    str(cur),
                    str(work / "windows"),
                    str(max(args.repeat, 5)),
                ]
                _, _, sk = measure(cmd, work / "sketch.out")
                q = statistics.median(sk["query_seconds"])
                sk_same = _check("sketch", sk["drifted_columns"])
                rows.append(
                    {
                        "case": f"drift over a {sk['window_rows']:,}-row window from "
                        f"{SKETCH_BATCHES} stored sketches",
                        "loopline": f"{q * 1000:.1f} ms",
                        "anchor": "none (Evidently recomputes from rows)",
                        "anchor_value": "-",
                        "ratio": "-",
                        "target": f"< {SKETCH_TARGET_S:g} s",
                        "met": q < SKETCH_TARGET_S and sk_same,
                    }
                )
                details["sketch"] = {
                    **sk,
                    "median_query_seconds": q,
                    "log_rows_per_second": sk["log_rows"] / sk["log_seconds"],
                }
            shutil.rmtree(ref.parent, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    details["load_average"] = os.getloadavg()
    path = write_result("drift", rows, details)
    for row in rows:
        print(
            f"{row['case']}: {row['loopline']} vs {row['anchor_value']} ({row['ratio']}, "
            f"target {row['target'] or '-'}, {'met' if row['met'] else 'NOT met'})"
        )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
