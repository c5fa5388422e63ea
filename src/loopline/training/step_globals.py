"""What a step reads besides its own source: constants, helpers, closures and arrays.

A step's code hash (:func:`loopline.training.steps.code_hash`) covers the step's own
source. Its result also depends on the values its code reads: when ``THRESHOLD = 0.5``
becomes ``0.7`` the step must run again, not return the output made with 0.5.
:func:`read_globals` finds those reads for the cache key
(:func:`loopline.training.cache.cache_key`):

* the names the step's code loads as globals, also in its nested functions, lambdas and
  comprehensions, looked up in the function's ``__globals__`` (a name not found there is a
  builtin or not defined yet: left out);
* the attributes it reads from a **module of the user's own code**: a global name or a
  closure variable bound to such a module followed by an attribute load
  (``LOAD_GLOBAL config`` or ``LOAD_DEREF cfg``, then ``LOAD_ATTR THRESHOLD`` /
  ``LOAD_METHOD scale``; also ``pkg.config.THRESHOLD``) counts ``pkg.config.THRESHOLD``
  by the rules below, read from the module's ``__dict__`` (a module ``__getattr__`` is
  not called). The user's own code is the step's own top-level package, and the
  top-level modules and packages whose file is in the same folder as that package's (or
  top-level module's) file, such as ``config.py`` and ``features/`` beside
  ``churn_pipeline.py``, unless that folder is under a ``site-packages`` or
  ``dist-packages`` folder or one of the library or standard-library folders of
  ``sysconfig`` (for ``sys.prefix`` and ``sys.base_prefix``): a library never becomes
  the user's own code because a script sits next to it. Modules of other packages stay
  out: a library upgrade does not rerun steps;
* the values in the **closure cells** of the step (a step made by a factory reads the
  factory's arguments) and of the helpers it follows, as ``<function>.__closure__.<name>``;
  an empty cell is left out;
* a name bound to **plain data** - None, bool, int, float, str, bytes, and tuples, lists,
  dicts, sets and frozensets of those, of exactly these types (a subclass such as
  ``Counter`` is not plain), and the values below - counts by its value, in a canonical
  form: dict items and set members sorted by their encoding, floats by ``repr``, ints in
  hex, type tags so ``1``, ``1.0`` and ``True`` differ; no ``hash()`` or ``id()``, so
  every process computes the same digest;
* an **Enum member** (of any package: ``http.HTTPStatus.OK`` too; an ``IntEnum``'s
  differs from its int) counts by its class's ``<module>.<qualified name>``, its name and
  its ``_value_`` (from its ``__dict__``) by these rules; a **namedtuple** (made by
  ``collections.namedtuple`` or ``typing.NamedTuple``) by its type's name, its field
  names and its values; an ``OrderedDict`` by its items in their order (a dict's order
  does not count). Each has a tag of its own: ``(1, 2)``, ``Pair(1, 2)``, ``{"a": 1}`` and
  ``OrderedDict(a=1)`` all differ. A member or namedtuple of a class of the user's own
  code also counts its class by the class rule below;
* an **instance of a class of the user's own code** (its type's ``__module__`` is),
  also inside the containers above, counts by its class, by the class rule below (as
  ``<name>.__refs__[i]``), and by its state: its ``__dict__`` as a dict, then its slots in
  method resolution order (an unset slot as unset), each value by these rules, a function
  or class of the user's own code by its own rule (as ``<name>.__refs__[i]`` too). The
  state is read through CPython's own ``__dict__`` and slot descriptors: no
  ``__getattribute__``, property, ``__repr__``, ``__eq__``, ``__hash__``,
  ``__getstate__`` or ``__reduce__`` is called, no ``dataclasses.asdict``. An instance
  whose state holds anything that does not count (a library's estimator, a file, a
  function of another package), or whose layout holds more than its ``__dict__`` and
  slots (a base written in C: ``dict``, ``Exception``), is left out whole, with the value
  holding it: never half an instance. An instance met again inside itself
  (``node.parent.child is node``) counts as a reference to it; each attribute counts as
  an item toward the bounds, like a container's member. Instances of other packages'
  classes are left out;
* **NumPy arrays and scalars and pandas DataFrames, Series and Indexes** (of exactly
  these types; a masked array is not one) count as data too, also inside plain
  containers: an array by its dtype, shape and the BLAKE3 of its bytes in C order; a frame
  by its shape, columns, index and each column; a RangeIndex by its range. An object
  array, and an extension column (nullable, string) as objects with None for missing, by
  its elements as plain data; a categorical by its categories and codes, a tz-aware
  column by its dtype and int64 values. An element that is not plain (a ``Period``)
  leaves the whole value out;
* a name bound to a **function** (or a step, or a ``functools.cache`` of a function)
  of the user's own code counts by its code hash, together with its plain default values
  and, recursively, what it reads itself; inside a container (``HANDLERS = [clean,
  scale]``) or an instance's state, a function or class of the user's own code counts
  the same way, as ``<name>.__refs__[i]``, and the container by its place there (a
  function of another package there leaves the container out);
* a name bound to a **class** of the user's own code (its ``__module__`` is) counts by
  ``class:<module>.<qualified name>`` and what its ``__dict__`` holds, each as
  ``<name>.<attribute>``: functions (methods, the ``__func__`` of a staticmethod or
  classmethod, a cached_property's function) and a property's ``.fget``, ``.fset`` and
  ``.fdel`` by the function rule (what they read counts in turn), an Enum member by its
  ``._value_``, any other attribute by these rules (a plain-data class attribute by its
  value); names that begin and end with ``_`` (``__doc__``, an Enum's
  ``_member_names_``) are Python's bookkeeping and count only when they hold a
  function (``__init__``). Its bases of the user's own code count the same way, as
  ``<name>.__bases__[i]``. Only the ``__dict__`` is read: no descriptor is called, no
  instance made; each class counts once (a method naming its own class ends there);
* a ``functools.partial`` counts by its parts: ``.func`` by the function rule and each of
  ``.args[i]`` and ``.keywords[k]`` by these rules, whatever the function's package;
* anything else - modules, classes and functions of other packages, instances of their
  classes, other objects - is left out.

A value past :data:`MAX_ITEMS` items, :data:`MAX_BYTES` bytes of canonical form,
:data:`MAX_DEPTH` levels of nesting or :data:`MAX_ARRAY_BYTES` bytes of array data is too
costly to digest on every run: :class:`GlobalTooLarge` names it, and the runner then
neither serves the step from the cache nor reuses it on resume - it runs every time.
The bounds, the error and the canonical encoding of a value live in
:mod:`loopline.training.canonical_encoding`; this module finds what a step reads.

Example:
    >>> read_globals(lambda x: x)
    {}
"""

from __future__ import annotations

import dis
import enum
import functools
import types
import weakref
from collections.abc import Callable
from typing import Any

import blake3

from loopline.training.canonical_encoding import (
    _Encoder,
    _enum_value,
    _is,
    _NotPlain,
    _type_name,
    _unwrap,
)
from loopline.training.own_code import OwnCode
from loopline.training.steps import code_hash

# The opcodes that read a global: LOAD_NAME in class bodies, LOAD_FROM_DICT_OR_GLOBALS in
# 3.12's class scopes. Not co_names as such: it also holds attribute names (``df.mean``),
# which would drag unrelated globals named ``mean`` into the key.
_GLOBAL_LOADS = frozenset({"LOAD_GLOBAL", "LOAD_NAME", "LOAD_FROM_DICT_OR_GLOBALS"})
# An attribute read right after such a load: ``config.THRESHOLD`` (LOAD_ATTR), and
# ``config.helper(x)`` (LOAD_METHOD in 3.11; 3.12 folds it into LOAD_ATTR).
_ATTR_LOADS = frozenset({"LOAD_ATTR", "LOAD_METHOD"})
# The opcodes that read a closure variable (``cfg.THRESHOLD`` with ``cfg`` a factory's
# argument): LOAD_CLASSDEREF in 3.11's class bodies, LOAD_FROM_DICT_OR_DEREF in 3.12's.
_DEREF_LOADS = frozenset({"LOAD_DEREF", "LOAD_CLASSDEREF", "LOAD_FROM_DICT_OR_DEREF"})
_code_hashes: weakref.WeakKeyDictionary[Callable[..., Any], str] = weakref.WeakKeyDictionary()


def read_globals(fn: Callable[..., Any]) -> dict[str, str]:
    """``module.NAME -> digest`` of the globals ``fn`` reads that count (see module doc).

    A constant maps to ``data:<blake3 of its canonical form>``, a helper function of the
    user's own code to ``code:<its code hash>`` (its own reads appear as entries of their
    own), a class of it to ``class:<module>.<qualified name>`` (its members appear as
    entries of their own); keys come sorted. ``fn``'s own code is not an entry: the
    step's code hash has it.
    A closure variable is ``<function>.__closure__.<name>``, the parts of a
    ``functools.partial`` are ``<name>.func``, ``<name>.args[i]`` and ``<name>.keywords[k]``,
    the classes, functions and classes held by the instances of a value ``<name>.__refs__[i]``.
    Raises :class:`GlobalTooLarge` for a value past the bounds.

    Example:
        >>> def helper(x): return x * 2
        >>> def f(x): return helper(x) + len(x)
        >>> sorted(read_globals(f))
        ['loopline.training.step_globals.helper']
        >>> def make(k):
        ...     return lambda x: x * k
        >>> sorted(read_globals(make(3)))
        ['loopline.training.step_globals.make.<locals>.<lambda>.__closure__.k']
        >>> class Config:
        ...     LIMIT = 3
        >>> sorted(read_globals(lambda x: x < Config.LIMIT))
        ['loopline.training.step_globals.Config', 'loopline.training.step_globals.Config.LIMIT']
        >>> class Scaler:
        ...     def __init__(self, k): self.k = k
        >>> MODEL = Scaler(2)
        >>> sorted(read_globals(lambda x: MODEL.k * x))  # doctest: +NORMALIZE_WHITESPACE
        ['loopline.training.step_globals.MODEL',
         'loopline.training.step_globals.MODEL.__refs__[0]',
         'loopline.training.step_globals.MODEL.__refs__[0].__init__']
    """
    fn = _unwrap(fn)
    if not isinstance(fn, types.FunctionType):
        return {}
    return _Reader(fn).read()


class _Reader:
    """Walks from a step's function through what it reads, collecting the entries."""

    def __init__(self, fn: types.FunctionType) -> None:
        self.own = OwnCode(fn)
        self.out: dict[str, str] = {}
        self.seen: set[types.FunctionType] = {fn}
        # Classes by id, not in a set: a metaclass's __hash__ or __eq__ is the user's code.
        self.classes: dict[int, type] = {}
        self.todo = [(f"{fn.__module__}.{fn.__qualname__}", fn)]

    def read(self) -> dict[str, str]:
        while self.todo:
            key, func = self.todo.pop()
            for name, value in _reads(func, self.own):
                self.count(name, value)
            # A step made by a factory reads the factory's arguments from its cells.
            for var, value in _cells(func).items():
                self.count(f"{key}.__closure__.{var}", value)
        return dict(sorted(self.out.items()))

    def count(self, key: str, value: Any) -> None:
        """Add the entry (or entries) of ``value``, read under the name ``key``."""
        if key in self.out:
            return
        helper = _unwrap(value)
        if type(helper) is types.FunctionType:
            self._function(key, helper)
        elif type(helper) is functools.partial:
            # The bound arguments are values the step computes with, whatever the
            # function's package: each counts under its own name.
            self.count(f"{key}.func", helper.func)
            for i, arg in enumerate(helper.args):
                self.count(f"{key}.args[{i}]", arg)
            for name, arg in helper.keywords.items():
                self.count(f"{key}.keywords[{name}]", arg)
        elif _is(helper, type):
            self._class(key, helper)
        else:
            self._data(key, value)

    def _data(self, key: str, value: Any) -> None:
        """Count ``value`` as data (plain data, arrays, instances...) and, once the whole
        value is counted, the functions and classes its instances hold."""
        encoder = _Encoder(key, self.own)
        try:
            encoded = encoder.encode(value, 0)
        except _NotPlain:
            return  # left out whole: never half an instance
        self.out[key] = "data:" + blake3.blake3(encoded).hexdigest()
        for i, ref in enumerate(encoder.refs):
            self.count(f"{key}.__refs__[{i}]", ref)

    def _function(self, key: str, helper: types.FunctionType) -> None:
        if helper in self.seen or not self.own(helper.__module__):
            return
        self.seen.add(helper)
        self.todo.append((key, helper))
        self.out[key] = "code:" + _helper_hash(helper)
        for attr in ("__defaults__", "__kwdefaults__"):
            # Bound when the helper was defined (``def scale(x, k=FACTOR)``): its code
            # reads no FACTOR, so the value counts here.
            defaults = getattr(helper, attr)
            if defaults is not None:
                self._data(f"{key}.{attr}", defaults)

    def _class(self, key: str, cls: type) -> None:
        """A class of the user's own code: its name, its own-code bases and what its
        ``__dict__`` holds - methods by the function rule, class attributes by value.

        Read from the dict only: no descriptor is called, no instance made.
        """
        space = vars(cls)
        module = space.get("__module__")
        if id(cls) in self.classes or not self.own(module):
            return
        self.classes[id(cls)] = cls  # before the members: a method may name its class
        self.out[key] = f"class:{_type_name(cls)}"
        for i, base in enumerate(cls.__bases__):
            self.count(f"{key}.__bases__[{i}]", base)
        for name in sorted(n for n in space if isinstance(n, str)):
            for suffix, member in _members(space[name]):
                # __doc__, __module__, an Enum's _member_names_...: what Python and
                # libraries keep in a class, not values the code computes with (and not
                # the same in every Python); __init__ and the like count.
                internal = len(name) > 1 and name[0] == name[-1] == "_"
                if not internal or isinstance(_unwrap(member), types.FunctionType):
                    self.count(f"{key}.{name}{suffix}", member)


def _reads(func: types.FunctionType, own: OwnCode) -> list[tuple[str, Any]]:
    """``(module.NAME, value)`` for each global name ``func``'s code loads and that exists,
    and for each attribute it reads from a module of the user's own code, named by a global
    or held in a closure cell (``config.THRESHOLD`` -> ``pkg.config.THRESHOLD``)."""
    scope = func.__globals__
    module = str(scope.get("__name__", func.__module__))
    names, chains, derefs = _code_reads(func.__code__)
    found = [(f"{module}.{n}", scope[n]) for n in names if n in scope]
    cells = _cells(func)
    starts = [(scope.get(first), attrs) for first, *attrs in chains]
    starts += [(cells.get(first), attrs) for first, *attrs in derefs]
    for obj, attrs in starts:
        for attr in attrs:
            if not _is(obj, types.ModuleType) or not own(obj.__name__):
                break
            # The module's dict, not getattr: a module __getattr__ may run any code.
            space = vars(obj)
            if attr not in space:
                break
            key, obj = f"{obj.__name__}.{attr}", space[attr]
            if not _is(obj, types.ModuleType):
                found.append((key, obj))
                break
    return found


def _cells(func: types.FunctionType) -> dict[str, Any]:
    """``func``'s closure variables and their values; an empty cell (a variable not
    assigned yet) is left out."""
    out = {}
    for var, cell in zip(func.__code__.co_freevars, func.__closure__ or (), strict=True):
        try:
            out[var] = cell.cell_contents
        except ValueError:
            continue
    return out


def _members(value: Any) -> list[tuple[str, Any]]:
    """What a class attribute holds, without calling it: a staticmethod's or classmethod's
    function, a property's fget, fset and fdel (``.fget``...), a cached_property's
    function, an Enum member's value (``._value_``); else the value itself."""
    if _is(value, staticmethod) or _is(value, classmethod):
        return [("", value.__func__)]
    if _is(value, property):
        parts = (("fget", value.fget), ("fset", value.fset), ("fdel", value.fdel))
        return [(f".{name}", f) for name, f in parts if f is not None]
    if _is(value, functools.cached_property):
        return [("", value.func)]
    if _is(value, enum.Enum):  # a member (RED = 1): its value, from its own dict
        return [("._value_", _enum_value(value))]
    return [("", value)]


@functools.lru_cache(maxsize=4096)
def _code_reads(
    code: types.CodeType,
) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...], tuple[tuple[str, ...], ...]]:
    """The global names a code object loads, the attribute chains read from them
    (``config.THRESHOLD`` -> ``("config", "THRESHOLD")``) and those read from its closure
    variables, with those of the code nested in it, each sorted."""
    names: set[str] = set()
    chains: set[tuple[str, ...]] = set()
    derefs: set[tuple[str, ...]] = set()
    # Each code with the names of its free variables that are ``code``'s: a nested
    # function's own local of the same name is another variable.
    stack = [(code, frozenset(code.co_freevars))]
    while stack:
        current, free = stack.pop()
        chain: list[str] = []
        into = chains
        for ins in dis.get_instructions(current):
            if chain and ins.opname in _ATTR_LOADS and isinstance(ins.argval, str):
                chain.append(ins.argval)
                continue
            if len(chain) > 1:
                into.add(tuple(chain))
            chain = []
            if ins.opname in _GLOBAL_LOADS and isinstance(ins.argval, str):
                names.add(ins.argval)
                chain, into = [ins.argval], chains
            elif ins.opname in _DEREF_LOADS and ins.argval in free:
                chain, into = [ins.argval], derefs
        if len(chain) > 1:
            into.add(tuple(chain))
        stack.extend(
            (c, free & frozenset(c.co_freevars))
            for c in current.co_consts
            if isinstance(c, types.CodeType)
        )
    return tuple(sorted(names)), tuple(sorted(chains)), tuple(sorted(derefs))


def _helper_hash(func: types.FunctionType) -> str:
    """The code hash of a helper function, kept per function object (its source is
    parsed once; a redefined or reloaded function is a new object)."""
    digest = _code_hashes.get(func)
    if digest is None:
        digest = _code_hashes[func] = code_hash(func, func.__qualname__)
    return digest
