"""The canonical encoding of a value a step reads, and its bounds.

:func:`loopline.training.step_globals.read_globals` decides *which* values a step reads
count toward its cache key; this module turns one such value into bytes that are the same
in every process (see the rules in that module's docstring): plain data, NumPy and pandas
values, Enum members, namedtuples, OrderedDicts and instances of the user's own classes,
read without calling any of the user's code, and refused past :data:`MAX_ITEMS`,
:data:`MAX_BYTES`, :data:`MAX_DEPTH` and :data:`MAX_ARRAY_BYTES`
(:class:`GlobalTooLarge`). It is separate because the encoding is a concern of its own:
it knows nothing of bytecode or of which module is the user's own (it is told, through
``own``), and :func:`canonical` serves callers that have no step at all.

Example:
    >>> canonical([1, "a"]) == canonical([1, "a"])
    True
"""

from __future__ import annotations

import collections
import enum
import functools
import struct
import sys
import types
from collections.abc import Callable
from typing import Any, TypeGuard, TypeVar

import blake3

from loopline.training.steps import Step

#: At most this many values (containers and scalars) in one global's canonical form.
MAX_ITEMS = 100_000
#: At most this many bytes in one global's canonical form (4 MiB).
MAX_BYTES = 4 * 1024 * 1024
#: At most this many levels of containers inside containers (a list holding itself has no end).
MAX_DEPTH = 32
#: At most this many bytes of NumPy array data (the arrays and pandas columns) in one
#: global (256 MiB). The data is not copied into the canonical form but hashed with BLAKE3
#: in place: ~40 ms per 100 MiB on one core (0.09-0.13 s measured at 256 MiB), so the cap
#: keeps the cost of a key near 0.1 s.
#: Data past that belongs in an argument or a dataset, whose digest is computed once.
MAX_ARRAY_BYTES = 256 * 1024 * 1024

_CONTAINER_TAGS: dict[type, bytes] = {
    list: b"l",
    tuple: b"t",
    dict: b"d",
    set: b"S",
    frozenset: b"Z",
}
_LRU_WRAPPER = type(functools.cache(len))
_T = TypeVar("_T")
# The size of an object's layout with no field of its own (an instance of ``object``) and
# of each pointer field (a slot, the __dict__ or __weakref__ pointer) added to it.
_OBJECT_SIZE = object.__basicsize__
_POINTER = struct.calcsize("P")


class GlobalTooLarge(Exception):
    """A global a step reads is too large (or too deep) to digest on every run.

    Example:
        >>> str(GlobalTooLarge("m.TABLE", "more than 100000 items"))
        'm.TABLE: more than 100000 items'
    """

    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"{name}: {why}")
        self.name = name
        self.why = why


class _NotPlain(Exception):
    """The value holds something other than plain data (it is left out)."""


def canonical(value: Any) -> bytes:
    """The canonical bytes of a plain-data value (NumPy and pandas values, Enum members,
    namedtuples and OrderedDicts included, an array as a digest of its bytes): the same in
    every process. An instance of a class is not plain data here: only a step's key knows
    which classes are the user's own code.

    Raises ValueError when ``value`` is not plain data, :class:`GlobalTooLarge` past the
    bounds.

    Example:
        >>> canonical({"b": 1, "a": 1.5}) == canonical({"a": 1.5, "b": 1})
        True
        >>> canonical({1, 2}) != canonical([1, 2]), canonical(1) != canonical(True)
        (True, True)
    """
    try:
        return _Encoder("value").encode(value, 0)
    except _NotPlain as exc:
        raise ValueError(f"{type(value).__name__} is not plain data: {exc}") from None


def _is(value: object, kind: type[_T]) -> TypeGuard[_T]:
    """``isinstance(value, kind)`` without asking ``value``: isinstance falls back to
    ``value.__class__``, which a ``__getattribute__`` of the user's class answers."""
    return issubclass(type(value), kind)


def _type_name(kind: type) -> str:
    """``<module>.<qualified name>`` of a class, read through ``type``'s own descriptors
    (a metaclass's property of the same name is not called)."""
    qualname = vars(type)["__qualname__"].__get__(kind, type(kind))
    return f"{vars(kind).get('__module__')}.{qualname}"


def _instance_dict(obj: Any) -> dict[Any, Any] | None:
    """``obj.__dict__`` read by its class's ``__dict__`` descriptor, as CPython's own
    (no ``__getattribute__`` or property of the user's runs); None when it has none."""
    for cls in type(obj).__mro__:
        descriptor = vars(cls).get("__dict__")
        if descriptor is not None:
            if type(descriptor) is not types.GetSetDescriptorType:  # the user's __dict__
                raise _NotPlain(f"{_type_name(type(obj))}: a __dict__ of its own")
            state = descriptor.__get__(obj, type(obj))
            if type(state) is not dict:
                raise _NotPlain(f"{_type_name(type(obj))}: its __dict__ is not a dict")
            return state
    return None


def _slots(kind: type) -> list[tuple[str, Any]] | None:
    """The slot descriptors of ``kind`` and its bases, in method resolution order; None
    when its instances hold what neither their ``__dict__`` nor these slots hold (a base
    written in C: dict, ndarray, Exception), known by the size of their layout."""
    mro = kind.__mro__
    if mro[-1] is not object or kind.__itemsize__:
        return None
    found = [
        (name, member)
        for cls in mro[:-1]
        for name, member in vars(cls).items()
        if type(member) is types.MemberDescriptorType and member.__objclass__ is cls
    ]
    size = _OBJECT_SIZE + _POINTER * len(found)
    # A __dict__ or __weakref__ pointer inside the object (3.11 keeps the dict before it).
    size += _POINTER * ((kind.__dictoffset__ > 0) + (kind.__weakrefoffset__ > 0))
    return found if kind.__basicsize__ == size else None


def _namedtuple_fields(kind: type) -> tuple[str, ...] | None:
    """The field names of a namedtuple class (``collections.namedtuple``,
    ``typing.NamedTuple``: a direct subclass of tuple with ``_fields`` and no
    ``__dict__``); None for any other class."""
    space = vars(kind)
    fields = space.get("_fields")
    if kind.__bases__ != (tuple,) or space.get("__slots__") != () or type(fields) is not tuple:
        return None
    return fields if all(type(f) is str for f in fields) else None


def _enum_value(member: enum.Enum) -> Any:
    """An Enum member's value, from its own dict (``.value`` is a property)."""
    state = _instance_dict(member)
    return None if state is None else state.get("_value_")


def _unwrap(value: Any) -> Any:
    """The function behind a step (a step calling a step runs its function) or behind
    ``functools.cache`` / ``lru_cache``; else ``value`` itself."""
    if _is(value, Step):
        return value.fn
    # Only functools' own cache wrapper: getattr on an arbitrary object may run its code.
    if _is(value, _LRU_WRAPPER):
        return _unwrap(value.__wrapped__)
    return value


class _Encoder:
    """Encodes one value canonically, counting items and bytes against the bounds.

    With ``own`` (which modules are the user's own code), instances of the user's own
    classes are data too; their classes, and the functions and classes of the user's own
    code the value holds (in a container or an instance's state), are collected in
    :attr:`refs` for the reader to count by their own rules once the whole value is
    encoded. The encoding names each by its place in :attr:`refs`.
    """

    def __init__(self, name: str, own: Callable[[object], bool] | None = None) -> None:
        self.name = name
        self.items = 0
        self.size = 0
        self.array_bytes = 0
        self.own = own
        self.refs: list[Any] = []
        self._ref_places: dict[int, int] = {}  # by id: a class's __hash__ is the user's code
        self._instances: list[int] = []  # the ids of the instances being encoded, outermost first

    def _count(self, size: int) -> None:
        self.items += 1
        self.size += size
        if self.items > MAX_ITEMS:
            raise GlobalTooLarge(self.name, f"more than {MAX_ITEMS} items")
        if self.size > MAX_BYTES:
            raise GlobalTooLarge(self.name, f"more than {MAX_BYTES} bytes")

    def encode(self, value: Any, depth: int) -> bytes:
        kind = type(value)
        if value is None:
            out = b"n"
        elif kind is bool:
            out = b"T" if value else b"F"
        elif kind is int:
            out = b"i%x;" % value  # hex: str() of a huge int is refused past 4300 digits
        elif kind is float:
            out = b"f" + repr(value).encode() + b";"
        elif kind is str or kind is bytes:
            if len(value) > MAX_BYTES:  # before encoding a huge string
                raise GlobalTooLarge(self.name, f"more than {MAX_BYTES} bytes")
            data = value.encode("utf-8", "surrogatepass") if kind is str else value
            out = (b"s%d:" if kind is str else b"b%d:") % len(data) + data
        else:
            numeric = self._numeric(value, depth)
            return self._container(value, depth) if numeric is None else numeric
        self._count(len(out))
        return out

    def _numeric(self, value: Any, depth: int) -> bytes | None:
        """A NumPy array or scalar, or a pandas frame, series or index; else None.

        numpy and pandas are looked up in ``sys.modules``: a value of theirs exists only
        once they are imported, and the key of other steps does not import them.
        """
        np = sys.modules.get("numpy")
        if np is not None and (type(value) is np.ndarray or _is(value, np.generic)):
            return self._array(np.asarray(value), depth)
        pd = sys.modules.get("pandas")
        if pd is None:
            return None
        if type(value) is pd.DataFrame:
            head = self._head(b"D%d,%d:" % value.shape, depth)
            columns = [self._values(value.iloc[:, i], depth + 1) for i in range(value.shape[1])]
            parts = [self._index(value.columns, depth + 1), self._index(value.index, depth + 1)]
            return head + b"".join(parts + columns)
        if type(value) is pd.Series:
            head = self._head(b"P", depth)
            name = self.encode(value.name, depth + 1)
            return (
                head + name + self._index(value.index, depth + 1) + self._values(value, depth + 1)
            )
        if _is(value, pd.Index):  # its subclasses are pandas' own kinds of index
            return self._index(value, depth)
        return None

    def _head(self, head: bytes, depth: int) -> bytes:
        """Count a container-like node's header, refusing one nested too deep."""
        if depth >= MAX_DEPTH:
            raise GlobalTooLarge(self.name, f"nested deeper than {MAX_DEPTH} levels")
        self._count(len(head))
        return head

    def _array(self, arr: Any, depth: int) -> bytes:
        """An ndarray by dtype, shape and the BLAKE3 of its bytes (C order); an object
        array by its elements, each plain data."""
        shape = b",".join(b"%d" % n for n in arr.shape)
        if arr.dtype.hasobject:
            if arr.dtype.kind != "O":
                raise _NotPlain("a structured array holding objects")
            self._fits(arr.size)
            head = self._head(b"AO%s;%d:" % (shape, arr.size), depth)
            return head + b"".join(self.encode(v, depth + 1) for v in arr.ravel().tolist())
        # Field names and types too: the .str of a structured dtype is only its size.
        dtype = (arr.dtype.str if arr.dtype.fields is None else str(arr.dtype.descr)).encode()
        head = self._head(b"A%d:%s%s:" % (len(dtype), dtype, shape), depth)
        self.array_bytes += arr.nbytes
        if self.array_bytes > MAX_ARRAY_BYTES:
            raise GlobalTooLarge(self.name, f"more than {MAX_ARRAY_BYTES} bytes of array data")
        # A uint8 view of the C-ordered data: datetime64 and structured dtypes have no
        # buffer format of their own. One thread: other steps and workers share the cores.
        data = sys.modules["numpy"].ascontiguousarray(arr).reshape(-1).view("uint8")
        return head + blake3.blake3(data, max_threads=1).digest()

    def _fits(self, elements: int) -> None:
        """Refuse ``elements`` more items before building them: turning a column of
        millions of strings into Python objects would cost more than the step."""
        if self.items + elements > MAX_ITEMS:
            raise GlobalTooLarge(self.name, f"more than {MAX_ITEMS} items")

    def _index(self, index: Any, depth: int) -> bytes:
        """A pandas index by its names, dtype and values; a RangeIndex by its range."""
        pd = sys.modules["pandas"]
        names = self.encode(list(index.names), depth + 1)
        if type(index) is pd.RangeIndex:
            head = self._head(b"R%x,%x,%x:" % (index.start, index.stop, index.step), depth)
            return head + names
        return self._head(b"X", depth) + names + self._values(index, depth + 1)

    def _values(self, values: Any, depth: int) -> bytes:
        """The values of a series, column or index, with their dtype: a NumPy dtype by its
        array; an extension dtype (nullable, string, categorical, tz-aware) by its parts
        or, failing those, element by element as plain data (a missing value as None)."""
        np, pd = sys.modules["numpy"], sys.modules["pandas"]
        dtype = values.dtype
        if isinstance(dtype, np.dtype):
            if dtype.kind == "O":
                self._fits(len(values))  # before a MultiIndex makes its tuples
            return self._array(np.asarray(values), depth)
        head = self._head(b"E" + self.encode(str(dtype), depth + 1), depth)
        array = values.array
        if isinstance(dtype, pd.CategoricalDtype):
            ordered = self.encode(bool(dtype.ordered), depth + 1)
            categories = self._index(dtype.categories, depth + 1)
            return head + ordered + categories + self._array(array.codes, depth + 1)
        if isinstance(dtype, pd.DatetimeTZDtype):  # the unit and zone are in str(dtype)
            return head + self._array(array.asi8, depth + 1)
        self._fits(len(array))  # before a column of strings makes its Python objects
        try:
            objects = array.to_numpy(dtype=object, na_value=None)
        except (TypeError, ValueError) as exc:  # an extension type of another library
            raise _NotPlain(f"{dtype} values: {exc}") from None
        return head + self._array(objects, depth + 1)

    def _container(self, value: Any, depth: int) -> bytes:
        kind: type = type(value)
        tag = _CONTAINER_TAGS.get(kind)
        if tag is None:
            return self._object(value, depth)
        head = self._head(tag + b"%d:" % len(value), depth)
        if kind is dict:
            pairs = [
                (self.encode(k, depth + 1), self.encode(v, depth + 1)) for k, v in value.items()
            ]
            return head + b"".join(k + v for k, v in sorted(pairs))
        parts = [self.encode(v, depth + 1) for v in value]
        body = b"".join(sorted(parts) if kind in (set, frozenset) else parts)
        return head + body

    def _object(self, value: Any, depth: int) -> bytes:
        """An Enum member, a namedtuple, an OrderedDict, an instance of the user's own
        class, and (for a step's key: ``own`` given) a function or class of the user's own
        code, in a container or an instance's state; raises _NotPlain for anything else."""
        kind: type = type(value)
        if issubclass(kind, enum.Enum):
            return self._enum(value, depth)
        if kind is collections.OrderedDict:  # its order is part of its value
            head = self._head(b"O%d:" % len(value), depth)
            pairs = [
                self.encode(k, depth + 1) + self.encode(v, depth + 1) for k, v in value.items()
            ]
            return head + b"".join(pairs)
        fields = _namedtuple_fields(kind)
        if fields is not None:
            head = self._head(b"N%s;" % self._ref(kind), depth)
            names = self.encode(_type_name(kind), depth + 1) + self.encode(fields, depth + 1)
            return head + names + self.encode(tuple(tuple.__iter__(value)), depth + 1)
        if self.own is not None:  # a step's key: a function or class counts by its rule
            helper = _unwrap(value)
            if type(helper) is types.FunctionType and self._own(helper.__module__):
                return b"c%s;" % self._ref(helper, always=True) + self.encode(
                    f"{helper.__module__}.{helper.__qualname__}", depth + 1
                )
            if issubclass(kind, type) and self._own(vars(value).get("__module__")):
                return b"C%s;" % self._ref(value) + self.encode(_type_name(value), depth + 1)
        slots = _slots(kind) if self._own(vars(kind).get("__module__")) else None
        if slots is None:
            raise _NotPlain(_type_name(kind))
        return self._instance(value, slots, depth)

    def _own(self, module: object) -> bool:
        return self.own is not None and self.own(module)

    def _ref(self, item: Any, always: bool = False) -> bytes:
        """The place of ``item`` (a function, or a class of the user's own code) in
        :attr:`refs`, added the first time; ``-`` for a class of another package."""
        if not always and not self._own(vars(item).get("__module__")):
            return b"-"
        place = self._ref_places.get(id(item))
        if place is None:
            place = self._ref_places[id(item)] = len(self.refs)
            self.refs.append(item)
        return b"%d" % place

    def _enum(self, member: enum.Enum, depth: int) -> bytes:
        """An Enum member (of any package) by its class's name, its name and its value."""
        kind = type(member)
        state = _instance_dict(member) or {}
        head = self._head(b"e%s;" % self._ref(kind), depth)
        name = self.encode(_type_name(kind), depth + 1) + self.encode(
            state.get("_name_"), depth + 1
        )
        return head + name + self.encode(_enum_value(member), depth + 1)

    def _instance(self, obj: Any, slots: list[tuple[str, Any]], depth: int) -> bytes:
        """An instance of the user's own class by its class and its state: its
        ``__dict__`` as a dict, then its slots in order (``u`` for an unset one). An
        instance met again inside itself is ``@<how many instances out>;``."""
        if id(obj) in self._instances:
            return self._head(
                b"@%d;" % (len(self._instances) - self._instances.index(id(obj))), depth
            )
        kind = type(obj)
        head = self._head(b"o%s;" % self._ref(kind), depth) + self.encode(
            _type_name(kind), depth + 1
        )
        self._instances.append(id(obj))
        try:
            state = _instance_dict(obj)
            parts = [
                head,
                b"n" if state is None else self.encode(state, depth + 1),
                b"%d:" % len(slots),
            ]
            for name, member in slots:
                parts.append(self.encode(name, depth + 1))
                try:
                    value = member.__get__(obj, kind)  # CPython's slot read: no user code
                except AttributeError:
                    parts.append(self._head(b"u", depth + 1))
                    continue
                parts.append(self.encode(value, depth + 1))
        finally:
            self._instances.pop()
        return b"".join(parts)
