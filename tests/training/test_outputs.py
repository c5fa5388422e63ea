"""Step outputs stored and loaded back: a Series keeps its name, whatever label it is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loopline.core.artifacts import open_artifact_store
from loopline.errors import InvalidInput
from loopline.training.outputs import load_value, store_value


@pytest.mark.parametrize(
    "name",
    [
        "s",
        "__series__",
        None,
        0,
        7.5,
        True,
        pd.Timestamp("2024-03-01 10:00", tz="UTC"),
        ("eu", 3),
        np.int64(4),
    ],
    ids=repr,
)
def test_a_series_comes_back_with_its_name(tmp_path: Path, name: object) -> None:
    # df.iloc[i] is a Series named by the row's index label: an int, a Timestamp...
    store = open_artifact_store(str(tmp_path))
    series = pd.Series([1.0, 2.0], index=["a", "b"], name=name)
    back = load_value(store_value(series, store, step="row"), store)
    pd.testing.assert_series_equal(back, series)
    # a numpy label comes back as its Python value, which compares equal
    assert type(back.name) is (int if isinstance(name, np.generic) else type(name))


def test_a_row_of_a_frame_round_trips(tmp_path: Path) -> None:
    store = open_artifact_store(str(tmp_path))
    frame = pd.DataFrame({"x": [1.0, 2.0]}, index=pd.DatetimeIndex(["2024-01-01", "2024-01-02"]))
    back = load_value(store_value(frame.iloc[1], store, step="row"), store)
    pd.testing.assert_series_equal(back, frame.iloc[1])


def test_a_name_that_cannot_be_stored_is_refused_naming_the_step(tmp_path: Path) -> None:
    store = open_artifact_store(str(tmp_path))
    with pytest.raises(InvalidInput, match="step 'row' returned a Series named") as info:
        store_value(pd.Series([1], name=frozenset({1})), store, step="row")
    assert info.value.field == "row"
