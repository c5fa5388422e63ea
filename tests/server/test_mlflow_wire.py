"""What the MLflow wire format reads from the client: ids are numbers, written plainly."""

from __future__ import annotations

import math

import pytest

from loopline.errors import InvalidInput
from loopline.server.mlflow_wire import experiment_id, view_type, wire_double, wire_int64


@pytest.mark.parametrize(("raw", "expected"), [("12", 12), ("0", 0), (7, 7), ("007", 7)])
def test_an_experiment_id_is_read_as_its_number(raw: str | int, expected: int) -> None:
    assert experiment_id(raw) == expected


@pytest.mark.parametrize("raw", [" 1", "+1", "1_0", "٣", "²", "", "1.0", "abc", None, True])
def test_anything_else_is_invalid_input_naming_experiment_id(raw: object) -> None:
    # int() reads " 1", "+1", "1_0" and "٣" as ids the client never sent.
    with pytest.raises(InvalidInput, match="is not an experiment id") as info:
        experiment_id(raw)  # type: ignore[arg-type]
    assert info.value.field == "experiment_id"


#: Strings a double field may hold on MLflow's wire, and what they read as.
GOOD_DOUBLES = [
    ("0", 0.0),
    ("-0", -0.0),
    ("2.5", 2.5),
    ("-1e3", -1000.0),
    ("1E-2", 0.01),
    ("NaN", math.nan),
    ("Infinity", math.inf),
    ("-Infinity", -math.inf),
]
#: What int() or float() would read as a number the client never sent, and other strays.
BAD_DOUBLES = [
    "1_000", "٣", " 5 ", "5 ", "+3", ".5", "5.", "01", "0x10", "", "nan", "inf", "-inf",
    "infinity", "INF", "NAN", "1e400", "\u22123", "1,5", True, False, None, [1], {"v": 1},
]  # fmt: skip
GOOD_INT64 = [("0", 0), ("7", 7), ("-3", -3), ("007", 7), (12, 12), (-(2**63), -(2**63))]
BAD_INT64 = [
    " 7 ", "+3", "1_0", "٣", "²", "1.0", "1e3", "", "-", "0x1", True, False, 1.0, 2.5, None,
]  # fmt: skip


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or (
        a == b and math.copysign(1, a) == math.copysign(1, b)
    )


@pytest.mark.parametrize(("raw", "expected"), [*GOOD_DOUBLES, (3, 3.0), (0.5, 0.5)])
def test_a_double_is_a_json_number_or_protobufs_spelling(raw: object, expected: float) -> None:
    assert _same(wire_double(raw), expected)


@pytest.mark.parametrize("raw", BAD_DOUBLES, ids=repr)
def test_anything_else_is_not_a_double(raw: object) -> None:
    with pytest.raises(ValueError, match=r"is not a number|beyond the range of a double"):
        wire_double(raw)


@pytest.mark.parametrize(("raw", "expected"), GOOD_INT64)
def test_an_int64_is_a_json_integer_or_its_digits(raw: object, expected: int) -> None:
    assert wire_int64(raw) == expected


@pytest.mark.parametrize("raw", BAD_INT64, ids=repr)
def test_anything_else_is_not_an_int64(raw: object) -> None:
    with pytest.raises(ValueError, match="is not an integer"):
        wire_int64(raw)


def test_what_the_wire_takes_protobufs_own_parser_takes_and_reads_alike() -> None:
    # Nothing looser than MLflow's server: it parses requests with protobuf's json_format.
    json_format = pytest.importorskip("google.protobuf.json_format")
    service = pytest.importorskip("mlflow.protos.service_pb2")
    for raw, expected in GOOD_DOUBLES:
        parsed = json_format.ParseDict({"key": "k", "value": raw}, service.LogMetric())
        assert _same(parsed.value, expected), raw
    for raw, number in GOOD_INT64:
        parsed = json_format.ParseDict({"key": "k", "value": 1, "step": raw}, service.LogMetric())
        assert parsed.step == number, raw
    for name, view in [("ACTIVE_ONLY", 1), ("DELETED_ONLY", 2), ("ALL", 3), (2, 2), ("3", 3)]:
        parsed = json_format.ParseDict({"run_view_type": name}, service.SearchRuns())
        assert parsed.run_view_type == view, name


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("ACTIVE_ONLY", "active"), ("DELETED_ONLY", "deleted"), ("ALL", "all"), (1, "active"),
     (2, "deleted"), (3, "all"), ("2", "deleted"), (None, None)],
)  # fmt: skip
def test_a_view_type_is_its_name_or_its_number(raw: object, expected: str | None) -> None:
    assert view_type(raw) == expected


@pytest.mark.parametrize(
    "raw", ["DELETED_ONLYY", "all", "", "\x00", "x" * 200, 0, 4, "4", " 2", "+2", True, 2.0]
)
def test_an_unknown_view_type_is_refused_naming_the_accepted_ones(raw: object) -> None:
    with pytest.raises(ValueError, match="ACTIVE_ONLY, DELETED_ONLY or ALL") as info:
        view_type(raw)
    assert len(str(info.value)) < 200  # a fuzzer's megabyte is not echoed back
