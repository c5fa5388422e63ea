"""What the MLflow wire format reads from the client: ids are numbers, written plainly."""

from __future__ import annotations

import pytest

from loopline.errors import InvalidInput
from loopline.server.mlflow_wire import experiment_id


@pytest.mark.parametrize(("raw", "expected"), [("12", 12), ("0", 0), (7, 7), ("007", 7)])
def test_an_experiment_id_is_read_as_its_number(raw: str | int, expected: int) -> None:
    assert experiment_id(raw) == expected


@pytest.mark.parametrize("raw", [" 1", "+1", "1_0", "٣", "²", "", "1.0", "abc", None, True])
def test_anything_else_is_invalid_input_naming_experiment_id(raw: object) -> None:
    # int() reads " 1", "+1", "1_0" and "٣" as ids the client never sent.
    with pytest.raises(InvalidInput, match="is not an experiment id") as info:
        experiment_id(raw)  # type: ignore[arg-type]
    assert info.value.field == "experiment_id"
