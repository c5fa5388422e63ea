"""Instances of the user's own classes, Enum members, namedtuples and OrderedDicts that a
step reads are part of its cache key.

Before, all of them were left out: ``CFG = TrainConfig(threshold=0.5)`` changed to 0.7
was answered with the output made with 0.5 (a stale cache hit).
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import functools
import http
import io
import json
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from textwrap import dedent
from typing import Any

import numpy as np
import pytest

from loopline.training import step_globals
from loopline.training.canonical_encoding import (
    MAX_DEPTH,
    MAX_ITEMS,
    GlobalTooLarge,
    canonical,
)
from loopline.training.step_globals import read_globals
from tests.training.step_keys import outputs_under_hash_seeds

_HERE = __name__


@dataclasses.dataclass
class TrainConfig:
    threshold: float
    n: int = 100


@dataclasses.dataclass(frozen=True)
class FrozenConfig:
    threshold: float
    tags: tuple[str, ...] = ("a",)


@dataclasses.dataclass(slots=True)
class SlotConfig:
    threshold: float
    weights: Any = None


class Scaler:
    def __init__(self, k: float) -> None:
        self.k = k

    def apply(self, x: float) -> float:
        return x * self.k


class OtherScaler:
    def __init__(self, k: float) -> None:
        self.k = k


class Point2:
    __slots__ = ("x", "y")

    def __init__(self, x: float) -> None:
        self.x = x  # y stays unset


class Node:
    def __init__(self, name: str) -> None:
        self.name = name
        self.children: list[Node] = []
        self.parent: Node | None = None


class Mode(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


Pair = collections.namedtuple("Pair", "a b")


class Typed(typing.NamedTuple):
    a: int
    b: int = 2


def _double(x: float) -> float:
    return x * 2


def _triple(x: float) -> float:
    return x * 3


class Pipeline:
    def __init__(self, fn: Any) -> None:
        self.fn = fn


class Table(dict):  # type: ignore[type-arg]
    """The user's own subclass of dict: its items are not in its __dict__."""


CFG: Any = TrainConfig(0.5)


def _reads_cfg() -> Any:
    return CFG


def _keys(monkeypatch: pytest.MonkeyPatch, value: Any) -> dict[str, str]:
    """read_globals of a step reading the global CFG bound to ``value``."""
    monkeypatch.setattr(sys.modules[__name__], "CFG", value)
    return read_globals(_reads_cfg)


def _digest(monkeypatch: pytest.MonkeyPatch, value: Any) -> str | None:
    return _keys(monkeypatch, value).get(f"{_HERE}.CFG")


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda t: TrainConfig(threshold=t), "threshold"),
        (lambda t: FrozenConfig(threshold=t), "threshold"),
        (lambda t: SlotConfig(threshold=t), "threshold"),
        (lambda t: Scaler(t), "k"),
        (lambda t: Point2(t), "x"),
    ],
    ids=["dataclass", "frozen-dataclass", "slots-dataclass", "plain-class", "slots-class"],
)
def test_an_instance_counts_by_its_state_and_a_change_back_restores_the_key(
    monkeypatch: pytest.MonkeyPatch, make: Callable[[float], Any], field: str
) -> None:
    first = _keys(monkeypatch, make(0.5))
    assert first[f"{_HERE}.CFG"].startswith("data:")
    changed = _keys(monkeypatch, make(0.7))
    assert changed[f"{_HERE}.CFG"] != first[f"{_HERE}.CFG"]
    assert _keys(monkeypatch, make(0.5)) == first  # an equal instance rebuilt: a hit


def test_an_instance_counts_its_class_by_the_class_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    reads = _keys(monkeypatch, Scaler(2))
    cls = f"{_HERE}.CFG.__refs__[0]"
    assert sorted(reads) == [f"{_HERE}.CFG", cls, f"{cls}.__init__", f"{cls}.apply"]
    assert reads[cls] == f"class:{_HERE}.Scaler"
    assert reads[f"{cls}.apply"].startswith("code:")
    # The same state in another class of the same shape is another value.
    other = _keys(monkeypatch, OtherScaler(2))
    assert other[f"{_HERE}.CFG"] != reads[f"{_HERE}.CFG"]


def test_a_dataclass_field_default_and_the_instance_both_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reads = _keys(monkeypatch, TrainConfig(0.5))
    assert reads[f"{_HERE}.CFG.__refs__[0]"] == f"class:{_HERE}.TrainConfig"
    assert f"{_HERE}.CFG.__refs__[0].n" in reads  # the class attribute (the default)
    assert _digest(monkeypatch, TrainConfig(0.5, n=7)) != reads[f"{_HERE}.CFG"]


def test_an_unset_slot_is_its_own_value(monkeypatch: pytest.MonkeyPatch) -> None:
    unset = _digest(monkeypatch, Point2(1.0))
    both = Point2(1.0)
    both.y = None
    assert unset is not None
    assert _digest(monkeypatch, both) != unset


def test_nested_instances_count_and_a_cycle_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    def tree(name: str) -> Node:
        root, child = Node("root"), Node(name)
        root.children.append(child)
        child.parent = root  # root.children[0].parent is root
        return root

    first = _digest(monkeypatch, tree("a"))
    assert first is not None
    assert _digest(monkeypatch, tree("b")) != first
    assert _digest(monkeypatch, tree("a")) == first
    loop = Node("self")
    loop.parent = loop
    assert _digest(monkeypatch, loop) is not None
    assert _digest(monkeypatch, loop) != _digest(monkeypatch, Node("self"))
    outer = _digest(monkeypatch, SlotConfig(0.5, weights=TrainConfig(0.5)))
    assert outer != _digest(monkeypatch, SlotConfig(0.5, weights=TrainConfig(0.7)))


def test_an_instance_in_containers_cells_partials_and_defaults_counts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    listed = _digest(monkeypatch, [TrainConfig(0.5), {"k": Scaler(1)}])
    assert listed is not None
    assert _digest(monkeypatch, [TrainConfig(0.7), {"k": Scaler(1)}]) != listed

    def make(cfg: Any) -> Callable[[], Any]:
        return lambda: cfg

    cell = f"{_HERE}.test_an_instance_in_containers_cells_partials_and_defaults_counts"
    cell += ".<locals>.make.<locals>.<lambda>.__closure__.cfg"
    assert read_globals(make(Scaler(1)))[cell] != read_globals(make(Scaler(2)))[cell]
    part = functools.partial(_double, Scaler(1))
    monkeypatch.setattr(sys.modules[__name__], "CFG", part)
    assert f"{_HERE}.CFG.args[0]" in read_globals(_reads_cfg)

    def helper(x: float, cfg: Any = Scaler(3)) -> Any:
        return x, cfg

    monkeypatch.setattr(sys.modules[__name__], "CFG", helper)
    reads = read_globals(_reads_cfg)
    assert reads[f"{_HERE}.CFG.__defaults__"].startswith("data:")
    assert reads[f"{_HERE}.CFG.__defaults__.__refs__[0]"] == f"class:{_HERE}.Scaler"


def test_a_function_an_instance_holds_counts_by_its_code(monkeypatch: pytest.MonkeyPatch) -> None:
    reads = _keys(monkeypatch, Pipeline(_double))
    assert reads[f"{_HERE}.CFG.__refs__[1]"].startswith("code:")
    tripled = _keys(monkeypatch, Pipeline(_triple))
    assert tripled[f"{_HERE}.CFG.__refs__[1]"] != reads[f"{_HERE}.CFG.__refs__[1]"]
    # A function of another package cannot be counted: the instance is left out.
    assert f"{_HERE}.CFG" not in _keys(monkeypatch, Pipeline(json.dumps))


class _Recorder:
    """Records every call of the methods the key must never call; they also raise."""

    calls: typing.ClassVar[list[str]] = []

    def __init__(self, v: float) -> None:
        object.__setattr__(self, "v", v)

    def __getattribute__(self, name: str) -> Any:
        _Recorder.calls.append(f"getattribute {name}")
        raise RuntimeError("__getattribute__ called")

    def __getattr__(self, name: str) -> Any:
        _Recorder.calls.append(f"getattr {name}")
        raise RuntimeError("__getattr__ called")

    def __repr__(self) -> str:
        _Recorder.calls.append("repr")
        raise RuntimeError("__repr__ called")

    def __eq__(self, other: object) -> bool:
        _Recorder.calls.append("eq")
        raise RuntimeError("__eq__ called")

    def __hash__(self) -> int:
        _Recorder.calls.append("hash")
        raise RuntimeError("__hash__ called")

    def __getstate__(self) -> Any:
        _Recorder.calls.append("getstate")
        raise RuntimeError("__getstate__ called")

    def __reduce__(self) -> Any:
        _Recorder.calls.append("reduce")
        raise RuntimeError("__reduce__ called")

    @property
    def doubled(self) -> float:
        _Recorder.calls.append("property")
        raise RuntimeError("property called")


def test_no_method_or_property_of_the_instance_is_called(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _Recorder.calls.clear()
    first = _digest(monkeypatch, _Recorder(0.5))
    nested = _digest(monkeypatch, [_Recorder(0.5), Scaler(_Recorder(1))])  # type: ignore[arg-type]
    monkeypatch.setattr(sys.modules[__name__], "CFG", _Recorder(0.5))
    chained = read_globals(lambda: CFG.v)  # an attribute read: CFG is no module
    assert _Recorder.calls == []
    assert first is not None and nested is not None
    assert chained[f"{_HERE}.CFG"] == first
    assert _digest(monkeypatch, _Recorder(0.7)) != first
    assert _Recorder.calls == []


def test_an_instance_holding_what_cannot_be_counted_is_left_out_whole(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from sklearn.linear_model import LogisticRegression

    with (tmp_path / "f.txt").open("w") as handle:
        for value in [
            SlotConfig(0.5, weights=LogisticRegression()),
            TrainConfig(0.5, n=handle),  # type: ignore[arg-type]
            [TrainConfig(0.5), Scaler(io.StringIO())],
            Pipeline(object()),
            Table(a=1),  # a base written in C: its items are not in its __dict__
        ]:
            reads = _keys(monkeypatch, value)
            assert reads == {}, value  # no entry: not the instance, not its class


def test_instances_of_other_packages_classes_are_left_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import argparse
    import fractions

    for value in [argparse.Namespace(a=1), fractions.Fraction(1, 3), Path("x")]:
        assert _keys(monkeypatch, value) == {}


def test_an_enum_member_counts_by_class_name_and_value(monkeypatch: pytest.MonkeyPatch) -> None:
    fast = _keys(monkeypatch, Mode.FAST)
    assert fast[f"{_HERE}.CFG.__refs__[0]"] == f"class:{_HERE}.Mode"  # an own Enum's class
    assert _digest(monkeypatch, Mode.SLOW) != fast[f"{_HERE}.CFG"]
    assert _digest(monkeypatch, Level.LOW) != _digest(monkeypatch, 1)
    assert _digest(monkeypatch, Level.LOW) != _digest(monkeypatch, Level.HIGH)
    # Another package's Enum: by name and value, its class not read.
    ok = _keys(monkeypatch, http.HTTPStatus.OK)
    assert list(ok) == [f"{_HERE}.CFG"]
    assert ok != _keys(monkeypatch, http.HTTPStatus.CREATED)
    assert _digest(monkeypatch, {Mode.FAST: 1.0}) != _digest(monkeypatch, {Mode.SLOW: 1.0})


def test_an_own_enum_member_value_changed_changes_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def members(slow: str) -> Any:
        space = {"FAST": "fast", "SLOW": slow, "__module__": _HERE, "__qualname__": "Mode"}
        return enum.Enum("Mode", space)

    first, second = members("slow"), members("slower")
    assert _digest(monkeypatch, first.SLOW) != _digest(monkeypatch, second.SLOW)
    assert _digest(monkeypatch, first.SLOW) == _digest(monkeypatch, members("slow").SLOW)


def test_namedtuples_ordered_dicts_tuples_and_dicts_encode_differently() -> None:
    values = [
        (1, 2),
        Pair(1, 2),
        Typed(1, 2),
        collections.namedtuple("Pair", "a c")(1, 2),  # other field names
        {"a": 1, "b": 2},
        collections.OrderedDict(a=1, b=2),
        collections.OrderedDict(b=2, a=1),
        [1, 2],
    ]
    encoded = [canonical(v) for v in values]
    assert len(set(encoded)) == len(values)
    assert canonical({"b": 2, "a": 1}) == canonical({"a": 1, "b": 2})  # a dict's order: not
    assert canonical(Pair(1, 2)) == canonical(Pair(1, 2))
    assert canonical(Pair(1, 2)) != canonical(Pair(1, 3))
    # The plain encodings stay those stored before.
    assert canonical((1, 2)) == b"t2:i1;i2;"
    assert canonical({"a": 1}) == b"d1:s1:ai1;"


def test_an_own_namedtuple_counts_its_class(monkeypatch: pytest.MonkeyPatch) -> None:
    reads = _keys(monkeypatch, Typed(1))
    assert reads[f"{_HERE}.CFG.__refs__[0]"] == f"class:{_HERE}.Typed"
    assert _digest(monkeypatch, Typed(1, 3)) != reads[f"{_HERE}.CFG"]


def test_the_bounds_hold_for_instances(monkeypatch: pytest.MonkeyPatch) -> None:
    wide = Scaler(1)
    vars(wide).update({f"a{i}": i for i in range(MAX_ITEMS // 2)})
    monkeypatch.setattr(sys.modules[__name__], "CFG", wide)
    with pytest.raises(GlobalTooLarge, match=f"more than {MAX_ITEMS} items"):
        read_globals(_reads_cfg)
    deep = Node("leaf")
    for i in range(MAX_DEPTH):
        up = Node(str(i))
        up.parent = deep
        deep = up
    monkeypatch.setattr(sys.modules[__name__], "CFG", deep)
    with pytest.raises(GlobalTooLarge, match=f"deeper than {MAX_DEPTH} levels"):
        read_globals(_reads_cfg)


def test_an_instance_is_not_plain_data_for_canonical() -> None:
    # canonical() has no "own code": an instance of any class stays out there.
    with pytest.raises(ValueError, match="not plain data"):
        canonical(Scaler(1))


def test_an_instance_key_is_the_same_in_every_process(tmp_path: Path) -> None:
    (tmp_path / "hashseed_inst.py").write_text(
        dedent(
            """
            import dataclasses
            import enum

            import numpy as np

            import loopline as ll


            class Mode(enum.Enum):
                FAST = "fast"


            @dataclasses.dataclass(frozen=True)
            class Cfg:
                threshold: float
                tags: frozenset
                weights: dict
                table: object
                mode: Mode = Mode.FAST


            CFG = Cfg(0.5, frozenset({"x", "y", "z"}), {"b": 1, "a": 2}, np.arange(3.0))


            @ll.step
            def use(n: int) -> float:
                return n * CFG.threshold
            """
        )
    )
    script = (
        "import json, hashseed_inst\n"
        "from loopline.training.step_globals import read_globals\n"
        "print(json.dumps(read_globals(hashseed_inst.use.fn)))\n"
    )
    outputs = outputs_under_hash_seeds(tmp_path, script, ("1", "2"))
    assert outputs[0] == outputs[1]
    assert outputs[0]["hashseed_inst.CFG"].startswith("data:")
    assert outputs[0]["hashseed_inst.CFG.__refs__[0]"] == "class:hashseed_inst.Cfg"


def test_a_flow_run_with_python_m_has_its_package_as_own_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As ``python -m tests.training.flow``: the step's module is __main__, with a spec
    # naming the module it runs as.
    main = types.ModuleType("__main__")
    main.__spec__ = types.SimpleNamespace(name="tests.training.flow")  # type: ignore[assignment]
    main.__file__ = str(Path(__file__).with_name("flow.py"))
    monkeypatch.setitem(sys.modules, "__main__", main)
    fn = types.FunctionType(_reads_cfg.__code__, vars(main), "step")
    assert fn.__module__ == "__main__"
    own = step_globals.OwnCode(fn)
    assert own("__main__") and own("tests.training.pipeline_steps") and not own("numpy")
    monkeypatch.setattr(main, "__spec__", None)  # a script: only __main__
    assert not step_globals.OwnCode(fn)("tests.training.pipeline_steps")


def test_a_numpy_array_in_an_instance_counts_by_content(monkeypatch: pytest.MonkeyPatch) -> None:
    first = _digest(monkeypatch, SlotConfig(0.5, weights=np.arange(3.0)))
    assert first is not None
    assert _digest(monkeypatch, SlotConfig(0.5, weights=np.arange(4.0))) != first


def test_own_functions_and_classes_in_a_container_count_by_their_rules(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    doubled = _keys(monkeypatch, [_double, Scaler])
    assert doubled[f"{_HERE}.CFG"].startswith("data:")
    assert doubled[f"{_HERE}.CFG.__refs__[0]"].startswith("code:")
    assert doubled[f"{_HERE}.CFG.__refs__[1]"] == f"class:{_HERE}.Scaler"
    # Another function in the list: its code counts, so the key changes.
    tripled = _keys(monkeypatch, [_triple, Scaler])
    assert tripled[f"{_HERE}.CFG.__refs__[0]"] != doubled[f"{_HERE}.CFG.__refs__[0]"]
    assert _keys(monkeypatch, {"a": _double, "b": Scaler}) != doubled
    assert _keys(monkeypatch, [_double, Scaler]) == doubled  # the same list again: a hit
    # A function of another package cannot be counted: the container is left out.
    assert _keys(monkeypatch, [_double, json.dumps]) == {}
