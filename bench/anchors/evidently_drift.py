"""The Evidently side of bench_drift: runs in the anchor venv (bench/.envs/evidently).

Reads the reference and current Parquet files with pandas, runs Evidently 0.7's
``Report([DataDriftPreset()]).run(current, reference)`` (default settings), and prints one
JSON line: the dataset verdict, the share of drifted columns, each column's method, score,
threshold and verdict, and the seconds spent reading and running. The whole process (start-up,
imports, reading, the report) is timed from outside by ``bench_drift.py``.

Evidently 0.7's snapshot gives each column's score (``ValueDrift``: a p-value or a distance)
and its threshold, not the per-column verdict; the verdict is taken the way Evidently's own
stat tests take it (``evidently/legacy/calculations/stattests/*.py``): K-S ``p <= threshold``,
chi-square and Z-test ``p < threshold``, distances ``score >= threshold``. The number found
is checked against Evidently's ``DriftedColumnsCount``.

Usage: python evidently_drift.py REFERENCE.parquet CURRENT.parquet
"""

from __future__ import annotations

import json
import sys
import time

import pandas as pd
from evidently import Report
from evidently import __version__ as evidently_version
from evidently.presets import DataDriftPreset


def _drifted(method: str, score: float, threshold: float) -> bool:
    if method == "K-S p_value":
        return score <= threshold
    if "p_value" in method:
        return score < threshold
    return score >= threshold


def main(reference_path: str, current_path: str) -> None:
    started = time.perf_counter()
    reference = pd.read_parquet(reference_path)
    current = pd.read_parquet(current_path)
    read = time.perf_counter() - started
    snapshot = Report([DataDriftPreset()]).run(current, reference)
    ran = time.perf_counter() - started - read
    columns: dict[str, dict[str, object]] = {}
    count = share = None
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config["type"].endswith("DriftedColumnsCount"):
            count, share = metric["value"]["count"], metric["value"]["share"]
        elif config["type"].endswith("ValueDrift"):
            score = float(metric["value"])
            method, threshold = config["method"], float(config["threshold"])
            columns[config["column"]] = {
                "method": method,
                "score": score,
                "threshold": threshold,
                "drifted": _drifted(method, score, threshold),
            }
    flagged = sorted(name for name, c in columns.items() if c["drifted"])
    if count is None or int(count) != len(flagged):
        raise SystemExit(f"DriftedColumnsCount {count} != per-column verdicts {flagged}")
    print(
        json.dumps(
            {
                "evidently": evidently_version,
                "pandas": pd.__version__,
                "dataset_drift": bool(share is not None and share >= 0.5),
                "share_drifted": share,
                "drifted_columns": flagged,
                "columns": columns,
                "read_seconds": read,
                "report_seconds": ran,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
