"""The MLflow side of bench_model_predict: runs in the anchor venv (bench/.envs/mlflow-models).

Usage: python mlflow_pyfunc.py WORKDIR
Saves the same LogisticRegression with mlflow.sklearn, loads it with mlflow.pyfunc and
times one-row predictions. Prints one JSON line of figures.
"""

from __future__ import annotations

import json
import sys
import time
import timeit
import warnings

import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

warnings.filterwarnings("ignore")


def main(workdir: str) -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.random((500, 8)), columns=[f"f{i}" for i in range(8)])
    y = (X["f0"] + X["f1"] > 1).astype(int)
    model = LogisticRegression(max_iter=500).fit(X, y)
    path = f"{workdir}/mlflow-model"
    mlflow.sklearn.save_model(model, path, input_example=X.head(5))
    started = time.perf_counter()
    loaded = mlflow.pyfunc.load_model(path)
    load_s = time.perf_counter() - started
    row = X.head(1)

    def best(fn, number: int = 300) -> float:
        return min(timeit.repeat(fn, number=number, repeat=7)) / number

    print(
        json.dumps(
            {
                "mlflow": mlflow.__version__,
                "pyfunc_predict_one_row_df_us": best(lambda: loaded.predict(row)) * 1e6,
                "raw_predict_one_row_df_us": best(lambda: model.predict(row)) * 1e6,
                "load_s": load_s,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
