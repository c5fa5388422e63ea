"""Reading whole runs (params and tags as database-built JSON objects), on both backends."""

from __future__ import annotations

import dataclasses
import math
import time

import pytest

from loopline.core.context import Context
from loopline.errors import InvalidInput
from loopline.tracking import run_creation, run_data, run_state
from loopline.tracking.entities import Metric, RunRecord
from loopline.tracking.run_records import get_runs
from loopline.tracking.validation import MAX_FLOAT

# Text that JSON must carry exactly: quotes, backslashes, control characters, non-ASCII,
# text that looks like JSON, an empty string.
_AWKWARD = ['a "quoted" \\ value', "line\nbreak\ttab\x01", "naïve ☃ 😀", '{"a": [1, 2]}', ""]
# Doubles that SQLite's own number printing (JSON, printf) does not round-trip.
_DOUBLES = [0.1, 1 / 3, 5e-324, 1.5460700127525939e265, 1.7976931348623155e308, -2.5]


def test_params_tags_and_metrics_come_back_exact_and_in_key_order(ctx: Context) -> None:
    run = run_creation.create_run(ctx.engine, 0)
    params = {key: _AWKWARD[n % len(_AWKWARD)] for n, key in enumerate(["é", "Z", "a", "10", "9"])}
    run_data.log_batch(
        ctx.engine,
        run.id,
        params=params,
        tags={"z.none": None, "b": _AWKWARD[0], "A": "x"},
        metrics=[Metric(f"m{n}", value, 1_700_000_000_000 + n, step=n) for n, value in
                 enumerate([*_DOUBLES, math.inf, math.nan])],
    )  # fmt: skip
    (found,) = get_runs(ctx.engine, [run.id])
    assert list(found.params.items()) == sorted(params.items())
    tags = {k: v for k, v in found.tags.items() if k in ("z.none", "b", "A")}
    assert tags == {"A": "x", "b": _AWKWARD[0], "z.none": None}
    assert list(found.tags) == sorted(found.tags)
    values = [found.metrics[f"m{n}"] for n in range(len(_DOUBLES))]
    assert [v.hex() for v in values] == [v.hex() for v in _DOUBLES]  # bit for bit
    assert found.metrics[f"m{len(_DOUBLES)}"] == MAX_FLOAT  # +inf is stored as MLflow does
    assert math.isnan(found.metrics[f"m{len(_DOUBLES) + 1}"])
    assert found.latest_metrics["m2"].step == 2
    assert found.latest_metrics["m2"].timestamp == 1_700_000_000_002


def test_runs_come_back_in_the_asked_order_and_empty_runs_have_empty_dicts(ctx: Context) -> None:
    bare = run_creation.create_run(ctx.engine, 0)
    full = run_creation.create_run(ctx.engine, 0)
    run_data.log_batch(ctx.engine, full.id, params={"p": "1"}, tags={"t": "2"})
    found = get_runs(ctx.engine, [full.id, "0" * 32, bare.id, full.id])
    assert [r.id for r in found] == [full.id, bare.id]
    assert (found[0].params, found[0].tags["t"]) == ({"p": "1"}, "2")
    assert (found[1].params, found[1].latest_metrics, found[1].inputs) == ({}, {}, ())
    assert found[1].tags == run_state.get_run(ctx.engine, bare.id).tags
    assert get_runs(ctx.engine, []) == []


def test_latest_metrics_come_back_in_code_point_order_not_the_databases_locale(
    ctx: Context,
) -> None:
    # A locale collation (PostgreSQL's en_US) puts "a" before "Z" and "é" among the e's;
    # Python, and every other dict of a run, orders by code point.
    run = run_creation.create_run(ctx.engine, 0)
    keys = ["é", "Z", "a", "e", "B", "10", "9", "_x"]
    run_data.log_batch(ctx.engine, run.id, metrics=[Metric(k, 1.0, 1, step=0) for k in keys])
    (found,) = get_runs(ctx.engine, [run.id])
    assert list(found.latest_metrics) == sorted(keys)


def test_a_read_record_is_the_dataclass_with_every_field(ctx: Context) -> None:
    run = run_creation.create_run(ctx.engine, 0)
    run_data.log_batch(ctx.engine, run.id, params={"p": "1"}, metrics=[Metric("m", 0.5, 1, 0)])
    (found,) = get_runs(ctx.engine, [run.id])
    # get_runs fills the record's fields without __init__: the same names, and an object
    # equal to one the dataclass makes from them
    assert list(vars(found)) == [f.name for f in dataclasses.fields(RunRecord)]
    assert dataclasses.replace(found) == found
    with pytest.raises(dataclasses.FrozenInstanceError):
        found.name = "x"  # type: ignore[misc]


def test_outputs_come_back_in_the_order_they_were_logged(ctx: Context) -> None:
    from loopline.tracking import lineage
    from loopline.tracking.entities import RunOutput

    run = run_creation.create_run(ctx.engine, 0)
    lineage.log_outputs(ctx.engine, run.id, [RunOutput("m-b", 0)])
    time.sleep(0.002)  # logged a millisecond later at least
    lineage.log_outputs(ctx.engine, run.id, [RunOutput("m-a", 2), RunOutput("m-b", 0)])
    (found,) = get_runs(ctx.engine, [run.id])
    assert found.outputs == (RunOutput("m-b", 0), RunOutput("m-a", 2))
    assert run_state.get_run(ctx.engine, run.id).outputs == found.outputs
    run_state.delete_run(ctx.engine, run.id)
    with pytest.raises(InvalidInput, match="is deleted"):
        lineage.log_outputs(ctx.engine, run.id, [RunOutput("m-c", 0)])
    for bad, said in [
        (RunOutput("", 0), "must be a non-empty string"),
        (RunOutput("m" * 65, 0), "over the limit of 64"),
        (RunOutput("m\x00", 0), "contains a NUL"),
        (RunOutput("m-d", 2**63), "does not fit in 64 bits"),
    ]:
        with pytest.raises(InvalidInput, match=said):
            lineage.log_outputs(ctx.engine, run.id, [bad])
