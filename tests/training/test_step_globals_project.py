"""A user's project of top-level modules, run again and again by the real ``loopline
pipeline run``, each run a fresh process on the same store: the step's cache key follows
the modules beside its own (``import config``), the classes defined there and their methods.

Before, ``config`` and ``feats`` were "another package": an edited constant or method
was answered with the output the old code made (a stale cache hit).
"""

from __future__ import annotations

from pathlib import Path

from loopline.core.context import Context
from tests.training.step_keys import executions, forget_bytecode, run_flow

_CONFIG = """
THRESHOLD = {threshold}
"""

_FEATS = """
from dataclasses import dataclass


def clip(x: float) -> float:
    return min(x, 10.0)


@dataclass
class Scaler:
    factor: float = {factor}

    def apply(self, x: float) -> float:
        return clip({apply})
"""

_FLOW = """
from pathlib import Path

import loopline as ll

import config
import feats


@ll.step
def decide(workdir: str, score: float) -> dict:
    with (Path(workdir) / "decide.count").open("a") as f:
        f.write("x\\n")
    return {
        "above": score > config.THRESHOLD,
        "threshold": config.THRESHOLD,
        "scaled": feats.Scaler().apply(score),
    }


@ll.pipeline
def pipe(workdir: str, score: float = 0.6) -> None:
    decide(workdir, score)
"""

_DEFAULTS = {"threshold": "0.5", "factor": "2.0", "apply": "x * self.factor"}


def _write(proj: Path, **values: str) -> None:
    filled = {**_DEFAULTS, **values}
    (proj / "config.py").write_text(_CONFIG.format(**filled))
    (proj / "feats.py").write_text(_FEATS.format(**filled))
    (proj / "flow.py").write_text(_FLOW)
    forget_bytecode(proj)


def test_a_step_reruns_when_a_module_or_class_beside_it_changes(
    ctx: Context, tmp_path: Path
) -> None:
    proj, wd = tmp_path / "proj", tmp_path / "work"
    proj.mkdir()
    wd.mkdir()
    _write(proj)
    first = run_flow(ctx, proj, wd)
    assert first[:2] == ("finished", {"above": True, "threshold": 0.5, "scaled": 1.2})
    # Another process computes the same key (a dataclass's generated methods included).
    assert run_flow(ctx, proj, wd) == ("cached", first[1], first[2])

    # A constant of the sibling module config.py.
    _write(proj, threshold="0.75")
    status, output, key = run_flow(ctx, proj, wd)
    assert (status, output) == ("finished", {"above": False, "threshold": 0.75, "scaled": 1.2})
    assert key != first[2]

    # A method of a class of the sibling module feats.py, a class attribute (the
    # dataclass field's default) and a function its method calls.
    _write(proj, threshold="0.75", apply="x * self.factor + 1")
    status, output, _ = run_flow(ctx, proj, wd)
    assert (status, output["scaled"]) == ("finished", 2.2)
    _write(proj, threshold="0.75", apply="x * self.factor + 1", factor="3.0")
    status, output, _ = run_flow(ctx, proj, wd)
    assert (status, output["scaled"]) == ("finished", 2.8)
    (proj / "feats.py").write_text((proj / "feats.py").read_text().replace("10.0", "2.5"))
    forget_bytecode(proj)
    status, output, _ = run_flow(ctx, proj, wd)
    assert (status, output["scaled"]) == ("finished", 2.5)
    assert executions(wd) == 5

    # Back to the first files: outputs are content-addressed, the first one is a hit.
    _write(proj)
    assert run_flow(ctx, proj, wd) == ("cached", first[1], first[2])
    assert executions(wd) == 5
