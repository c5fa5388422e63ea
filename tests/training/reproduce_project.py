"""A small git project with a training pipeline, for the ``loopline reproduce`` tests.

:func:`make_project` writes ``src/reproproj/pipes.py`` into a fresh git repository: a
deterministic scikit-learn pipeline (``train``) that reads the dataset ``repro-data``
(``"latest"``) and logs its metrics and model on the pipeline's run, and a nondeterministic
one (``noisy``) that fits on an unseeded random subsample.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd

from loopline.training import registry

DATASET = "repro-data"

PIPES = '''"""Training pipelines of the reproduce test project."""

import time

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

import loopline as ll

C = {c}


@ll.step
def load() -> pd.DataFrame:
    return ll.datasets.get("repro-data").to_pandas()


def _fit_and_log(df: pd.DataFrame) -> dict:
    X, y = df[["x1", "x2"]], df["y"]
    model = LogisticRegression(C=C).fit(X, y)
    run = ll.active_run()
    coef = float(model.coef_[0][0])
    run.log_metrics({{"coef0": coef, "accuracy": float(model.score(X, y))}})
    run.log_model(model, "model", input_example=X.head(3))
    return {{"coef0": coef}}


@ll.step
def fit(df: pd.DataFrame, seed: int) -> dict:
    return _fit_and_log(df)


@ll.step
def fit_noisy(df: pd.DataFrame) -> dict:
    rng = np.random.default_rng(time.time_ns())  # seeded differently on every run
    return _fit_and_log(df.iloc[rng.permutation(len(df))[: len(df) * 3 // 4]])


@ll.pipeline
def train(seed: int = 0) -> None:
    fit(load(), seed)


@ll.pipeline
def noisy() -> None:
    fit_noisy(load())
'''


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` with a fixed identity; return stdout."""
    done = subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def set_c(repo: Path, c: float) -> None:
    """Write the pipeline module with the regularization constant ``c``."""
    (repo / "src" / "reproproj" / "pipes.py").write_text(PIPES.format(c=c))


def make_project(root: Path) -> Path:
    """A git repository at ``root/proj`` with the pipelines committed (C = 1.0)."""
    repo = root / "proj"
    (repo / "src" / "reproproj").mkdir(parents=True)
    (repo / "src" / "reproproj" / "__init__.py").write_text("")
    set_c(repo, 1.0)
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "pipelines")
    return repo


def data(seed: int, n: int = 200) -> pd.DataFrame:
    """A separable-ish table; another ``seed`` gives other rows (another dataset version)."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    y = (x1 + 0.5 * x2 + rng.normal(scale=0.8, size=n) > 0).astype("int64")
    return pd.DataFrame({"x1": x1, "x2": x2, "y": y})


def import_pipes(repo: Path) -> ModuleType:
    """Import (or re-import) ``reproproj.pipes`` from ``repo/src`` as it is on disk now."""
    src = str(repo / "src")
    if src not in sys.path:
        sys.path.insert(0, src)
    for name in [m for m in sys.modules if m == "reproproj" or m.startswith("reproproj.")]:
        del sys.modules[name]
    importlib.invalidate_caches()
    return importlib.import_module("reproproj.pipes")


def forget_pipes(repo: Path) -> None:
    """Undo :func:`import_pipes` (other tests must not see this project)."""
    src = str(repo / "src")
    while src in sys.path:
        sys.path.remove(src)
    for name in [m for m in sys.modules if m == "reproproj" or m.startswith("reproproj.")]:
        del sys.modules[name]


def train_and_register(repo: Path, pipeline: str = "train", model: str = "repro") -> str:
    """Run ``pipeline`` from ``repo`` (the cwd must be ``repo``) and register its model."""
    assert Path.cwd().resolve() == repo.resolve()
    pipes = import_pipes(repo)
    result = getattr(pipes, pipeline).run()
    result.raise_for_status()
    version = registry.register(result.run_id, model)
    return f"models:/{model}/{version.version}"
