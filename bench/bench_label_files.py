"""Benchmark: reading labels (``ll.monitor.read_labels``) with and without the label files'
index (``label_batches.model`` / ``rid_min`` / ``rid_max`` / ``rid_hashes``, migration 0023).

Workload (under ``bench/.work/label_files``, deleted at the end): an embedded store (SQLite
+ a local folder) holding ``--files`` label files (2,000 by default) over ``--models``
models (5), written by the real ``ll.monitor.log_labels``, as feedback arriving all day
does: each call labels ``--per-file`` requests (50) of one model, a stretch of one server
process's traffic (ids as the model server makes them: a per-process prefix and a hex
counter; two processes per model), one in ten with corrections of labels sent long
before; one call in ten is sent for no model in particular.

Cases, each on model ``m0``, as the monitoring page and the loop call it:

- **window**: ``read_labels("m0", request_ids=...)`` of the newest 1,000 requests of its
  traffic (``performance(window=1000)``'s last window);
- **page**: the same for the newest 20,000 requests (``performance(last=20000)``, the
  ``/monitoring`` page);
- **model**: ``read_labels("m0")``, every label of the model.

"Before" is the same store with the new columns set to NULL, as rows written before 0023
are: every label file of every model is then opened, as the previous code did. The two
answers are compared (the same labels). Median of ``--repeat`` calls each.

Usage:
    .venv/bin/python bench/bench_label_files.py [--files 2000] [--models 5]
        [--per-file 50] [--repeat 5]

Example:
    .venv/bin/python bench/bench_label_files.py --files 200 --repeat 1
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import WORK, fmt_ratio, median_time, write_result

PROCESSES_PER_MODEL = 2
WINDOW = 1_000
PAGE = 20_000


def _traffic(n_models: int, per_model: int) -> dict[str, list[str]]:
    """Each model's request ids in the order served: its processes take turns by 500."""
    out = {}
    for m in range(n_models):
        prefixes = [secrets.token_hex(4) + "-" for _ in range(PROCESSES_PER_MODEL)]
        counters = [0] * PROCESSES_PER_MODEL
        ids = []
        for i in range(per_model):
            p = (i // 500) % PROCESSES_PER_MODEL
            counters[p] += 1
            ids.append(prefixes[p] + format(counters[p], "x"))
        out[f"m{m}"] = ids
    return out


def _fill(traffic: dict[str, list[str]], files: int, per_file: int) -> float:
    """Log the label files, in the order their outcomes would arrive; seconds taken."""
    import loopline as ll

    rng = random.Random(1)
    models = sorted(traffic)
    done = dict.fromkeys(models, 0)
    start = time.perf_counter()
    for call in range(files):
        model = models[call % len(models)]
        ids = traffic[model]
        chunk = ids[done[model] : done[model] + per_file]
        done[model] += per_file * 2  # half the requests are labelled
        if call % 10 == 7 and done[model] > 10 * per_file:  # corrections of older labels
            chunk = chunk[: per_file // 2] + rng.sample(ids[: done[model]], per_file // 2)
        labels = [rng.randint(0, 1) for _ in chunk]
        ll.monitor.log_labels(chunk, labels, model=None if call % 10 == 9 else model)
    return time.perf_counter() - start


def _cases(traffic: dict[str, list[str]]) -> dict[str, list[str] | None]:
    ids = traffic["m0"]
    return {"window": ids[-WINDOW:], "page": ids[-PAGE:], "model": None}


def _time_all(cases: dict[str, list[str] | None], repeat: int) -> tuple[dict[str, float], Any]:
    from loopline.monitoring.label_reads import read_labels

    key = ["request_id", "row", "model"]
    answers = {
        name: read_labels("m0", request_ids=wanted).sort_values(key).reset_index(drop=True)
        for name, wanted in cases.items()
    }
    times = {
        name: median_time(lambda w=wanted: read_labels("m0", request_ids=w), repeat)
        for name, wanted in cases.items()
    }
    return times, answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=2_000)
    parser.add_argument("--models", type=int, default=5)
    parser.add_argument("--per-file", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    import pandas as pd
    import sqlalchemy as sa

    import loopline as ll
    from loopline.monitoring.label_reads import label_files
    from loopline.monitoring.tables import label_batches

    work = WORK / "label_files"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        ctx = ll.init(uri=f"sqlite:///{work / 'meta.db'}", artifacts=str(work / "artifacts"))
        per_model = args.files // args.models * args.per_file * 2
        traffic = _traffic(args.models, per_model)
        fill_s = _fill(traffic, args.files, args.per_file)
        cases = _cases(traffic)
        opened = {name: len(label_files("m0", wanted)) for name, wanted in cases.items()}
        after, found = _time_all(cases, args.repeat)
        with ctx.engine.begin() as conn:  # every row as one written before 0023
            conn.execute(
                sa.update(label_batches).values(
                    model=None, rid_min=None, rid_max=None, rid_hashes=None
                )
            )
        total = len(label_files())
        before, expected = _time_all(cases, args.repeat)
        for name in cases:
            pd.testing.assert_frame_equal(found[name], expected[name])
        ctx.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    what = {
        "window": f"the newest {WINDOW:,} requests' labels",
        "page": f"the newest {PAGE:,} requests' labels",
        "model": "every label of the model",
    }
    rows = [
        {
            "case": f"read_labels, {what[name]}, {total} label files of {args.models} models",
            "loopline": f"{after[name]:.3f} s ({opened[name]}/{total} files read)",
            "anchor": "loopline before 0023 (every label file read)",
            "anchor_value": f"{before[name]:.3f} s",
            "ratio": fmt_ratio(before[name] / after[name]),
            "target": ">= 2x" if name != "model" else f">= {args.models / 2:g}x",
        }
        for name in cases
    ]
    details = {
        "files": total,
        "models": args.models,
        "labels_per_file": args.per_file,
        "repeat": args.repeat,
        "fill_s": round(fill_s, 1),
        "before_s": {k: round(v, 4) for k, v in before.items()},
        "after_s": {k: round(v, 4) for k, v in after.items()},
        "files_read_after": opened,
        "labels_found": {k: len(v) for k, v in found.items()},
    }
    path = write_result("label_files", rows, details)
    print(json.dumps({"result": str(path), **details}))


if __name__ == "__main__":
    main()
