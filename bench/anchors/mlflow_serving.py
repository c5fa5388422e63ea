"""The MLflow side of bench_serving: runs in the anchor venv (bench/.envs/mlflow).

Saves the benchmark's scikit-learn model (the very object Loopline serves, passed as a
pickle written by bench_serving.py in this same run) as an MLflow model with an input
example, so that ``mlflow models serve`` enforces its schema as Loopline enforces the
signature.

Usage: python mlflow_serving.py MODEL_PKL OUT_DIR COLUMNS_JSON [TRUSTED_TYPES_JSON]
(trusted types: what MLflow's skops format needs named to load, e.g. the tree predictor of
a gradient-boosting model; bench_serving.py wrote the model itself in this run.)
Prints one JSON line: the MLflow and scikit-learn versions.
"""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import mlflow
import mlflow.sklearn
import pandas as pd
import sklearn


def main() -> None:
    pkl, out, columns = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    model = pickle.loads(Path(pkl).read_bytes())  # written by bench_serving.py in this run
    example = pd.DataFrame([[0.5] * len(columns)], columns=columns)
    trusted = json.loads(sys.argv[4]) if len(sys.argv) > 4 else None
    if trusted:
        mlflow.sklearn.save_model(model, out, input_example=example, skops_trusted_types=trusted)
    else:
        mlflow.sklearn.save_model(model, out, input_example=example)
    print(json.dumps({"mlflow": mlflow.__version__, "scikit-learn": sklearn.__version__}))


if __name__ == "__main__":
    main()
