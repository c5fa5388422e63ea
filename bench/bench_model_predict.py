"""Benchmark: one-row predictions through a registry-loaded model (validate + predict).

Workload: a LogisticRegression on 8 float columns, fitted on a DataFrame, logged with
``run.log_model`` and loaded with ``ll.registry.load``; one row as a list of one dict per
call (what the model server receives). Compared with the raw scikit-learn call on a bare
array (the floor) and on a one-row DataFrame, and with MLflow's ``pyfunc`` model on a
one-row DataFrame (the anchor, in its own venv). Times are the best of 7 repeats.

Usage:
    python bench/bench_model_predict.py [--no-anchor]

Example:
    python bench/bench_model_predict.py
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loopline as ll
from _common import anchor_python, fmt_ratio, run_json, write_result

ANCHOR = [
    "mlflow-skinny==3.17.2",
    "scikit-learn==1.9.1",
    "skops==0.16.0",
    "pandas>=2.2",
    "numpy>=2",
]
TARGET_OVERHEAD_US = 100.0


def _best(fn: Any, number: int = 300) -> float:
    return min(timeit.repeat(fn, number=number, repeat=7)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-anchor", action="store_true", help="skip the MLflow anchor")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ll-bench-models-"))
    ll.init(uri=f"sqlite:///{tmp / 'bench.db'}", artifacts=str(tmp / "artifacts"))
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.random((500, 8)), columns=[f"f{i}" for i in range(8)])
    y = (X["f0"] + X["f1"] > 1).astype(int)
    model = LogisticRegression(max_iter=500).fit(X, y)
    with ll.start_run(experiment="bench-models") as run:
        run.log_model(model, "model", input_example=X.head(5))
    ll.registry.register(run, "bench")
    started = time.perf_counter()
    loaded = ll.registry.load("models:/bench/1")
    load_s = time.perf_counter() - started
    row = [X.iloc[0].to_dict()]
    bare = copy.copy(model)
    del bare.feature_names_in_
    arr = X.head(1).to_numpy()
    ours = _best(lambda: loaded.predict(row))
    floor = _best(lambda: bare.predict(arr))
    raw_df = _best(lambda: model.predict(X.head(1)))
    validate = _best(lambda: loaded.signature.validate(row), number=20_000)  # type: ignore[union-attr]
    rows = [
        {
            "case": "one-row predict (list of dicts): loopline validate+predict",
            "loopline": f"{ours:.1f} us",
            "anchor": "raw sklearn predict(array)",
            "anchor_value": f"{floor:.1f} us",
            "ratio": fmt_ratio(ours / floor),
            "target": f"overhead < {TARGET_OVERHEAD_US:.0f} us (measured {ours - floor:.1f} us)",
        }
    ]
    details: dict[str, Any] = {
        "loopline_predict_us": ours,
        "raw_predict_array_us": floor,
        "raw_predict_dataframe_us": raw_df,
        "validate_us": validate,
        "overhead_us": ours - floor,
        "registry_load_s": load_s,
        "input_kind": loaded.input_kind,
    }
    if not args.no_anchor:
        python = anchor_python("mlflow-models", ANCHOR)
        anchor = run_json(python, Path(__file__).parent / "anchors" / "mlflow_pyfunc.py", str(tmp))
        details["mlflow"] = anchor
        rows.append(
            {
                "case": "one-row predict: loopline (list of dicts) vs MLflow pyfunc (DataFrame)",
                "loopline": f"{ours:.1f} us",
                "anchor": f"MLflow {anchor['mlflow']} pyfunc",
                "anchor_value": f"{anchor['pyfunc_predict_one_row_df_us']:.1f} us",
                "ratio": fmt_ratio(anchor["pyfunc_predict_one_row_df_us"] / ours),
                "target": "faster than the anchor",
            }
        )
    path = write_result("model_predict", rows, details)
    print(path.read_text())


if __name__ == "__main__":
    main()
