"""``ll.monitor.log_business`` refuses what the server refuses, before anything is stored."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import loopline as ll
from loopline.core.context import Context
from loopline.errors import InvalidInput


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"event": "e\x00", "value": 1.0}, "event"),
        ({"event": "e\x1b[2J", "value": 1.0}, "event"),
        ({"event": "e", "value": True}, "value"),
        ({"event": "e", "value": np.True_}, "value"),
        ({"event": "e", "value": "3"}, "value"),
        ({"event": "e", "value": np.float64("nan")}, "value"),
        ({"event": "e", "value": np.float32("inf")}, "value"),
        ({"event": "e", "value": 1.0, "model": "m\x01"}, "model"),
        ({"event": "e", "value": 1.0, "request_id": "r\x00"}, "request_id"),
    ],
    ids=[
        "nul-event",
        "escape-event",
        "bool-value",
        "numpy-bool-value",
        "text-value",
        "numpy-nan-value",
        "numpy-inf-value",
        "control-model",
        "nul-request-id",
    ],
)
def test_a_bad_business_event_is_refused_naming_the_field(
    ctx: Context, kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        ll.monitor.log_business(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
    assert ll.monitor.read_business().empty


def test_a_label_for_a_model_name_with_a_control_character_is_refused(ctx: Context) -> None:
    with pytest.raises(InvalidInput, match="model contains") as info:
        ll.monitor.log_labels(["r-1"], [1], model="m\x1b[31m")
    assert info.value.field == "model"
    assert ll.monitor.read_labels().empty


def test_a_numpy_number_is_a_business_value(ctx: Context) -> None:
    # A value taken out of a DataFrame is numpy.int64 (numpy.float32 from a float32
    # column): both were refused as "not a finite number".
    ll.monitor.log_business("cost", pd.DataFrame({"c": [3]}).c.iloc[0], request_id="r-1")
    ll.monitor.log_business("cost", np.float32(2.5), request_id="r-2")
    ll.monitor.log_business("cost", np.uint8(4))
    stored = ll.monitor.read_business()
    assert stored["value"].tolist() == [3.0, 2.5, 4.0]
    assert all(type(v) is float for v in stored["value"].tolist())
