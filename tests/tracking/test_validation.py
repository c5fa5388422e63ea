"""Key and value checks, through the SDK on both backends."""

from __future__ import annotations

import pytest

import loopline as ll
from loopline.core.context import Context
from loopline.errors import InvalidInput
from loopline.tracking.validation import (
    MAX_KEY_LENGTH,
    MAX_PARAM_VALUE_LENGTH,
    MAX_TAG_VALUE_LENGTH,
    check_key,
)

BAD_KEYS = [
    ("../escape", "'..' segment"),
    ("a/../b", "'..' segment"),
    ("a\\..\\b", "'..' segment"),
    ("/etc/passwd", "absolute path"),
    ("\\\\server\\share", "absolute path"),
    ("C:\\temp", "absolute path"),
    ("line\nbreak", "control character"),
    ("tab\there", "control character"),
    ("nul\x00", "control character"),
    ("", "non-empty"),
    ("k" * (MAX_KEY_LENGTH + 1), f"limit of {MAX_KEY_LENGTH}"),
]


@pytest.mark.parametrize(("key", "reason"), BAD_KEYS, ids=[r for _k, r in BAD_KEYS])
@pytest.mark.parametrize("what", ["metric", "param", "tag"])
def test_bad_keys_are_rejected_naming_the_key(
    module_ctx: Context, key: str, reason: str, what: str
) -> None:
    with ll.start_run(experiment="keys") as run:
        with pytest.raises(InvalidInput) as info:
            if what == "metric":
                run.log_metric(key, 1.0)
            elif what == "param":
                run.log_param(key, "v")
            else:
                run.set_tag(key, "v")
        assert reason in str(info.value)
        if key and len(key) <= MAX_KEY_LENGTH:
            assert repr(key) in str(info.value)
        assert info.value.field == what
    assert run.metrics == {} and run.params == {}


@pytest.mark.parametrize("key", ["train/loss", "a.b", "eval loss", "x:y", "a/..b", "..a"])
def test_keys_with_slashes_and_dots_are_allowed(key: str) -> None:
    assert check_key(key) == key


def test_a_10_mb_tag_is_rejected_naming_the_limit(ctx: Context) -> None:
    with ll.start_run(experiment="limits") as run:
        with pytest.raises(InvalidInput, match=f"limit of {MAX_TAG_VALUE_LENGTH}") as info:
            run.set_tag("big", "x" * 10_000_000)
        assert "MAX_TAG_VALUE_LENGTH" in str(info.value)
        run.set_tag("fits", "x" * MAX_TAG_VALUE_LENGTH)
    assert "big" not in run.tags
    assert len(run.tags["fits"] or "") == MAX_TAG_VALUE_LENGTH


def test_param_values_over_the_limit_are_rejected(ctx: Context) -> None:
    with ll.start_run(experiment="limits") as run:
        with pytest.raises(InvalidInput, match=f"limit of {MAX_PARAM_VALUE_LENGTH}"):
            run.log_param("long", "y" * (MAX_PARAM_VALUE_LENGTH + 1))
        run.log_param("ok", "y" * MAX_PARAM_VALUE_LENGTH)
    assert set(run.params) == {"ok"}


@pytest.mark.parametrize(
    "value",
    ["abc", None, [1.0], "0.93", "nan", " 1e3 ", b"1"],
    ids=["text", "none", "list", "number-as-text", "nan-as-text", "padded", "bytes"],
)
def test_non_numeric_metric_values_are_rejected(ctx: Context, value: object) -> None:
    # Text that reads as a number is refused too, as the REST routes and MLflow refuse it.
    with ll.start_run(experiment="values") as run:
        with pytest.raises(InvalidInput, match="not a number"):
            run.log_metric("m", value)  # type: ignore[arg-type]
        with pytest.raises(InvalidInput, match="not a number"):
            run.log_metrics({"ok": 1.0, "m": value})  # type: ignore[dict-item]
        with pytest.raises(InvalidInput, match="step must be an integer"):
            run.log_metric("m", 1.0, step=1.5)  # type: ignore[arg-type]
    assert run.metrics == {}  # log_metrics queued nothing: all or none


@pytest.mark.parametrize(
    ("value", "why"),
    [(2**63, "does not fit in 64 bits"), (-(2**63) - 1, "does not fit in 64 bits"),
     (1e25, "does not fit in 64 bits"), (float("inf"), "must be an integer"),
     (float("nan"), "must be an integer"), ("12", "must be an integer")],
)  # fmt: skip
def test_an_int_field_outside_64_bits_is_invalid_input(value: object, why: str) -> None:
    # The columns are BIGINT: past them SQLite cannot bind (OverflowError, a 500 from
    # runs/create's start_time and runs/update's end_time), and int(inf) raised one too.
    from loopline.tracking.validation import check_int

    with pytest.raises(InvalidInput, match=why) as info:
        check_int(value, "end_time")
    assert info.value.field == "end_time"
    assert check_int(2**63 - 1, "end_time") == 2**63 - 1 and check_int(3.0, "step") == 3


@pytest.mark.parametrize("field", ["step", "timestamp"])
def test_a_step_or_time_past_64_bits_is_refused_at_the_call_and_loses_nothing(
    ctx: Context, field: str
) -> None:
    """Found at the flush, it refused the whole batch: every good point was lost with it."""
    with ll.start_run(experiment="bigstep") as run:
        run.flush()  # the run is written: points go to the background writer
        for step in range(100):
            run.log_metric("loss", 1.0, step=step)
        with pytest.raises(InvalidInput, match="does not fit in 64 bits") as info:
            run.log_metric("bad", 1.0, **{field: 2**63})
        assert info.value.field == field
        with pytest.raises(InvalidInput, match="does not fit in 64 bits"):
            run.log_metrics({"bad": 1.0}, **{field: -(2**63) - 1})
    assert len(ll.metric_history(run.id, "loss")) == 100
    assert "bad" not in ll.get_run(run.id).metrics


def test_text_without_a_utf8_form_is_refused_where_it_is_given(ctx: Context) -> None:
    """A lone surrogate passed set_tag and failed the run's write at its end: the run, its
    params and its points were lost."""
    lone = "bad \ud800 text"
    with ll.start_run(experiment="surrogates") as run:
        run.log_param("lr", 0.1)
        for call, field in [
            (lambda: run.set_tag("note", lone), "tags.note"),
            (lambda: run.log_param("p", lone), "params.p"),
            (lambda: run.log_metric(lone, 1.0), "metric"),
        ]:
            with pytest.raises(InvalidInput, match="lone surrogate") as info:
                call()
            assert info.value.field == field
        run.log_metric("loss", 0.5)
    stored = ll.get_run(run.id)
    assert stored.status == "FINISHED" and stored.params == {"lr": "0.1"}
    assert stored.metrics == {"loss": 0.5}
    with pytest.raises(InvalidInput, match="lone surrogate"):
        ll.start_run(experiment="surrogates", name=lone)


def test_nul_in_a_run_name_or_user_is_refused(ctx: Context) -> None:
    from loopline.tracking import experiments, run_creation

    with pytest.raises(InvalidInput, match="NUL") as info:
        ll.start_run(experiment="nul", name="a\x00b")
    assert info.value.field == "name"
    exp = experiments.get_or_create_experiment(ctx.engine, "nul")
    for bad, said in [("a\x00b", "NUL"), ("u" * 257, "limit of 256"), (5, "must be text")]:
        with pytest.raises(InvalidInput, match=said) as info:
            run_creation.create_run(ctx.engine, exp.id, user_id=bad)  # type: ignore[arg-type]
        assert info.value.field == "user_id"


#: Control characters a terminal acts on: ESC starts a sequence (recolour, clear, move).
CONTROLS = ["a\x01b", "u\x1b[31m", "x\x1b[2J", "cr\rover", "del\x7f", "csi\x9b31m"]


@pytest.mark.parametrize("bad", CONTROLS, ids=repr)
def test_a_control_character_in_a_run_name_or_user_is_refused(ctx: Context, bad: str) -> None:
    # Stored as sent, they reached `loopline runs ls`, which printed ESC to the terminal.
    from loopline.tracking import experiments, run_creation, run_state

    with pytest.raises(InvalidInput, match="control character") as info:
        ll.start_run(experiment="controls", name=bad)
    assert info.value.field == "name"
    exp = experiments.get_or_create_experiment(ctx.engine, "controls")
    with pytest.raises(InvalidInput, match="control character") as info:
        run_creation.create_run(ctx.engine, exp.id, user_id=bad)
    assert info.value.field == "user_id"
    run = run_creation.create_run(ctx.engine, exp.id, name="fine")
    with pytest.raises(InvalidInput, match="control character"):
        run_state.update_run(ctx.engine, run.id, name=bad)
    with pytest.raises(InvalidInput, match="control character"):
        run_creation.create_run(
            ctx.engine, exp.id, user_id="ada\nlovelace"
        )  # a user id is one line
    assert run_state.get_run(ctx.engine, run.id).name == "fine"


def test_a_run_name_may_hold_tab_and_newline_as_mlflows_may(ctx: Context) -> None:
    with ll.start_run(experiment="controls", name="lr=0.1\tdepth=3\nsecond line") as run:
        pass
    assert ll.get_run(run.id).name == "lr=0.1\tdepth=3\nsecond line"
