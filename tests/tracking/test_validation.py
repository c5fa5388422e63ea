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


@pytest.mark.parametrize("value", ["abc", None, [1.0]], ids=["text", "none", "list"])
def test_non_numeric_metric_values_are_rejected(ctx: Context, value: object) -> None:
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
