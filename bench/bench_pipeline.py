"""Benchmark: framework overhead per step of a pipeline of 100 no-op steps, cached and not.

Workload: a chain of 100 steps that do nothing (each takes the previous step's output, so
they run one after another), on the embedded store (SQLite in WAL mode + a local artifact
folder) with the local executor. ``not cached``: a first run (a fresh ``salt`` param makes
every cache key new): each step is scheduled, run, its output stored as an artifact, its
step run and cache entry written, and a tracked child run opened and closed. ``cached``:
the same run again: every step is a cache hit. The figure is the run's wall time / 100.

Anchors, each in its own virtual environment (``bench/_common.py:anchor_python``):
Prefect 3 (a flow of 100 chained tasks, its ephemeral local API on SQLite; cached = task
cache on inputs + source, results persisted) and Metaflow (``run`` of a 100-step flow on
the local datastore; cached = ``resume end``, which clones every other step). When an
anchor cannot be installed or run offline, the result says so instead of a figure.

Usage:
    python bench/bench_pipeline.py [--steps 100] [--repeat 3] [--no-anchors]

Example:
    .venv/bin/python bench/bench_pipeline.py
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import loopline as ll
from _common import ROOT, WORK, anchor_python, fmt_ratio, run_json, write_result

PREFECT = ["prefect>=3,<4"]
METAFLOW = ["metaflow>=2.12,<3"]
TARGET_CACHED_MS = 5.0
TARGET_RATIO = 10.0


@ll.step
def noop(i: int, prev: Any, salt: str) -> None:
    """Does nothing; ``prev`` chains it after the step before."""
    return None


@ll.pipeline
def chain(steps: int = 100, salt: str = "") -> None:
    prev = None
    for i in range(steps):
        prev = noop(i, prev, salt)


def loopline_figures(steps: int, repeat: int) -> dict[str, Any]:
    """Median ms per step of a first (uncached) and a second (cached) run."""
    tmp = Path(tempfile.mkdtemp(prefix="ll-bench-pipeline-"))
    ll.init(uri=f"sqlite:///{tmp / 'loopline.db'}", artifacts=str(tmp / "artifacts"))
    chain.run({"steps": 3, "salt": "warm-up"})  # migrate the database, import everything
    uncached, cached = [], []
    for r in range(repeat):
        salt = f"{time.time_ns()}-{r}"
        start = time.perf_counter()
        first = chain.run({"steps": steps, "salt": salt})
        uncached.append(time.perf_counter() - start)
        start = time.perf_counter()
        second = chain.run({"steps": steps, "salt": salt})
        cached.append(time.perf_counter() - start)
        assert {s.status for s in first.steps.values()} == {"finished"}, first.summary()
        assert {s.status for s in second.steps.values()} == {"cached"}, second.summary()
    shutil.rmtree(tmp, ignore_errors=True)
    return {
        "uncached_s": uncached,
        "cached_s": cached,
        "uncached_ms_per_step": statistics.median(uncached) / steps * 1000,
        "cached_ms_per_step": statistics.median(cached) / steps * 1000,
    }


def anchor(name: str, requirements: list[str], script: str, steps: int) -> dict[str, Any]:
    """Run one anchor in its venv; on failure, say why instead of a figure."""
    try:
        python = anchor_python(name, requirements)
    except Exception as exc:  # an install failure is a result, recorded as such
        return {"error": f"could not install {' '.join(requirements)}: {exc}"}
    work = WORK / f"pipeline-{name}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        out: dict[str, Any] = run_json(
            python,
            ROOT / "bench" / "anchors" / script,
            str(steps),
            str(work),
            cwd=work,
            timeout=3600,
        )
    except Exception as exc:  # a run failure (e.g. no network) is a result too
        detail = getattr(exc, "stderr", None) or traceback.format_exc()
        return {"error": f"{name} did not run here: {str(detail).strip()[-2000:]}"}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def _ms(x: float) -> str:
    return f"{x:.2f} ms" if x < 10 else f"{x:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-anchors", action="store_true", help="measure Loopline only")
    args = parser.parse_args()
    ours = loopline_figures(args.steps, args.repeat)
    anchors: dict[str, dict[str, Any]] = {}
    if not args.no_anchors:
        anchors["prefect"] = anchor("prefect", PREFECT, "prefect_pipeline.py", args.steps)
        anchors["metaflow"] = anchor("metaflow", METAFLOW, "metaflow_pipeline.py", args.steps)
    rows = []
    cases = [
        ("not cached", "uncached_ms_per_step", "uncached_s", "uncached_s", ""),
        ("cached", "cached_ms_per_step", "cached_s", "resume_s", f"< {TARGET_CACHED_MS:g} ms"),
    ]
    for label, key, prefect_key, metaflow_key, target in cases:
        value = ours[key]
        # The target: at least 10x lower overhead than the fastest anchor.
        measured = {
            name: figures[prefect_key if name == "prefect" else metaflow_key] / figures["steps"]
            for name, figures in anchors.items()
            if "error" not in figures
        }
        fastest = min(measured, key=measured.__getitem__) if measured else None
        for name, figures in anchors.items() or [("none", {"error": "anchors skipped"})]:
            akey = prefect_key if name == "prefect" else metaflow_key
            if "error" in figures:
                anchor_value, ratio = "not measured (see details)", "n/a"
                anchor_name = name
            else:
                per_step = figures[akey] / figures["steps"] * 1000
                anchor_value, ratio = _ms(per_step), fmt_ratio(per_step / value)
                how = "task cache" if name == "prefect" else "resume end"
                anchor_name = f"{name} {figures['version']}" + (
                    f" ({how})" if label == "cached" else ""
                )
            row: dict[str, Any] = {
                "case": f"{args.steps} no-op steps, {label}: overhead per step "
                "(local executor, SQLite + folder)",
                "loopline": _ms(value),
                "anchor": anchor_name,
                "anchor_value": anchor_value,
                "ratio": ratio,
                "target": target,
            }
            checks = [value < TARGET_CACHED_MS] if target else []
            if name == fastest:
                row["target"] = (f"{target}; " if target else "") + ">= 10x the fastest anchor"
                checks.append(measured[name] * 1000 / value >= TARGET_RATIO)
            if checks:
                row["met"] = all(checks)
            rows.append(row)
    details = {
        "workload": f"chain of {args.steps} no-op steps, each reading the previous output",
        "repeat": args.repeat,
        "loopline": ours,
        "anchors": anchors,
        "load_average": os.getloadavg(),
    }
    path = write_result("pipeline", rows, details)
    for row in rows:
        print(
            f"{row['case']}: loopline {row['loopline']}, {row['anchor']} "
            f"{row['anchor_value']} ({row['ratio']}) {row['target']}"
        )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
