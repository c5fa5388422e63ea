"""Reproduce a model: rerun the pipeline that made it on its recorded code, data and packages.

:func:`reproduce` takes ``models:/NAME/VERSION``, ``models:/NAME@ALIAS`` or a run id and

1. *resolves* what was recorded (:func:`resolve`, in
   :mod:`loopline.training.reproduce_resolve`): the run that logged the model, the
   pipeline run it belongs to, its git commit and stored diff
   (:mod:`loopline.training.reproduce_record`), target and params, the dataset versions
   its steps read, the package versions and the metrics;
2. *checks out* the code (:mod:`loopline.training.reproduce_checkout`): ``git archive``
   of the commit into a temporary folder, then ``git apply`` of the stored diff (the
   user's repository is only read);
3. prepares the *environment* (:mod:`loopline.training.reproduce_env`): a fresh venv of
   the recorded versions, or this interpreter after comparing versions;
4. *reruns* the pipeline in a subprocess of that environment
   (:mod:`loopline.training.reproduce_worker`) with the checked-out code first on
   ``PYTHONPATH`` and every dataset pinned to the recorded version
   (``LOOPLINE_DATASET_PINS``, honoured by ``ll.datasets.get``), without the step cache,
   into the same store, as a new pipeline run tagged ``loopline.reproduction.of``; the
   original gets ``loopline.reproduction.latest`` (lineage both ways);
5. *compares* each recorded metric with the reproduced one: it matches when
   ``|reproduced - recorded| <= max(tolerance * |recorded|, abs_tolerance)``.

Example:
    >>> # r = reproduce("models:/churn/3", env="current"); r.match, r.metrics["auc"].rel_diff
"""

from __future__ import annotations

import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from loopline.core.context import Context, get_context
from loopline.errors import InvalidInput, LooplineError
from loopline.training import reproduce_env, reproduce_record
from loopline.training.reproduce_checkout import checkout
from loopline.training.reproduce_env import PackageMismatch
from loopline.training.reproduce_resolve import Recorded, resolve

__all__ = ["MetricComparison", "Recorded", "Reproduction", "checkout", "reproduce", "resolve"]

Env = Literal["fresh", "current"]
#: ``on_stage(stage, index, total)`` is called as each stage begins.
StageFn = Callable[[str, int, int], None]
STAGES = ("resolve", "checkout", "environment", "rerun", "compare")


@dataclass(frozen=True)
class MetricComparison:
    """One metric: recorded and reproduced value, differences, within tolerance or not."""

    recorded: float
    reproduced: float | None
    abs_diff: float | None
    rel_diff: float | None
    match: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``.

        Example:
            >>> MetricComparison(1.0, 1.0, 0.0, 0.0, True).to_dict()["match"]
            True
        """
        return {
            "recorded": self.recorded,
            "reproduced": self.reproduced,
            "abs_diff": self.abs_diff,
            "rel_diff": self.rel_diff,
            "match": self.match,
        }


@dataclass
class Reproduction:
    """The outcome of :func:`reproduce`; ``match`` is true when every metric matched."""

    model: str | None
    original_run_id: str
    reproduced_run_id: str
    reproduced_status: str
    environment: Env
    package_mismatches: list[PackageMismatch]
    metrics: dict[str, MetricComparison]
    tolerance: float
    abs_tolerance: float
    workdir: str | None = None
    datasets: dict[str, int] = field(default_factory=dict)

    @property
    def match(self) -> bool:
        """Every recorded metric was reproduced within the tolerance."""
        return bool(self.metrics) and all(m.match for m in self.metrics.values())

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document (see ``loopline reproduce --help``).

        Example:
            >>> # reproduce("models:/churn/3").to_dict()["match"]
        """
        return {
            "model": self.model,
            "original_run_id": self.original_run_id,
            "reproduced_run_id": self.reproduced_run_id,
            "reproduced_status": self.reproduced_status,
            "environment": self.environment,
            "package_mismatches": [m.to_dict() for m in self.package_mismatches],
            "datasets": self.datasets,
            "tolerance": self.tolerance,
            "abs_tolerance": self.abs_tolerance,
            "metrics": {k: m.to_dict() for k, m in self.metrics.items()},
            "match": self.match,
        }


# -- 3. the environment --------------------------------------------------------------------


def _wanted(rec: Recorded) -> list[str]:
    """The recorded distributions that matter: those whose modules the run imported."""
    if not rec.modules:  # recorded before imports were: every package matters
        return sorted(rec.packages)
    owned = reproduce_env.distributions_of(rec.modules)
    return sorted(n for n in rec.packages if reproduce_env.normalize(n) in owned)


def _mismatches(rec: Recorded, installed: dict[str, str], python: str) -> list[PackageMismatch]:
    out = []
    if rec.python and rec.python != python:
        out.append(PackageMismatch("python", rec.python, python))
    return out + reproduce_env.compare_packages(rec.packages, installed, _wanted(rec))


def _fresh_env(rec: Recorded, code: Path, venv: Path, on_line: reproduce_env.LineFn | None) -> Path:
    local = {n for n in rec.packages if reproduce_env.local_source(n) is not None}
    local.add("loopline")
    wanted = [n for n in _wanted(rec) if n not in local]
    requirements = [f"{n}=={rec.packages[n]}" for n in wanted]
    requirements.append(reproduce_env.loopline_requirement(code, rec.packages))
    constraints = {n: v for n, v in rec.packages.items() if n not in local}
    return reproduce_env.build_venv(venv, requirements, constraints, on_line=on_line)


# -- 4. the rerun --------------------------------------------------------------------------


def _store_env(ctx: Context) -> dict[str, str]:
    """LOOPLINE_* settings that let another process open this store, absolute paths."""
    settings = ctx.settings
    uri = settings.metadata_uri
    if uri.startswith("sqlite://"):
        path = uri.removeprefix("sqlite:///")
        if not path or ":memory:" in uri:
            raise InvalidInput(
                "reproduce reruns the pipeline in another process, which cannot open an "
                "in-memory SQLite store",
                field="uri",
                hint="use a SQLite file or PostgreSQL (LOOPLINE_URI)",
            )
        uri = "sqlite:///" + str(Path(path).resolve())
    artifacts = settings.artifacts_uri
    if "://" not in artifacts:
        artifacts = str(Path(artifacts).expanduser().resolve())
    return {
        "LOOPLINE_URI": uri,
        "LOOPLINE_ARTIFACTS": artifacts,
        "LOOPLINE_HOME": str(settings.home.expanduser().resolve()),
    }


def _rerun(
    ctx: Context,
    rec: Recorded,
    python: Path | str,
    code: Path,
    out: Path,
    *,
    pin_data: bool,
    executor: str | None,
) -> dict[str, Any]:
    from loopline.data.dataset_refs import PINS_ENV

    import_dir = (code / rec.import_root).resolve() if rec.import_root else code
    workdir = (code / rec.workdir).resolve() if rec.workdir else import_dir
    if not workdir.is_dir():
        workdir = import_dir
    paths = [str(import_dir)]
    # Unrecorded import root (a run made before it was recorded): try the src layout too.
    # And when the project under test is Loopline itself, its checked-out code comes first.
    if (rec.import_root is None or (code / "src" / "loopline").is_dir()) and (
        code / "src"
    ).is_dir():
        paths.append(str(code / "src"))
    env = {
        **os.environ,
        **_store_env(ctx),
        "PYTHONPATH": os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")]),
    }
    env.pop(PINS_ENV, None)
    if pin_data and rec.datasets:
        env[PINS_ENV] = orjson.dumps({n: v for n, (v, _) in rec.datasets.items()}).decode()
    cmd = [str(python), "-m", "loopline.training.reproduce_worker", rec.pipeline.id]
    cmd += ["--out", str(out)]
    if executor:
        cmd += ["--executor", executor]
    if rec.model:
        cmd += ["--model", rec.model]
    done = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not out.exists():
        raise LooplineError(
            f"rerunning pipeline run {rec.pipeline.id} ({rec.pipeline.target}) failed:\n"
            + done.stderr.strip()[-2000:],
            hint="the checked-out code or environment could not run the pipeline (files "
            "that were untracked by git at training time are not part of the recorded code); "
            "keep the folder with --keep to look at the checkout",
        )
    result: dict[str, Any] = orjson.loads(out.read_bytes())
    return result


# -- 5. the comparison ---------------------------------------------------------------------


def compare(
    recorded: float, reproduced: float | None, tolerance: float, abs_tolerance: float
) -> MetricComparison:
    """Compare one metric: matches when ``|diff| <= max(tolerance*|recorded|, abs_tolerance)``.

    Example:
        >>> compare(0.5, 0.5000001, 1e-6, 0.0).match, compare(0.5, 0.6, 1e-6, 0.0).match
        (True, False)
    """
    if reproduced is None:
        return MetricComparison(recorded, None, None, None, False)
    if math.isnan(recorded) or math.isnan(reproduced):
        both = math.isnan(recorded) and math.isnan(reproduced)
        return MetricComparison(recorded, reproduced, None, None, both)
    diff = abs(reproduced - recorded)
    # Relative to the recorded value; a recorded 0 makes any difference infinitely large.
    rel = diff / abs(recorded) if recorded != 0 else (0.0 if diff == 0 else math.inf)
    match = diff <= max(tolerance * abs(recorded), abs_tolerance)
    return MetricComparison(recorded, reproduced, diff, rel, match)


def _check_tolerances(tolerance: float, abs_tolerance: float) -> None:
    for name, value in (("tolerance", tolerance), ("abs_tolerance", abs_tolerance)):
        if not isinstance(value, int | float) or math.isnan(value) or value < 0:
            raise InvalidInput(
                f"The {name!r} parameter of reproduce must be a number >= 0. Got {value!r} "
                "instead.",
                field=name,
            )


def _link(rec: Recorded, new_run_id: str, match: bool) -> None:
    """Tag both runs: lineage both ways, and whether the metrics matched."""
    from loopline.tracking.api import get_run

    new = get_run(new_run_id)
    if rec.diff:
        new._log_bytes(rec.diff, reproduce_record.DIFF_ARTIFACT)  # same blob: costs nothing
    new.set_tag("loopline.reproduction.match", "true" if match else "false")
    get_run(rec.pipeline.id).set_tag(reproduce_record.REPRODUCED_BY_TAG, new_run_id)


def reproduce(
    ref: str,
    *,
    env: Env = "fresh",
    tolerance: float = 1e-6,
    abs_tolerance: float = 0.0,
    repo: str | Path | None = None,
    executor: str | None = None,
    pin_data: bool = True,
    keep: bool = False,
    on_stage: StageFn | None = None,
    on_line: reproduce_env.LineFn | None = None,
) -> Reproduction:
    """Rerun what made ``ref`` on its recorded code, data and packages; compare metrics.

    ``ref``: ``models:/NAME/VERSION``, ``models:/NAME@ALIAS`` or a run id (a pipeline run
    or one of its steps). ``env="fresh"`` builds a venv of the recorded package versions
    from PyPI (with uv when it is installed, else pip); ``"current"`` reuses this
    interpreter and reports each version that differs. A metric matches when
    ``|reproduced - recorded| <= max(tolerance * |recorded|, abs_tolerance)``.
    ``pin_data=False`` lets the pipeline read the latest data instead (to see what the pins
    change); ``keep`` keeps the temporary folder (code and venv).

    Example:
        >>> # r = reproduce("models:/churn@champion", env="current")
        >>> # r.match, r.metrics["accuracy"].to_dict(), r.reproduced_run_id
    """
    if env not in ("fresh", "current"):
        raise InvalidInput(
            f"env must be 'fresh' or 'current', got {env!r}",
            field="env",
            hint="--env fresh builds a venv from the recorded versions; --env current reuses "
            "this interpreter",
        )
    _check_tolerances(tolerance, abs_tolerance)
    if executor is not None:
        from loopline.training.executor_checks import check_executor_name

        check_executor_name(executor)

    def stage(name: str) -> None:
        if on_stage is not None:
            on_stage(name, STAGES.index(name), len(STAGES))

    ctx = get_context()
    stage("resolve")
    rec = resolve(ref)
    _store_env(ctx)  # fail before the slow stages when another process cannot open the store
    work = Path(tempfile.mkdtemp(prefix="loopline-reproduce-"))
    try:
        stage("checkout")
        code = checkout(rec, work / "code", repo)
        stage("environment")
        if env == "current":
            from loopline.tracking.environment import installed_packages

            python: Path | str = sys.executable
            installed = installed_packages()
        else:
            python = _fresh_env(rec, code, work / "venv", on_line)
            installed = reproduce_env.installed_in(python)
        version = platform.python_version() if env == "current" else _python_version(python)
        mismatches = _mismatches(rec, installed, version)
        stage("rerun")
        result = _rerun(
            ctx, rec, python, code, work / "result.json", pin_data=pin_data, executor=executor
        )
        stage("compare")
        from loopline.tracking.api import get_run

        steps: dict[str, str | None] = result.get("steps", {})
        counterpart = (steps.get(rec.step) if rec.step else None) or result["run_id"]
        got = get_run(counterpart).metrics
        metrics = {
            k: compare(v, got.get(k), tolerance, abs_tolerance)
            for k, v in sorted(rec.metrics.items())
        }
        outcome = Reproduction(
            model=rec.model,
            original_run_id=rec.pipeline.id,
            reproduced_run_id=result["run_id"],
            reproduced_status=str(result.get("status")),
            environment=env,
            package_mismatches=mismatches,
            metrics=metrics,
            tolerance=float(tolerance),
            abs_tolerance=float(abs_tolerance),
            workdir=str(work) if keep else None,
            datasets={n: v for n, (v, _) in rec.datasets.items()} if pin_data else {},
        )
        _link(rec, result["run_id"], outcome.match)
        return outcome
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def _python_version(python: Path | str) -> str:
    done = subprocess.run(
        [str(python), "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.stdout.strip()
