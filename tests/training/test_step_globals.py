"""The module constants and helpers a step reads are part of its cache key.

The pipeline tests write a real module, import it, run its pipeline, rewrite the module and
reload it, as ``test_pipeline.py`` does for a change of the step's own code.
"""

from __future__ import annotations

import collections
import enum
import functools
import importlib
import json
import logging
import os
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from textwrap import dedent
from types import ModuleType
from typing import Any

import blake3
import numpy as np
import pandas as pd
import pytest

import tests.training.pipeline_steps
from loopline.core.context import Context
from loopline.training import canonical_encoding, own_code
from loopline.training.cache import cache_key
from loopline.training.canonical_encoding import (
    MAX_ARRAY_BYTES,
    MAX_BYTES,
    MAX_DEPTH,
    MAX_ITEMS,
    GlobalTooLarge,
    canonical,
)
from loopline.training.pipeline import get_pipeline_run, resume
from loopline.training.step_globals import read_globals
from tests.training import pipeline_steps as ps
from tests.training.pipeline_steps import bump
from tests.training.step_keys import outputs_under_hash_seeds

_MODULE = """
from pathlib import Path

import loopline as ll
from tests.training.pipeline_steps import bump

THRESHOLD = {threshold}
UNUSED = {unused}
WEIGHTS = {weights}
BIG = {big}


def scale(x: float) -> float:
    return x * {factor}


@ll.step
def decide(workdir: str, score: float) -> dict:
    bump(workdir, "decide")
    return {{
        "above": score > THRESHOLD,
        "threshold": THRESHOLD,
        "weights": sorted(WEIGHTS.items()),
        "scaled": scale(score),
    }}


@ll.step
def report(workdir: str, decision: dict) -> str:
    bump(workdir, "report")
    if (Path(workdir) / "broken").exists():
        raise RuntimeError("broken")
    return "above" if decision["above"] else "below"


@ll.step
def count_big(workdir: str) -> int:
    bump(workdir, "count_big")
    return len(BIG)


@ll.pipeline
def pipe(workdir: str, score: float = 0.6) -> None:
    report(workdir, decide(workdir, score))


@ll.pipeline
def big(workdir: str) -> None:
    count_big(workdir)
"""

_DEFAULTS = {
    "threshold": "0.5",
    "unused": "1",
    "weights": '{"a": 1, "b": 2}',
    "big": "[]",
    "factor": "2",
}

Writer = Callable[..., ModuleType]


@pytest.fixture
def write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Writer]:
    """Write the module with some values changed (``threshold="0.7"``); (re)import it."""
    name = f"constchange_{uuid.uuid4().hex[:8]}"
    src = tmp_path / "mods"
    src.mkdir()
    monkeypatch.syspath_prepend(str(src))
    # No .pyc: a rewrite within the same second and of the same size (0.5 -> 0.7) would
    # otherwise be served from the stale bytecode.
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    path = src / f"{name}.py"

    def write(**values: str) -> ModuleType:
        path.write_text(textwrap.dedent(_MODULE).format(**{**_DEFAULTS, **values}))
        if name in sys.modules:
            return importlib.reload(sys.modules[name])
        return importlib.import_module(name)

    yield write
    sys.modules.pop(name, None)


def _statuses(result: Any) -> dict[str, str]:
    return {name: rec.status for name, rec in result.steps.items()}


# -- in a pipeline -------------------------------------------------------------------------


def test_cache_misses_when_a_module_constant_the_step_reads_changes(
    ctx: Context, tmp_path: Path, write_module: Writer
) -> None:
    wd = str(tmp_path)
    first = write_module().pipe.run({"workdir": wd})
    assert first.output("decide")["threshold"] == 0.5
    assert _statuses(write_module().pipe.run({"workdir": wd})) == {
        "decide": "cached",
        "report": "cached",
    }
    # A constant the step does not read changes nothing.
    unused = write_module(unused="2").pipe.run({"workdir": wd})
    assert _statuses(unused) == {"decide": "cached", "report": "cached"}
    # The one it reads makes it run again (and its output, unchanged, keeps report cached).
    changed = write_module(threshold="0.7").pipe.run({"workdir": wd})
    assert _statuses(changed) == {"decide": "finished", "report": "finished"}
    assert changed.output("decide")["threshold"] == 0.7
    assert changed.output("report") == "below"
    assert changed.steps["decide"].cache_key != first.steps["decide"].cache_key
    # Back to 0.5: the first output is still the cached one for that key.
    back = write_module(threshold="0.5").pipe.run({"workdir": wd})
    assert _statuses(back) == {"decide": "cached", "report": "cached"}
    assert back.output("decide")["threshold"] == 0.5
    assert back.steps["decide"].cache_key == first.steps["decide"].cache_key
    assert ps.count(wd, "decide") == 2


def test_a_dict_constant_with_its_items_in_another_order_still_hits(
    ctx: Context, tmp_path: Path, write_module: Writer
) -> None:
    wd = str(tmp_path)
    write_module(weights='{"a": 1, "b": 2}').pipe.run({"workdir": wd})
    reordered = write_module(weights='{"b": 2, "a": 1}').pipe.run({"workdir": wd})
    assert _statuses(reordered) == {"decide": "cached", "report": "cached"}
    changed = write_module(weights='{"b": 3, "a": 1}').pipe.run({"workdir": wd})
    assert _statuses(changed)["decide"] == "finished"
    assert changed.output("decide")["weights"] == [("a", 1), ("b", 3)]
    assert ps.count(wd, "decide") == 2


def test_cache_misses_when_a_helper_of_the_same_module_changes(
    ctx: Context, tmp_path: Path, write_module: Writer
) -> None:
    # Before, only the step's own source counted: editing scale() reused the old output.
    wd = str(tmp_path)
    assert write_module(factor="2").pipe.run({"workdir": wd}).output("decide")["scaled"] == 1.2
    changed = write_module(factor="3").pipe.run({"workdir": wd})
    assert _statuses(changed)["decide"] == "finished"
    assert changed.output("decide")["scaled"] == pytest.approx(1.8)


def test_a_constant_changed_in_the_running_process_changes_the_key(
    ctx: Context, tmp_path: Path, write_module: Writer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As in a notebook: the key is computed at each run, not once per process.
    wd = str(tmp_path)
    mod = write_module()
    mod.pipe.run({"workdir": wd})
    monkeypatch.setattr(mod, "THRESHOLD", 0.7)
    changed = mod.pipe.run({"workdir": wd})
    assert _statuses(changed)["decide"] == "finished"
    assert changed.output("decide")["threshold"] == 0.7


def test_resume_reruns_a_finished_step_whose_constant_changed(
    ctx: Context, tmp_path: Path, write_module: Writer
) -> None:
    wd = str(tmp_path)
    (tmp_path / "broken").touch()
    failed = write_module(threshold="0.5").pipe.run({"workdir": wd})
    assert _statuses(failed) == {"decide": "finished", "report": "failed"}
    (tmp_path / "broken").unlink()
    write_module(threshold="0.7")
    again = resume(failed.run_id)
    assert _statuses(again) == {"decide": "finished", "report": "finished"}
    assert again.output("report") == "below"  # 0.6 > 0.7 is False: not the old "above"
    assert ps.count(wd, "decide") == 2


def test_a_step_reading_a_global_too_large_to_digest_runs_every_time(
    ctx: Context, tmp_path: Path, write_module: Writer, caplog: pytest.LogCaptureFixture
) -> None:
    wd = str(tmp_path)
    mod = write_module(big=f"list(range({MAX_ITEMS + 1}))")
    with caplog.at_level(logging.WARNING, logger="loopline.training.cache"):
        first = mod.big.run({"workdir": wd})
        second = mod.big.run({"workdir": wd})
    assert _statuses(first) == _statuses(second) == {"count_big": "finished"}
    assert second.output("count_big") == MAX_ITEMS + 1
    assert ps.count(wd, "count_big") == 2
    stored = get_pipeline_run(second.run_id).steps["count_big"]
    assert stored.status == "finished"
    assert stored.cache_key is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert f"{mod.__name__}.BIG" in warnings[0]
    assert f"more than {MAX_ITEMS} items" in warnings[0]


def test_the_key_is_the_same_in_every_process(tmp_path: Path) -> None:
    # Sets of strings iterate in an order that depends on PYTHONHASHSEED.
    (tmp_path / "hashseed_mod.py").write_text(
        dedent(
            """
            import loopline as ll

            TAGS = {"alpha", "beta", "gamma", "delta", "epsilon"}
            TABLE = {"x": frozenset({"p", "q", "r"}), "y": (1.5, None, b"z")}

            @ll.step
            def tagged(n: int) -> int:
                return n + len(TAGS) + len(TABLE)
            """
        )
    )
    script = (
        "import json, hashseed_mod\n"
        "from loopline.training.cache import cache_key\n"
        "from loopline.training.step_globals import read_globals\n"
        "s = hashseed_mod.tagged\n"
        "print(json.dumps([cache_key(s, {'n': {'v': 1}}), read_globals(s.fn)]))\n"
    )
    outputs = outputs_under_hash_seeds(tmp_path, script, ("1", "2", "3"))
    assert outputs[0] == outputs[1] == outputs[2]
    assert sorted(outputs[0][1]) == ["hashseed_mod.TABLE", "hashseed_mod.TAGS"]


# -- what counts ---------------------------------------------------------------------------

LIMIT = 3
mean = 5  # shares its name with an attribute that _keep_small reads: not a read of it
NAMES = ("a", "b")
Point = collections.namedtuple("Point", "x y")
ORIGIN = Point(0, 0)


class Colour(enum.IntEnum):
    RED = 1


RED = Colour.RED


def _keep_small(xs: Any) -> Any:
    return [x for x in xs if x < LIMIT], xs.mean  # LIMIT is read in a comprehension


def _uses_other_kinds(x: str) -> Any:
    # a module, a class and a function of another package
    return json.dumps(x), Path(x), dedent(x)


def _uses_namedtuple_and_enum() -> Any:
    return ORIGIN, RED


def _ping(n: int) -> int:
    return _pong(n - 1) + len(NAMES) if n else 0


def _pong(n: int) -> int:
    return _ping(n)


def _scaled(x: float, k: float = 2.5) -> float:
    return x * k


def _calls_scaled(x: float) -> float:
    return _scaled(x) + bump.__code__.co_argcount


@functools.cache
def _cached_helper(x: int) -> int:
    return x + LIMIT


def _calls_cached(x: int) -> int:
    return _cached_helper(x)


_HERE = __name__


def test_only_names_loaded_as_globals_count_also_in_nested_code() -> None:
    reads = read_globals(_keep_small)
    assert list(reads) == [f"{_HERE}.LIMIT"]
    assert reads[f"{_HERE}.LIMIT"].startswith("data:")


def test_modules_classes_other_packages_and_non_plain_values_are_left_out() -> None:
    assert read_globals(_uses_other_kinds) == {}


def test_a_namedtuple_and_an_enum_member_held_in_globals_count() -> None:
    # Before, both were left out (not plain data): a changed value was a stale hit. Now
    # each counts as data, and, being of classes of the own package, by its class.
    reads = read_globals(_uses_namedtuple_and_enum)
    assert reads[f"{_HERE}.ORIGIN"].startswith("data:")
    assert reads[f"{_HERE}.RED"].startswith("data:")
    assert reads[f"{_HERE}.ORIGIN.__refs__[0]"] == f"class:{_HERE}.Point"
    assert reads[f"{_HERE}.RED.__refs__[0]"] == f"class:{_HERE}.Colour"


def test_helpers_of_the_same_package_count_by_code_and_defaults_and_recursion_ends() -> None:
    reads = read_globals(_ping)
    assert sorted(reads) == [f"{_HERE}.NAMES", f"{_HERE}._pong"]  # _ping itself: its code hash
    assert reads[f"{_HERE}._pong"].startswith("code:")
    called = read_globals(_calls_scaled)
    assert sorted(called) == [
        f"{_HERE}._scaled",
        f"{_HERE}._scaled.__defaults__",
        f"{_HERE}.bump",  # tests.training.pipeline_steps: the same top-level package
    ]


def test_a_helper_behind_functools_cache_is_followed() -> None:
    reads = read_globals(_calls_cached)
    assert sorted(reads) == [f"{_HERE}.LIMIT", f"{_HERE}._cached_helper"]
    assert reads[f"{_HERE}._cached_helper"].startswith("code:")


def test_a_helper_default_value_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    before = read_globals(_calls_scaled)
    monkeypatch.setattr(_scaled, "__defaults__", (3.5,))
    after = read_globals(_calls_scaled)
    assert after[f"{_HERE}._scaled.__defaults__"] != before[f"{_HERE}._scaled.__defaults__"]
    assert after[f"{_HERE}._scaled"] == before[f"{_HERE}._scaled"]


def test_a_step_that_reads_nothing_keeps_the_key_it_had() -> None:
    # The key of a step reading no globals is computed exactly as before the change.
    from loopline.training.steps import spec_digest, step

    def plain(x: int) -> int:
        return x + 1

    s = step(plain)
    args: dict[str, Any] = {"x": {"v": 1}}
    assert cache_key(s, args) == spec_digest({"step": "plain", "code": s.code_hash, "args": args})


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"a": 1, "b": [1, 2]}, {"b": [1, 2], "a": 1}),
        ({3, 1, 2}, {2, 3, 1}),
        (frozenset({"x", "y"}), frozenset({"y", "x"})),
        ({1: "a", "1": "b"}, {"1": "b", 1: "a"}),
    ],
    ids=["dict", "set", "frozenset", "mixed-keys"],
)
def test_equal_values_encode_the_same(a: Any, b: Any) -> None:
    assert canonical(a) == canonical(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (1, 1.0),
        (1, True),
        (0, None),
        ([1, 2], (1, 2)),
        ({1, 2}, frozenset({1, 2})),
        ("ab", b"ab"),
        (["ab"], ["a", "b"]),
        (0.1, 0.1000000000000001),
        (0.0, -0.0),
    ],
    ids=["int-float", "int-bool", "zero-none", "list-tuple", "set-frozenset", "str-bytes",
         "lengths", "float-repr", "signed-zero"],
)  # fmt: skip
def test_different_values_encode_differently(a: Any, b: Any) -> None:
    assert canonical(a) != canonical(b)


@pytest.mark.parametrize(
    "value",
    [collections.Counter(a=1), collections.defaultdict(int), [1, object()], {"k": Path()}],
    ids=["Counter", "defaultdict", "object-in-list", "object-in-dict"],
)
def test_subclasses_and_objects_are_not_plain(value: Any) -> None:
    with pytest.raises(ValueError, match="not plain data"):
        canonical(value)


def test_the_bounds() -> None:
    assert canonical(list(range(MAX_ITEMS - 1)))  # the list and its items: MAX_ITEMS
    with pytest.raises(GlobalTooLarge, match=f"more than {MAX_ITEMS} items"):
        canonical(list(range(MAX_ITEMS)))
    with pytest.raises(GlobalTooLarge, match=f"more than {MAX_BYTES} bytes"):
        canonical("x" * (MAX_BYTES + 1))
    with pytest.raises(GlobalTooLarge, match=f"more than {MAX_BYTES} bytes"):
        canonical(["y" * (MAX_BYTES // 2)] * 3)
    deep: list[Any] = []
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    with pytest.raises(GlobalTooLarge, match=f"deeper than {MAX_DEPTH} levels"):
        canonical(deep)
    loop: list[Any] = []
    loop.append(loop)  # would never end
    with pytest.raises(GlobalTooLarge, match="deeper"):
        canonical(loop)


def test_a_huge_int_is_encoded() -> None:
    # str() refuses ints past 4300 digits; the hex form does not.
    assert canonical(10**5000) != canonical(10**5000 + 1)


def test_a_too_large_global_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "NAMES", tuple(range(MAX_ITEMS)))
    with pytest.raises(GlobalTooLarge) as err:
        read_globals(_ping)
    assert err.value.name == f"{_HERE}.NAMES"


# -- module attributes, closures, partials, arrays and frames, in a pipeline -------------

_CONFIG = """
THRESHOLD = {threshold}
OTHER = {other}


def scale(x: float) -> float:
    return x * {factor}
"""

_FLOW = """
import functools

import numpy as np
import pandas as pd

import loopline as ll
import {pkg}.config
from {pkg} import config
from tests.training.pipeline_steps import bump


def weigh(x: float, k: float) -> float:
    return x * k + {offset}


WEIGHED = functools.partial(weigh, k={k})
ARRAY = np.array({array}, dtype="float64")
FRAME = pd.DataFrame({frame}, index={index})


@ll.step
def by_module(workdir: str, score: float) -> dict:
    bump(workdir, "by_module")
    return {{
        "above": score > config.THRESHOLD,
        "scaled": config.scale(score),
        "other": {pkg}.config.OTHER,
    }}


def make_sieve(limit: float, weigh_by):
    @ll.step
    def sieve(workdir: str, score: float) -> dict:
        bump(workdir, "sieve")
        return {{"kept": score < limit, "weighed": weigh_by(score)}}

    return sieve


sieve = make_sieve({limit}, functools.partial(weigh, k={closure_k}))


@ll.step
def weighed(workdir: str, score: float) -> float:
    bump(workdir, "weighed")
    return WEIGHED(score)


@ll.step
def with_data(workdir: str) -> dict:
    bump(workdir, "with_data")
    return {{"array": float(ARRAY.sum()), "frame": FRAME.to_json()}}


@ll.pipeline
def module_pipe(workdir: str, score: float = 0.6) -> None:
    by_module(workdir, score)


@ll.pipeline
def closure_pipe(workdir: str, score: float = 0.6) -> None:
    sieve(workdir, score)


@ll.pipeline
def partial_pipe(workdir: str, score: float = 0.6) -> None:
    weighed(workdir, score)


@ll.pipeline
def data_pipe(workdir: str) -> None:
    with_data(workdir)
"""

_PACKAGE_DEFAULTS = {
    "threshold": "0.5",
    "other": '"x"',
    "factor": "2",
    "offset": "0",
    "k": "2.0",
    "array": "[1.0, 2.0, 3.0]",
    "frame": '{"a": [1, 2], "s": ["p", "q"]}',
    "index": '["r1", "r2"]',
    "limit": "0.7",
    "closure_k": "3.0",
}


@pytest.fixture
def write_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Writer]:
    """Write a package (``config`` and the ``flow`` of steps reading it) with some values
    changed; (re)import it and return ``flow``. ``config`` is reloaded in place, as a
    notebook's ``importlib.reload(config)`` would."""
    pkg = f"ckpkg_{uuid.uuid4().hex[:8]}"
    root = tmp_path / "mods"
    (root / pkg).mkdir(parents=True)
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # see write_module
    (root / pkg / "__init__.py").write_text("")

    def write(**values: str) -> ModuleType:
        filled = {**_PACKAGE_DEFAULTS, **values, "pkg": pkg}
        (root / pkg / "config.py").write_text(_CONFIG.format(**filled))
        (root / pkg / "flow.py").write_text(_FLOW.format(**filled))
        for name in (f"{pkg}.config", f"{pkg}.flow"):
            if name in sys.modules:
                importlib.reload(sys.modules[name])
        return importlib.import_module(f"{pkg}.flow")

    yield write
    for name in (f"{pkg}.flow", f"{pkg}.config", pkg):
        sys.modules.pop(name, None)


def _reruns(write: Writer, pipe: str, wd: str, step: str, **values: str) -> bool:
    """Run ``pipe`` with ``values`` written; whether ``step`` ran (False: cache hit)."""
    result = getattr(write(**values), pipe).run({"workdir": wd})
    status = result.steps[step].status
    assert status in ("finished", "cached"), status
    return status == "finished"


def test_a_constant_read_through_a_module_of_the_package_counts(
    ctx: Context, tmp_path: Path, write_package: Writer
) -> None:
    # Before, config.THRESHOLD was not in the key: a changed threshold reused the output.
    wd = str(tmp_path)
    first = write_package().module_pipe.run({"workdir": wd})
    assert first.output("by_module") == {"above": True, "scaled": 1.2, "other": "x"}
    assert not _reruns(write_package, "module_pipe", wd, "by_module")
    assert _reruns(write_package, "module_pipe", wd, "by_module", threshold="0.7")
    # Through ``import pkg.config`` (pkg.config.OTHER) and a helper called as config.scale.
    assert _reruns(write_package, "module_pipe", wd, "by_module", threshold="0.7", other='"y"')
    changed = write_package(threshold="0.7", other='"y"', factor="3").module_pipe.run(
        {"workdir": wd}
    )
    assert _statuses(changed) == {"by_module": "finished"}
    assert changed.output("by_module") == {
        "above": False,
        "scaled": pytest.approx(1.8),
        "other": "y",
    }
    # A value of the module the step does not read, or a step of another pipeline: no rerun.
    assert not _reruns(
        write_package, "module_pipe", wd, "by_module", threshold="0.7", other='"y"', factor="3",
        array="[9.0]", limit="0.1",
    )  # fmt: skip
    assert ps.count(wd, "by_module") == 4


def test_a_variable_of_the_factory_that_made_the_step_counts(
    ctx: Context, tmp_path: Path, write_package: Writer
) -> None:
    wd = str(tmp_path)
    first = write_package().closure_pipe.run({"workdir": wd})
    assert first.output("sieve") == {"kept": True, "weighed": pytest.approx(1.8)}
    assert not _reruns(write_package, "closure_pipe", wd, "sieve")
    changed = write_package(limit="0.5").closure_pipe.run({"workdir": wd})
    assert _statuses(changed) == {"sieve": "finished"}
    assert changed.output("sieve")["kept"] is False
    # A partial held in a cell: its bound keyword counts.
    assert _reruns(write_package, "closure_pipe", wd, "sieve", limit="0.5", closure_k="4.0")
    assert not _reruns(write_package, "closure_pipe", wd, "sieve", limit="0.5", closure_k="4.0")
    back = write_package().closure_pipe.run({"workdir": wd})
    assert _statuses(back) == {"sieve": "cached"}
    assert back.steps["sieve"].cache_key == first.steps["sieve"].cache_key
    assert ps.count(wd, "sieve") == 3


def test_a_partial_counts_by_its_function_and_its_arguments(
    ctx: Context, tmp_path: Path, write_package: Writer
) -> None:
    wd = str(tmp_path)
    assert write_package().partial_pipe.run({"workdir": wd}).output("weighed") == 1.2
    assert not _reruns(write_package, "partial_pipe", wd, "weighed")
    assert _reruns(write_package, "partial_pipe", wd, "weighed", k="3.0")
    assert not _reruns(write_package, "partial_pipe", wd, "weighed", k="3.0")
    # The partial's function is a helper of the package: its code counts.
    changed = write_package(k="3.0", offset="1").partial_pipe.run({"workdir": wd})
    assert _statuses(changed) == {"weighed": "finished"}
    assert changed.output("weighed") == pytest.approx(2.8)
    assert ps.count(wd, "weighed") == 3


@pytest.mark.parametrize(
    "change",
    [
        {"array": "[1.0, 2.0, 4.0]"},
        {"array": "[[1.0, 2.0, 3.0]]"},  # the same bytes in another shape
        {"frame": '{"a": [1, 3], "s": ["p", "q"]}'},
        {"frame": '{"a": [1, 2], "s": ["p", "z"]}'},  # a column of strings
        {"frame": '{"b": [1, 2], "s": ["p", "q"]}'},  # a column renamed
        {"index": '["r1", "r3"]'},
        {"frame": '{"a": pd.array([1, 2], dtype="Int32"), "s": ["p", "q"]}'},  # the dtype
    ],
    ids=["array-value", "array-shape", "frame-value", "frame-strings", "frame-columns",
         "frame-index", "frame-dtype"],
)  # fmt: skip
def test_an_array_or_frame_global_counts_by_its_content(
    ctx: Context, tmp_path: Path, write_package: Writer, change: dict[str, str]
) -> None:
    wd = str(tmp_path)
    first = write_package().data_pipe.run({"workdir": wd})
    assert first.output("with_data")["array"] == 6.0
    # A rewrite with equal values is a new array object, and still a hit.
    assert not _reruns(write_package, "data_pipe", wd, "with_data")
    assert _reruns(write_package, "data_pipe", wd, "with_data", **change)
    assert not _reruns(write_package, "data_pipe", wd, "with_data", **change)
    assert ps.count(wd, "with_data") == 2


def test_an_array_changed_in_place_changes_the_key(
    ctx: Context, tmp_path: Path, write_package: Writer
) -> None:
    # Arrays are mutable: their bytes are hashed at each run, never remembered by object.
    wd = str(tmp_path)
    flow = write_package()
    flow.data_pipe.run({"workdir": wd})
    flow.ARRAY[0] = 10.0
    changed = flow.data_pipe.run({"workdir": wd})
    assert _statuses(changed) == {"with_data": "finished"}
    assert changed.output("with_data")["array"] == 15.0
    flow.ARRAY[0] = 1.0
    assert _statuses(flow.data_pipe.run({"workdir": wd})) == {"with_data": "cached"}


def test_an_array_past_the_byte_bound_runs_every_time(
    ctx: Context,
    tmp_path: Path,
    write_package: Writer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The bound is 256 MiB; a smaller one here keeps the test from allocating that much.
    monkeypatch.setattr(canonical_encoding, "MAX_ARRAY_BYTES", 16)
    wd = str(tmp_path)
    flow = write_package()  # ARRAY: 3 float64, 24 bytes
    with caplog.at_level(logging.WARNING, logger="loopline.training.cache"):
        first = flow.data_pipe.run({"workdir": wd})
        second = flow.data_pipe.run({"workdir": wd})
    assert _statuses(first) == _statuses(second) == {"with_data": "finished"}
    assert get_pipeline_run(second.run_id).steps["with_data"].cache_key is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert f"{flow.__name__}.ARRAY" in warnings[0]
    assert "more than 16 bytes of array data" in warnings[0]


# -- what counts: the new kinds ------------------------------------------------------------


def _reads_other_modules(x: str) -> Any:
    # Modules of other packages (their attributes too) stay out, as before.
    return json.dumps(x), np.pi, os.path.sep, pd.NA


def test_a_step_reading_only_other_packages_modules_keeps_the_key_it_had() -> None:
    from loopline.training.steps import spec_digest, step

    assert read_globals(_reads_other_modules) == {}
    s = step(_reads_other_modules)
    args: dict[str, Any] = {"x": {"v": "a"}}
    expected = spec_digest({"step": "_reads_other_modules", "code": s.code_hash, "args": args})
    assert cache_key(s, args) == expected


def test_the_plain_data_encoding_is_unchanged() -> None:
    # Pinned bytes: keys of steps reading plain constants stay those stored before.
    value = {"b": [1, 2.5], "a": (None, True, "x", b"y"), "c": frozenset({3})}
    assert canonical(value) == b"d3:s1:at4:nTs1:xb1:ys1:bl2:i1;f2.5;s1:cZ1:i3;"


def _make_reader(limit: float) -> Callable[[float], bool]:
    def reader(x: float) -> bool:
        return x < limit and bool(later)

    if limit < 0:  # never here: ``later`` stays an empty cell
        later = 1
    return reader


def test_closure_cells_count_and_an_empty_cell_is_left_out() -> None:
    reads = read_globals(_make_reader(0.5))
    prefix = f"{_HERE}._make_reader.<locals>.reader.__closure__"
    assert list(reads) == [f"{prefix}.limit"]
    assert reads[f"{prefix}.limit"] == read_globals(_make_reader(0.5))[f"{prefix}.limit"]
    assert reads[f"{prefix}.limit"] != read_globals(_make_reader(0.6))[f"{prefix}.limit"]


_PARTIAL = functools.partial(_scaled, 1.5, k=LIMIT)
_FOREIGN_PARTIAL = functools.partial(dedent, "  x")


def _calls_partials(x: float) -> Any:
    return _PARTIAL() + x, _FOREIGN_PARTIAL()


def test_a_partial_counts_by_its_function_and_each_argument() -> None:
    reads = read_globals(_calls_partials)
    assert sorted(reads) == [
        f"{_HERE}._FOREIGN_PARTIAL.args[0]",  # another package's function: its args only
        f"{_HERE}._PARTIAL.args[0]",
        f"{_HERE}._PARTIAL.func",
        f"{_HERE}._PARTIAL.func.__defaults__",
        f"{_HERE}._PARTIAL.keywords[k]",
    ]
    assert reads[f"{_HERE}._PARTIAL.func"] == read_globals(_calls_scaled)[f"{_HERE}._scaled"]


def _reads_package_modules(x: int) -> Any:
    # tests.training.pipeline_steps is of this package; ``ps.bump`` is a helper of it.
    return ps.bump, ps.count, tests.training.pipeline_steps.os, ps.no_such_name, x


def test_a_module_of_the_package_counts_by_its_attributes() -> None:
    reads = read_globals(_reads_package_modules)
    assert sorted(reads) == [
        "tests.training.pipeline_steps.bump",
        "tests.training.pipeline_steps.count",
    ]
    assert all(d.startswith("code:") for d in reads.values())


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (np.arange(6.0).reshape(2, 3), np.asfortranarray(np.arange(6.0).reshape(2, 3))),
        (np.float64(0.5), np.array(0.5)),
        (np.array(["a", None], dtype=object), np.array(["a", None], dtype=object)),
        (pd.DataFrame({"a": [1, 2]}), pd.DataFrame({"a": [1, 2]})),
        (pd.Series(pd.Categorical(["x", "y"])), pd.Series(pd.Categorical(["x", "y"]))),
    ],
    ids=["memory-order", "scalar-0d", "object", "frame", "categorical"],
)
def test_equal_arrays_encode_the_same(a: Any, b: Any) -> None:
    assert canonical(a) == canonical(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (np.zeros(6), np.zeros((2, 3))),
        (np.zeros(3), np.zeros(3, dtype="float32")),
        (np.zeros(3, dtype="<f8"), np.zeros(3, dtype=">f8")),
        (np.array([1, 2]), [1, 2]),
        (pd.DataFrame({"a": [1]}), pd.DataFrame({"b": [1]})),
        (pd.DataFrame({"a": [1]}), pd.DataFrame({"a": [1]}, index=[5])),
        (pd.Series([1], name="a"), pd.Series([1], name="b")),
        (pd.Series([1, None], dtype="Int64"), pd.Series([1, 0], dtype="Int64")),
        (pd.Series(pd.Categorical(["x"], categories=["x", "y"])),
         pd.Series(pd.Categorical(["x"], categories=["x", "z"]))),
        (pd.Series(pd.to_datetime(["2020-01-01"]).tz_localize("UTC")),
         pd.Series(pd.to_datetime(["2020-01-01"]).tz_localize("Europe/Paris"))),
    ],
    ids=["shape", "dtype", "byte-order", "array-list", "columns", "index", "series-name",
         "missing", "categories", "time-zone"],
)  # fmt: skip
def test_different_arrays_encode_differently(a: Any, b: Any) -> None:
    assert canonical(a) != canonical(b)


@pytest.mark.parametrize(
    "value",
    [
        np.ma.masked_array([1, 2], mask=[0, 1]),
        np.array([object()], dtype=object),
        pd.DataFrame({"t": [pd.Period("2020-01", freq="M")]}),
    ],
    ids=["masked-array", "object-element", "period-column"],
)
def test_arrays_holding_what_is_not_plain_are_not_plain(value: Any) -> None:
    with pytest.raises(ValueError, match="not plain data"):
        canonical(value)


def test_the_array_bounds() -> None:
    with pytest.raises(GlobalTooLarge, match=f"more than {MAX_ITEMS} items"):
        canonical(np.array(["s"] * MAX_ITEMS, dtype=object))  # element-wise, like a list
    # A column of strings (pandas' string dtype) and a MultiIndex: refused before they are
    # turned into Python objects.
    with pytest.raises(GlobalTooLarge, match=f"more than {MAX_ITEMS} items"):
        canonical(pd.DataFrame({"s": ["s"] * MAX_ITEMS}))
    with pytest.raises(GlobalTooLarge, match=f"more than {MAX_ITEMS} items"):
        canonical(pd.MultiIndex.from_product([range(MAX_ITEMS // 100 + 1), range(100)]))
    # A categorical counts its categories, not its rows.
    assert canonical(pd.Series(pd.Categorical(["a", "b"] * MAX_ITEMS)))
    with pytest.raises(GlobalTooLarge, match="bytes of array data"):
        # Counted over the whole global: two halves and one byte more.
        half = np.zeros(MAX_ARRAY_BYTES // 2, dtype="uint8")
        canonical([half, half, np.zeros(1, dtype="uint8")])


def test_array_and_frame_keys_are_the_same_in_every_process(tmp_path: Path) -> None:
    (tmp_path / "hashseed_arrays.py").write_text(
        dedent(
            """
            import functools

            import numpy as np
            import pandas as pd

            import loopline as ll

            FRAME = pd.DataFrame(
                {"n": np.arange(4.0), "s": list("abcd"), "c": pd.Categorical(list("xyxz"))},
                index=pd.MultiIndex.from_product([["p", "q"], [1, 2]]),
            )
            PICK = functools.partial(sorted, key=None, reverse=frozenset({"u", "v", "w"}))

            @ll.step
            def summed(n: int) -> int:
                return n + len(FRAME) + len(PICK([]))
            """
        )
    )
    script = (
        "import json, hashseed_arrays\n"
        "from loopline.training.step_globals import read_globals\n"
        "print(json.dumps(read_globals(hashseed_arrays.summed.fn)))\n"
    )
    outputs = outputs_under_hash_seeds(tmp_path, script, ("1", "2"))
    assert outputs[0] == outputs[1]
    assert sorted(outputs[0]) == [
        "hashseed_arrays.FRAME",
        "hashseed_arrays.PICK.keywords[key]",
        "hashseed_arrays.PICK.keywords[reverse]",
    ]


# -- the user's own code: modules beside the step's, classes, modules in closures ----------

_SIBLING_FLOW = """
import json

import numpy as np

import {cfg}
import {feats}


def by_sibling(x):
    # {cfg} and {feats} sit beside this top-level module; json and numpy are libraries.
    return {cfg}.THRESHOLD, {feats}.double(x), json.dumps(x), np.pi


def by_class(x):
    return {feats}.Scaler(x).apply()


def make(mod):
    def from_cell(x):
        return x * mod.FACTOR

    return from_cell


from_cell = make({cfg})
"""

_SIBLING_CFG = """
THRESHOLD = {threshold}
FACTOR = 2
"""

_SIBLING_FEATS = """
def double(x):
    return x * 2


class Scaler:
    OFFSET = {offset}

    def __init__(self, k):
        self.k = k

    def apply(self):
        return double(self.k) + self.OFFSET
"""

Project = Callable[..., ModuleType]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    """Write a top-level module of steps and, beside it in ``folder`` of tmp_path, a
    module (``cfg_*``) and a package (``feats_*``) it imports; import and return it."""
    tag = uuid.uuid4().hex[:8]
    names = {"flow": f"flow_{tag}", "cfg": f"cfg_{tag}", "feats": f"feats_{tag}"}
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # see write_module

    def write(folder: str = "proj", threshold: str = "0.5", offset: str = "1") -> ModuleType:
        root = tmp_path / folder
        (root / names["feats"]).mkdir(parents=True, exist_ok=True)
        monkeypatch.syspath_prepend(str(root))
        (root / f"{names['cfg']}.py").write_text(_SIBLING_CFG.format(threshold=threshold))
        (root / names["feats"] / "__init__.py").write_text(_SIBLING_FEATS.format(offset=offset))
        (root / f"{names['flow']}.py").write_text(_SIBLING_FLOW.format(**names))
        for name in names.values():  # a rewrite: reloaded in place, as write_module does
            if name in sys.modules:
                importlib.reload(sys.modules[name])
        return importlib.import_module(names["flow"])

    yield write
    for name in names.values():
        sys.modules.pop(name, None)


def test_modules_beside_a_top_level_module_are_own_code(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before, ``import config`` beside churn_pipeline.py was "another package": a changed
    # config.THRESHOLD or features.double() reused the old output.
    flow = project()
    cfg, feats = flow.__name__.replace("flow", "cfg"), flow.__name__.replace("flow", "feats")
    reads = read_globals(flow.by_sibling)
    assert sorted(reads) == [f"{cfg}.THRESHOLD", f"{feats}.double"]  # not json, np.pi
    assert reads[f"{feats}.double"].startswith("code:")
    monkeypatch.setattr(sys.modules[cfg], "THRESHOLD", 0.7)
    changed = read_globals(flow.by_sibling)
    assert changed[f"{cfg}.THRESHOLD"] != reads[f"{cfg}.THRESHOLD"]
    assert changed[f"{feats}.double"] == reads[f"{feats}.double"]


@pytest.mark.parametrize("folder", ["venv/lib/python3.11/site-packages", "dist-packages"])
def test_a_module_beside_a_step_in_a_library_folder_is_not_own_code(
    project: Project, folder: str
) -> None:
    # A library never becomes the user's own code because a script sits next to it.
    assert read_globals(project(folder).by_sibling) == {}


def test_a_module_beside_a_step_in_the_standard_library_folder_is_not_own_code(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As if the script were in the standard library's folder (sysconfig's stdlib).
    monkeypatch.setattr(own_code, "_library_folders", lambda: (tmp_path.resolve(),))
    own_code._folder.cache_clear()  # folders are kept per process
    try:
        assert read_globals(project().by_sibling) == {}
    finally:
        own_code._folder.cache_clear()


def test_a_class_of_a_module_beside_the_step_counts(project: Project) -> None:
    flow = project()
    feats = flow.__name__.replace("flow", "feats")
    reads = read_globals(flow.by_class)
    assert sorted(reads) == [
        f"{feats}.Scaler",
        f"{feats}.Scaler.OFFSET",
        f"{feats}.Scaler.__init__",
        f"{feats}.Scaler.apply",
        f"{feats}.double",  # read by apply
    ]
    assert reads[f"{feats}.Scaler"] == f"class:{feats}.Scaler"
    assert (
        read_globals(project(offset="2").by_class)[f"{feats}.Scaler.OFFSET"]
        != reads[f"{feats}.Scaler.OFFSET"]
    )


def test_a_module_held_in_a_closure_cell_counts_by_the_attributes_read(project: Project) -> None:
    flow = project()
    cfg = flow.__name__.replace("flow", "cfg")
    assert sorted(read_globals(flow.from_cell)) == [f"{cfg}.FACTOR"]
    # A module of the same package (``ps``) and one of a library (json).
    reads = read_globals(_make_module_reader(ps))
    assert sorted(reads) == ["tests.training.pipeline_steps.count"]
    assert read_globals(_make_module_reader(json)) == {}


def _make_module_reader(mod: ModuleType) -> Callable[[str], Any]:
    def reader(wd: str) -> Any:
        return mod.count(wd, "x")

    return reader


def _make_shadowed(mod: ModuleType) -> Callable[[], Any]:
    def reader() -> Any:
        def inner(mod: ModuleType) -> Callable[[], Any]:  # its own ``mod``: not the cell
            return lambda: mod.count

        return inner(json)(), mod

    return reader


def test_a_nested_function_s_own_variable_is_not_the_closure_s() -> None:
    assert read_globals(_make_shadowed(ps)) == {}


class _Base:
    OFFSET = 1.5

    def shift(self, x: float) -> float:
        return x + self.OFFSET


class _Scaler(_Base):
    FACTOR = 2
    TAGS = ("a", "b")

    def __init__(self, k: float) -> None:
        self.k = k

    def apply(self, xs: Any) -> Any:
        return _keep_small(xs)

    @staticmethod
    def make() -> _Scaler:
        return _Scaler(LIMIT)  # its own class: the walk ends

    @classmethod
    def create(cls) -> _Scaler:
        return cls(len(NAMES))

    @property
    def doubled(self) -> float:
        return self.k * 2

    def up(self) -> float:
        return super().shift(1.0)  # a __class__ cell holding _Scaler


def _uses_scaler(x: float) -> float:
    return _Scaler.FACTOR * x


def _shift_more(self: _Base, x: float) -> float:
    return x + self.OFFSET * 2


def test_a_class_of_the_own_package_counts_by_its_members_and_bases() -> None:
    # Before, _Scaler.FACTOR was left out: a changed factor reused the old output.
    reads = read_globals(_uses_scaler)
    scaler = f"{_HERE}._Scaler"
    assert sorted(reads) == sorted([
        f"{_HERE}.LIMIT",  # read by make
        f"{_HERE}.NAMES",  # read by create
        f"{_HERE}._keep_small",  # called by apply
        scaler,
        f"{scaler}.FACTOR",
        f"{scaler}.TAGS",
        f"{scaler}.__bases__[0]",
        f"{scaler}.__bases__[0].OFFSET",
        f"{scaler}.__bases__[0].shift",
        f"{scaler}.__init__",
        f"{scaler}.apply",
        f"{scaler}.create",
        f"{scaler}.doubled.fget",
        f"{scaler}.make",
        f"{scaler}.up",
    ])  # fmt: skip
    assert reads[scaler] == f"class:{scaler}"
    assert reads[f"{scaler}.__bases__[0]"] == f"class:{_HERE}._Base"
    assert reads[f"{scaler}.FACTOR"].startswith("data:")
    assert reads[f"{scaler}.make"].startswith("code:")


def test_a_class_attribute_or_method_changed_changes_the_entries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = read_globals(_uses_scaler)
    monkeypatch.setattr(_Scaler, "FACTOR", 3)
    monkeypatch.setattr(_Base, "shift", _shift_more)  # a base's method edited
    after = read_globals(_uses_scaler)
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {f"{_HERE}._Scaler.FACTOR", f"{_HERE}._Scaler.__bases__[0].shift"}


class _Ping:
    def go(self) -> Any:
        return _Pong().go()


class _Pong:
    def go(self) -> Any:
        return _Ping().go()


def _uses_ping() -> Any:
    return _Ping().go()


def test_classes_naming_each_other_are_each_counted_once() -> None:
    assert sorted(read_globals(_uses_ping)) == [
        f"{_HERE}._Ping",
        f"{_HERE}._Ping.go",
        f"{_HERE}._Pong",
        f"{_HERE}._Pong.go",
    ]


def _uses_own_enum() -> Any:
    return Colour.RED


def test_an_own_enum_counts_by_its_members_values() -> None:
    reads = read_globals(_uses_own_enum)
    # Its base IntEnum is another package's; _member_names_ and the like are Python's.
    assert sorted(reads) == [f"{_HERE}.Colour", f"{_HERE}.Colour.RED._value_"]
    assert reads[f"{_HERE}.Colour.RED._value_"] == "data:" + blake3.blake3(canonical(1)).hexdigest()
    # A member read as a global counts as data (class, name, value) and by its class.
    member = read_globals(lambda: RED)
    red = f"{_HERE}.RED"
    assert sorted(member) == [red, f"{red}.__refs__[0]", f"{red}.__refs__[0].RED._value_"]


def _uses_library_classes() -> Any:
    return OrderedDict(), Path("x"), collections.Counter, np.ndarray


OrderedDict = collections.OrderedDict


def test_classes_of_other_packages_are_left_out() -> None:
    # A library upgrade does not rerun steps.
    from sklearn.linear_model import LogisticRegression

    assert read_globals(_uses_library_classes) == {}
    reads = read_globals(lambda: LogisticRegression(C=LIMIT))
    assert sorted(reads) == [f"{_HERE}.LIMIT"]


def test_a_class_attribute_too_large_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    # The bounds hold for what a class holds as for a global.
    monkeypatch.setattr(_Scaler, "TAGS", tuple(range(MAX_ITEMS)))
    with pytest.raises(GlobalTooLarge) as err:
        read_globals(_uses_scaler)
    assert err.value.name == f"{_HERE}._Scaler.TAGS"
