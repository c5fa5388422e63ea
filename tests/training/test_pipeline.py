"""Pipelines on the local executor, on SQLite and PostgreSQL: cache, retries, failure, resume."""

from __future__ import annotations

import importlib
import itertools
import json
import math
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import loopline as ll
from loopline.core.context import Context
from loopline.errors import InvalidInput
from loopline.training import step_journal
from loopline.training.pipeline import (
    PipelineFailed,
    get_pipeline_run,
    list_pipeline_runs,
    resume,
)
from loopline.training.step_journal import StepJournal
from loopline.training.steps import GraphBuilder, StepHandle
from tests.training import pipeline_steps as ps


def _statuses(result: Any) -> dict[str, str]:
    return {name: rec.status for name, rec in result.steps.items()}


def test_steps_run_in_order_and_outputs_are_typed_artifacts(ctx: Context, tmp_path: Path) -> None:
    result = ps.simple.run({"workdir": str(tmp_path), "n": 5})
    assert result.summary() == {
        "run_id": result.run_id,
        "status": "finished",
        "steps": {
            "load": {"status": "finished", "attempts": 1},
            "double": {"status": "finished", "attempts": 1},
            "total": {"status": "finished", "attempts": 1},
        },
    }
    assert result.output("total") == {"sum": 20, "rows": 5}
    assert result.steps["load"].output is not None
    assert result.steps["load"].output.type == "parquet"
    assert result.steps["total"].output is not None
    assert result.steps["total"].output.type == "json"
    frame = result.output("double")
    assert frame["x"].tolist() == [0, 2, 4, 6, 8]
    assert result.steps["double"].upstream == ["load"]


def test_cache_hit_skips_the_step_body(ctx: Context, tmp_path: Path) -> None:
    wd = str(tmp_path)
    first = ps.simple.run({"workdir": wd, "n": 5})
    second = ps.simple.run({"workdir": wd, "n": 5})
    assert _statuses(second) == {"load": "cached", "double": "cached", "total": "cached"}
    assert [ps.count(wd, s) for s in ("load", "double", "total")] == [1, 1, 1]
    assert second.output("total") == {"sum": 20, "rows": 5}
    for name in ("load", "double", "total"):
        assert second.steps[name].attempts == 0
        assert second.steps[name].cached_from == first.steps[name].run_id
        assert second.steps[name].output == first.steps[name].output
        assert second.steps[name].cache_key == first.steps[name].cache_key


def test_a_cached_step_keeps_its_dataset_lineage_and_misses_on_newer_data(
    ctx: Context, tmp_path: Path
) -> None:
    """A cached step did not run, so its read of the dataset was not recorded: the model
    of that pipeline run had no datasets (reproduce pinned nothing). And the cache key
    cannot see a read of "latest", so a newer version still hit the stale output."""
    import pandas as pd

    wd = str(tmp_path)
    ll.datasets.register("pp-data", pd.DataFrame({"x": range(10)}))
    first = ps.reads_data.run({"workdir": wd, "name": "pp-data", "extra": 0})
    again = ps.reads_data.run({"workdir": wd, "name": "pp-data", "extra": 1})
    assert _statuses(again) == {"load_dataset": "cached", "rows_plus": "finished"}
    for result in (first, again):
        assert [(i.name, i.version) for i in ll.get_run(result.run_id).inputs] == [("pp-data", "1")]
    ll.datasets.register("pp-data", pd.DataFrame({"x": range(15)}))
    newer = ps.reads_data.run({"workdir": wd, "name": "pp-data", "extra": 1})
    assert _statuses(newer) == {"load_dataset": "finished", "rows_plus": "finished"}
    assert newer.output("rows_plus") == 16
    assert [(i.name, i.version) for i in ll.get_run(newer.run_id).inputs] == [("pp-data", "2")]
    # Pinned back to version 1, "latest" reads it: the step runs again (its cache entry is
    # the newest output, made from version 2), and the next step finds its old output.
    with ll.datasets.pinned({"pp-data": 1}):
        pinned = ps.reads_data.run({"workdir": wd, "name": "pp-data", "extra": 0})
    assert _statuses(pinned) == {"load_dataset": "finished", "rows_plus": "cached"}
    assert pinned.output("rows_plus") == 10


def test_cache_misses_when_a_param_changes(ctx: Context, tmp_path: Path) -> None:
    wd = str(tmp_path)
    ps.simple.run({"workdir": wd, "n": 5})
    changed = ps.simple.run({"workdir": wd, "n": 6})
    assert _statuses(changed) == {"load": "finished", "double": "finished", "total": "finished"}
    assert changed.output("total") == {"sum": 30, "rows": 6}
    back = ps.simple.run({"workdir": wd, "n": 5})
    assert set(_statuses(back).values()) == {"cached"}
    assert ps.count(wd, "load") == 2


def test_cache_misses_when_an_input_changes_and_hits_on_equal_bytes(
    ctx: Context, tmp_path: Path
) -> None:
    wd = str(tmp_path)
    source = tmp_path / "source.txt"
    source.write_text("a")
    ps.from_file.run({"workdir": wd})
    source.write_text("b")
    changed = ps.from_file.run({"workdir": wd})
    assert _statuses(changed) == {"read_source": "finished", "shout": "finished"}
    assert changed.output("shout") == "B"
    source.write_text("a")
    again = ps.from_file.run({"workdir": wd})
    # read_source has cache=False so it runs; its output has the bytes of the first run,
    # so shout's input digest is known and shout is served from the cache.
    assert _statuses(again) == {"read_source": "finished", "shout": "cached"}
    assert again.output("shout") == "A"
    assert ps.count(wd, "read_source") == 3
    assert ps.count(wd, "shout") == 2
    source_out = again.steps["read_source"].output
    assert source_out is not None
    assert again.steps["shout"].inputs == {"text": source_out.digest}


_CODE = """
import loopline as ll
from tests.training.pipeline_steps import bump


@ll.step
def work(workdir: str) -> int:
    bump(workdir, "work")
    {body}


@ll.pipeline
def pipe(workdir: str) -> None:
    work(workdir)
"""


def test_cache_misses_when_the_code_changes(
    ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"codechange_{uuid.uuid4().hex[:8]}"
    src = tmp_path / "mods"
    src.mkdir()
    monkeypatch.syspath_prepend(str(src))
    path = src / f"{name}.py"
    wd = str(tmp_path)

    def write(body: str) -> Any:
        path.write_text(textwrap.dedent(_CODE).format(body=body))
        if name in sys.modules:
            return importlib.reload(sys.modules[name])
        return importlib.import_module(name)

    mod = write("return 1")
    assert mod.pipe.run({"workdir": wd}).output("work") == 1
    mod = write("return 1  # a comment does not change the code hash")
    assert _statuses(mod.pipe.run({"workdir": wd})) == {"work": "cached"}
    mod = write("return 2")
    changed = mod.pipe.run({"workdir": wd})
    assert _statuses(changed) == {"work": "finished"}
    assert changed.output("work") == 2
    assert ps.count(wd, "work") == 2
    sys.modules.pop(name, None)


def test_retries_with_exponential_backoff(ctx: Context, tmp_path: Path) -> None:
    wd = str(tmp_path)
    result = ps.flaky_pipe.run({"workdir": wd, "fail_times": 2})
    assert result.summary()["steps"] == {"flaky": {"status": "finished", "attempts": 3}}
    assert result.output("flaky") == "ok after 3"
    times = [float(t) for t in (tmp_path / "flaky.times").read_text().split()]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # retry_delay=0.2: 0.2 s before the 2nd try, 0.4 s before the 3rd
    assert gaps[0] >= 0.2
    assert gaps[1] >= 0.4
    child = ll.get_run(result.steps["flaky"].run_id or "")
    assert child.tags["loopline.step.attempts"] == "3"
    assert child.tags["loopline.step.status"] == "finished"


def test_failing_step_fails_the_run_and_independent_branches_finish(
    ctx: Context, tmp_path: Path
) -> None:
    wd = str(tmp_path)
    result = ps.branches.run({"workdir": wd})
    assert result.summary()["steps"] == {
        "always_fails": {"status": "failed", "attempts": 2},
        "after": {"status": "skipped", "attempts": 0},
        "independent": {"status": "finished", "attempts": 1},
    }
    assert result.status == "failed"
    assert ps.count(wd, "always_fails") == 2
    assert ps.count(wd, "after") == 0
    error = result.steps["always_fails"].error or ""
    assert "ValueError: boom" in error and "Traceback" in error
    assert "always_fails" in (result.steps["after"].error or "")
    run = ll.get_run(result.run_id)
    assert run.status == "FAILED"
    failed_child = ll.get_run(result.steps["always_fails"].run_id or "")
    assert failed_child.status == "FAILED"
    assert "boom" in (failed_child.tags["loopline.error"] or "")
    with pytest.raises(PipelineFailed, match="always_fails"):
        result.raise_for_status()


def test_resume_reruns_only_failed_and_skipped_steps(ctx: Context, tmp_path: Path) -> None:
    wd = str(tmp_path)
    (tmp_path / "broken").touch()
    first = ps.resumable.run({"workdir": wd})
    assert _statuses(first) == {
        "load": "finished",
        "double": "finished",
        "gate": "failed",
        "after": "skipped",
    }
    (tmp_path / "broken").unlink()
    second = resume(first.run_id)
    assert second.status == "finished"
    assert _statuses(second) == {
        "load": "cached",
        "double": "cached",
        "gate": "finished",
        "after": "finished",
    }
    assert second.steps["load"].cached_from == first.steps["load"].run_id
    assert second.record.resumed_from == first.run_id
    assert ll.get_run(second.run_id).tags["loopline.pipeline.resumed_from"] == first.run_id
    assert [ps.count(wd, s) for s in ("load", "double", "gate", "after")] == [1, 1, 2, 1]
    assert second.output("after").startswith("after [7, ")


def test_a_failed_last_write_marks_the_run_failed_not_running(
    ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The run's last batch was written outside the error handling, and the cleanup wrote
    # the same batch again: when it failed, the run stayed 'running' forever.
    real_flush = StepJournal.flush

    def flush(journal: StepJournal, status: str | None = None, **kw: Any) -> None:
        if status is not None:  # the run's end: the final batch, and the cleanup's
            raise RuntimeError("disk I/O error")
        real_flush(journal, status, **kw)

    monkeypatch.setattr(StepJournal, "flush", flush)
    # Only the run's end may write the steps' ends: on a loaded machine the time-based
    # flush wrote them all before it, leaving no step for the lost batch to settle.
    monkeypatch.setattr(step_journal, "FLUSH_AFTER", 3600.0)
    with pytest.raises(PipelineFailed, match="disk I/O error") as err:
        ps.simple.run({"workdir": str(tmp_path), "n": 3})
    monkeypatch.undo()
    (stored,) = list_pipeline_runs("simple")
    assert f"run {stored.run_id} failed" in str(err.value)
    assert f"loopline pipeline resume {stored.run_id}" in (err.value.hint or "")
    assert stored.status == "failed" and stored.record.finished_at is not None
    # The steps whose end was in the lost batch are failed with the error, so resume reruns
    # them and `pipeline show` says why.
    unsettled = [s for s in stored.steps.values() if s.status != "finished"]
    assert unsettled and all(s.status == "failed" for s in unsettled)
    assert all("disk I/O error" in (s.error or "") for s in unsettled)
    assert ll.get_run(stored.run_id).status == "FAILED"
    again = resume(stored.run_id)
    assert again.status == "finished"
    assert again.output("total") == {"sum": 6, "rows": 3}


_RESUME_CODE = """
from pathlib import Path

import loopline as ll
from tests.training.pipeline_steps import bump


@ll.step
def first(workdir: str) -> int:
    bump(workdir, "first")
    {body}


@ll.step
def second(workdir: str, x: int) -> int:
    bump(workdir, "second")
    if (Path(workdir) / "broken").exists():
        raise RuntimeError("broken")
    return x * 10


@ll.pipeline
def pipe(workdir: str) -> None:
    second(workdir, first(workdir))
"""


def test_resume_reruns_a_finished_step_whose_code_changed(
    ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fix to an upstream step between the failed run and the resume must not be
    # answered with the output of the old code.
    name = f"resumechange_{uuid.uuid4().hex[:8]}"
    src = tmp_path / "mods"
    src.mkdir()
    monkeypatch.syspath_prepend(str(src))
    path = src / f"{name}.py"
    wd = str(tmp_path)
    path.write_text(textwrap.dedent(_RESUME_CODE).format(body="return 1"))
    mod = importlib.import_module(name)
    (tmp_path / "broken").touch()
    failed = mod.pipe.run({"workdir": wd})
    assert _statuses(failed) == {"first": "finished", "second": "failed"}
    (tmp_path / "broken").unlink()
    path.write_text(textwrap.dedent(_RESUME_CODE).format(body="return 2"))
    importlib.reload(mod)
    again = resume(failed.run_id)
    assert _statuses(again) == {"first": "finished", "second": "finished"}
    assert again.output("first") == 2
    assert again.output("second") == 20
    assert ps.count(wd, "first") == 2
    sys.modules.pop(name, None)


def test_a_step_fed_by_hundreds_of_steps_finishes_and_keeps_its_inputs(ctx: Context) -> None:
    # A fan-in of 300 outputs made the step's inputs tag too long for a tag: the run's
    # bookkeeping failed, the CLI printed an error and the run stayed "running".
    @ll.step
    def square(i: int) -> int:
        return i * i

    @ll.step
    def add_up(xs: list[int]) -> int:
        return sum(xs)

    @ll.pipeline
    def fan_in(n: int) -> None:
        add_up([square(i) for i in range(n)])

    result = fan_in.run({"n": 300})
    assert result.status == "finished"
    assert result.output("add_up") == sum(i * i for i in range(300))
    stored = get_pipeline_run(result.run_id)
    assert stored.status == "finished"
    rec = stored.steps["add_up"]
    assert len(rec.inputs or {}) == 300  # the step's record keeps every input
    tag = json.loads(ll.get_run(rec.run_id or "").tags["loopline.step.inputs"] or "")
    kept = {k: v for k, v in tag.items() if k != "..."}
    assert kept and all((rec.inputs or {})[k] == v for k, v in kept.items())
    assert tag["..."] == f"{300 - len(kept)} more inputs: see `loopline pipeline show`"


def test_every_executed_step_is_a_child_run_with_lineage_tags(ctx: Context, tmp_path: Path) -> None:
    result = ps.simple.run({"workdir": str(tmp_path), "n": 3})
    run = ll.get_run(result.run_id)
    assert run.status == "FINISHED"
    assert run.tags["loopline.pipeline"] == "simple"
    assert run.params == {"workdir": str(tmp_path), "n": "3"}
    load, double = result.steps["load"], result.steps["double"]
    child = ll.get_run(double.run_id or "")
    assert child.parent_run_id == result.run_id
    assert child.name == "double"
    assert child.status == "FINISHED"
    assert child.params == {"workdir": str(tmp_path), "df": "<output of load>"}
    assert load.output is not None and double.output is not None
    assert child.tags["loopline.step.inputs"] == f'{{"df": "{load.output.digest}"}}'
    assert child.tags["loopline.step.output"] == double.output.digest
    assert child.tags["loopline.step.output_type"] == "parquet"
    assert child.tags["loopline.step.cache_key"] == double.cache_key
    assert ctx.artifacts.exists(double.output.digest)


def test_independent_steps_run_side_by_side(ctx: Context) -> None:
    ps.parallel.run({"seconds": 0.01})  # warm up imports and the database
    start = time.perf_counter()
    result = ps.parallel.run({"seconds": 0.5})
    elapsed = time.perf_counter() - start
    assert result.status == "finished"
    assert elapsed < 0.9, f"two 0.5 s steps took {elapsed:.2f} s in all"


def test_values_of_every_kind_round_trip(ctx: Context) -> None:
    result = ps.typed.run({"n": 4})
    assert result.steps["make_values"].output is not None
    assert result.steps["make_values"].output.type == "tuple"
    assert result.output("describe") == {
        "frame": ["DataFrame", 4, ["a", "b"]],
        "arr": ["ndarray", 2.0],
        "raw": "00726177",
        "doc": [1, 2.5, None],
        "nan": True,
        "series": ["Series", "s", 3.0],
        "scalar": 2.5,
    }
    # describe reads the items of the tuple: each is its own artifact and input digest
    inputs = result.steps["describe"].inputs or {}
    assert len(set(inputs.values())) == 6


def test_a_cached_step_returns_exactly_what_the_step_returned(ctx: Context, tmp_path: Path) -> None:
    """JSON was stored with sorted keys and numpy scalars as Python values: a cache hit (and
    the next step) got {'a', 'b'} for {'b', 'a'}, a float for a float32."""
    import numpy as np

    wd = str(tmp_path)
    first = ps.exact.run({"workdir": wd})
    second = ps.exact.run({"workdir": wd})
    assert _statuses(second) == {"exact_values": "cached", "type_names": "cached"}
    assert ps.count(wd, "exact_values") == 1
    expected = ps.exact_values.fn(wd)
    for result in (first, second):
        got = result.output("exact_values")
        assert list(got) == ["zeta", "alpha", "mid", "blob"]
        assert got["zeta"] == expected["zeta"] and list(got["zeta"]) == ["b", "a"]
        assert list(got["zeta"]["a"][1]) == ["y", "x"]
        assert [type(v) for v in got["mid"]] == [type(v) for v in expected["mid"]]
        assert got["mid"] == expected["mid"] and got["mid"][0].dtype == np.int8
        assert type(got["alpha"]) is np.float32 and got["alpha"] == np.float32(0.1)
        assert type(got["blob"]) is bytearray and got["blob"] == expected["blob"]
        assert result.output("type_names") == [
            ["zeta", "alpha", "mid", "blob"],
            ["b", "a"],
            "float32",
        ]


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("namedtuple", "a subclass of tuple: it would load back as a plain tuple"),
        ("ordered", "collections.OrderedDict, a subclass of dict"),
        ("intenum", "a subclass of int"),
    ],
)
def test_a_subclass_of_a_storable_type_is_refused_naming_the_step(
    ctx: Context, kind: str, words: str
) -> None:
    """A namedtuple loaded back as a plain tuple: result.a worked on a run, not on a hit."""
    rec = ps.subclass.run({"kind": kind}).steps["subclass_output"]
    assert rec.status == "failed" and words in (rec.error or ""), rec.error
    assert "step 'subclass_output' returned a" in (rec.error or "")


def test_models_are_stored_with_their_flavor(ctx: Context) -> None:
    result = ps.modelling.run({"n": 10})
    assert result.steps["fit_model"].output is not None
    assert result.steps["fit_model"].output.type == "model"
    assert result.output("predict") == pytest.approx(31.0)
    model = result.output("fit_model")
    assert type(model).__name__ == "LinearRegression"


def test_an_output_with_no_safe_format_fails_the_step_naming_it(ctx: Context) -> None:
    result = ps.bad_output.run({})
    rec = result.steps["unstorable"]
    assert (rec.status, rec.attempts) == ("failed", 1)
    assert "step 'unstorable' returned a builtins.object" in (rec.error or "")
    assert "never pickles" in (rec.error or "")
    assert result.steps["after"].status == "skipped"


def test_a_cycle_is_detected_and_named(ctx: Context) -> None:
    builder = GraphBuilder(ctx.artifacts)
    with builder.building():
        ghost = StepHandle(builder, "shout")  # a handle to a step not called yet
        first = ps.after("w", ghost)
        ps.shout("w", first)
    with pytest.raises(InvalidInput, match=r"after -> shout -> after form a cycle"):
        builder.graph.order()


def test_handles_cannot_be_used_as_values(ctx: Context) -> None:
    leaked: list[Any] = []

    @ll.pipeline
    def uses_value(workdir: str) -> None:
        df = ps.load(workdir, 3)
        if df:  # the value is not known while the pipeline is built
            ps.total(workdir, df)

    with pytest.raises(InvalidInput, match="output of step 'load' is not known"):
        uses_value.run({"workdir": "w"})

    @ll.pipeline
    def unpacks(workdir: str) -> None:
        first, second = ps.make_values(2)
        ps.describe(first, second, b"", {}, None, 0.0)

    with pytest.raises(TypeError, match=r"index it instead"):
        unpacks.run({"workdir": "w"})

    @ll.pipeline
    def leaks(workdir: str) -> None:
        leaked.append(ps.load(workdir, 1))

    @ll.pipeline
    def reuses(workdir: str) -> None:
        ps.total(workdir, leaked[0])

    leaks.run({"workdir": "w"})
    with pytest.raises(InvalidInput, match="output of step 'load' of another pipeline"):
        reuses.run({"workdir": "w"})


def test_bad_calls_are_clear_errors(ctx: Context) -> None:
    with pytest.raises(InvalidInput, match=r"unknown executor 'gpu'.*local, process, ray"):
        ps.simple.run({"workdir": "w"}, executor="gpu")
    with pytest.raises(InvalidInput, match="pipeline 'simple'"):
        ps.simple.run({"wrong": 1})
    with pytest.raises(InvalidInput, match="'retries' parameter of step must be an int >= 0"):
        ll.step(retries=-1)(len)

    @ll.pipeline
    def odd_literal() -> None:
        ps.after("w", object())

    with pytest.raises(InvalidInput, match=r"step 'after', argument 'value' is a builtins.object"):
        odd_literal.run({})
    assert len(ll.search_runs()) == 0  # nothing ran: the errors came before any run


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"cache": "no"}, "cache"),
        ({"cache": 0}, "cache"),
        ({"retry_delay": math.nan}, "retry_delay"),
        ({"retry_delay": math.inf}, "retry_delay"),
        ({"retry_delay": True}, "retry_delay"),
        ({"name": ""}, "name"),
        ({"name": 3}, "name"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": -1.0}, "timeout"),
        ({"timeout": math.nan}, "timeout"),
        ({"timeout": math.inf}, "timeout"),
        ({"timeout": True}, "timeout"),
        ({"timeout": "5"}, "timeout"),
    ],
    ids=[
        "cache-text",
        "cache-int",
        "delay-nan",
        "delay-inf",
        "delay-bool",
        "name-empty",
        "name-int",
        "timeout-zero",
        "timeout-negative",
        "timeout-nan",
        "timeout-inf",
        "timeout-bool",
        "timeout-text",
    ],
)
def test_bad_step_options_are_refused_naming_the_option(
    options: dict[str, Any], field: str
) -> None:
    # cache="no" was truthy and cached; a NaN delay made the retry's time.sleep raise, lost
    # as "the executor lost the step"; an empty name fell back to the function's name.
    with pytest.raises(InvalidInput, match=f"'{field}' parameter of step") as err:
        ll.step(**options)(len)
    assert err.value.field == field


def test_a_step_outside_a_pipeline_is_a_plain_call(tmp_path: Path) -> None:
    assert ps.shout(str(tmp_path), "hi") == "HI"
    assert ps.count(str(tmp_path), "shout") == 1
