"""What a step reads from its module besides its own source: constants and helpers.

A step's code hash (:func:`loopline.training.steps.code_hash`) covers the step's own
source. Its result also depends on the module globals its code reads: when
``THRESHOLD = 0.5`` becomes ``0.7`` the step must run again, not return the output made
with 0.5. :func:`read_globals` finds those reads for the cache key
(:func:`loopline.training.cache.cache_key`):

* the names the step's code loads as globals, also in its nested functions, lambdas and
  comprehensions, looked up in the function's ``__globals__`` (a name not found there is a
  builtin or not defined yet: left out);
* a name bound to **plain data** - None, bool, int, float, str, bytes, and tuples, lists,
  dicts, sets and frozensets of those, of exactly these types (a namedtuple, an
  ``OrderedDict`` or an ``IntEnum`` is not plain) - counts by its value, in a canonical
  form: dict items and set members sorted by their encoding, floats by ``repr``, ints in
  hex, type tags so ``1``, ``1.0`` and ``True`` differ; no ``hash()`` or ``id()``, so
  every process computes the same digest;
* a name bound to a **function** (or a step, or a ``functools.cache`` of a function)
  defined in the step's own top-level package (its own module, when that is a top-level
  module) counts by its code hash, together with
  its plain default values and, recursively, what it reads itself;
* anything else - modules, classes, functions of other packages, other objects - is left
  out. A constant read through a module (``config.THRESHOLD``) is not followed either.

A value past :data:`MAX_ITEMS` items, :data:`MAX_BYTES` bytes of canonical form or
:data:`MAX_DEPTH` levels of nesting is too costly to digest on every run:
:class:`GlobalTooLarge` names it, and the runner then neither serves the step from the
cache nor reuses it on resume - it runs every time.

Example:
    >>> read_globals(lambda x: x)
    {}
"""

from __future__ import annotations

import dis
import functools
import types
import weakref
from collections.abc import Callable
from typing import Any

import blake3

from loopline.training.steps import Step, code_hash

#: At most this many values (containers and scalars) in one global's canonical form.
MAX_ITEMS = 100_000
#: At most this many bytes in one global's canonical form (4 MiB).
MAX_BYTES = 4 * 1024 * 1024
#: At most this many levels of containers inside containers (a list holding itself has no end).
MAX_DEPTH = 32

# The opcodes that read a global: LOAD_NAME in class bodies, LOAD_FROM_DICT_OR_GLOBALS in
# 3.12's class scopes. Not co_names as such: it also holds attribute names (``df.mean``),
# which would drag unrelated globals named ``mean`` into the key.
_GLOBAL_LOADS = frozenset({"LOAD_GLOBAL", "LOAD_NAME", "LOAD_FROM_DICT_OR_GLOBALS"})

_CONTAINER_TAGS: dict[type, bytes] = {
    list: b"l",
    tuple: b"t",
    dict: b"d",
    set: b"S",
    frozenset: b"Z",
}
_LRU_WRAPPER = type(functools.cache(len))
_code_hashes: weakref.WeakKeyDictionary[Callable[..., Any], str] = weakref.WeakKeyDictionary()


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


def read_globals(fn: Callable[..., Any]) -> dict[str, str]:
    """``module.NAME -> digest`` of the globals ``fn`` reads that count (see module doc).

    A constant maps to ``data:<blake3 of its canonical form>``, a helper function of the
    same package to ``code:<its code hash>`` (its own reads appear as entries of their
    own); keys come sorted. ``fn``'s own code is not an entry: the step's code hash has it.
    Raises :class:`GlobalTooLarge` for a value past the bounds.

    Example:
        >>> def helper(x): return x * 2
        >>> def f(x): return helper(x) + len(x)
        >>> sorted(read_globals(f))
        ['loopline.training.step_globals.helper']
    """
    fn = _unwrap(fn)
    if not isinstance(fn, types.FunctionType):
        return {}
    root = _package(fn)
    out: dict[str, str] = {}
    seen: set[types.FunctionType] = {fn}
    todo = [fn]
    while todo:
        func = todo.pop()
        for key, value in _reads(func):
            if key in out:
                continue
            helper = _unwrap(value)
            if isinstance(helper, types.FunctionType):
                if helper in seen or root is None or _package(helper) != root:
                    continue
                seen.add(helper)
                todo.append(helper)
                out[key] = "code:" + _helper_hash(helper)
                for attr in ("__defaults__", "__kwdefaults__"):
                    # Bound when the helper was defined (``def scale(x, k=FACTOR)``): its
                    # code reads no FACTOR, so the value counts here.
                    defaults = getattr(helper, attr)
                    digest = None if defaults is None else _data_digest(f"{key}.{attr}", defaults)
                    if digest is not None:
                        out[f"{key}.{attr}"] = digest
                continue
            digest = _data_digest(key, value)
            if digest is not None:
                out[key] = digest
    return dict(sorted(out.items()))


def canonical(value: Any) -> bytes:
    """The canonical bytes of a plain-data value: the same in every process.

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


def _reads(func: types.FunctionType) -> list[tuple[str, Any]]:
    """``(module.NAME, value)`` for each global name ``func``'s code loads and that exists."""
    scope = func.__globals__
    module = str(scope.get("__name__", func.__module__))
    return [(f"{module}.{n}", scope[n]) for n in _global_names(func.__code__) if n in scope]


@functools.lru_cache(maxsize=4096)
def _global_names(code: types.CodeType) -> tuple[str, ...]:
    """The global names a code object loads, with those of the code nested in it, sorted."""
    names: set[str] = set()
    stack = [code]
    while stack:
        current = stack.pop()
        for ins in dis.get_instructions(current):
            if ins.opname in _GLOBAL_LOADS and isinstance(ins.argval, str):
                names.add(ins.argval)
        stack.extend(c for c in current.co_consts if isinstance(c, types.CodeType))
    return tuple(sorted(names))


def _unwrap(value: Any) -> Any:
    """The function behind a step (a step calling a step runs its function) or behind
    ``functools.cache`` / ``lru_cache``; else ``value`` itself."""
    if isinstance(value, Step):
        return value.fn
    # Only functools' own cache wrapper: getattr on an arbitrary object may run its code.
    if isinstance(value, _LRU_WRAPPER):
        return _unwrap(value.__wrapped__)
    return value


def _package(func: types.FunctionType) -> str | None:
    """The top-level package of the module that defined ``func`` (None when unknown)."""
    module = func.__module__
    return module.split(".", 1)[0] if isinstance(module, str) and module else None


def _helper_hash(func: types.FunctionType) -> str:
    """The code hash of a helper function, kept per function object (its source is
    parsed once; a redefined or reloaded function is a new object)."""
    digest = _code_hashes.get(func)
    if digest is None:
        digest = _code_hashes[func] = code_hash(func, func.__qualname__)
    return digest


def _data_digest(name: str, value: Any) -> str | None:
    """``data:<digest>`` of a plain-data value; None when it is not plain data."""
    try:
        encoded = _Encoder(name).encode(value, 0)
    except _NotPlain:
        return None
    return "data:" + blake3.blake3(encoded).hexdigest()


class _Encoder:
    """Encodes one value canonically, counting items and bytes against the bounds."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.items = 0
        self.size = 0

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
            return self._container(value, depth)
        self._count(len(out))
        return out

    def _container(self, value: Any, depth: int) -> bytes:
        kind: type = type(value)
        tag = _CONTAINER_TAGS.get(kind)
        if tag is None:
            raise _NotPlain(f"{kind.__module__}.{kind.__qualname__}")
        if depth >= MAX_DEPTH:
            raise GlobalTooLarge(self.name, f"nested deeper than {MAX_DEPTH} levels")
        head = tag + b"%d:" % len(value)
        self._count(len(head))
        if kind is dict:
            pairs = [
                (self.encode(k, depth + 1), self.encode(v, depth + 1)) for k, v in value.items()
            ]
            return head + b"".join(k + v for k, v in sorted(pairs))
        parts = [self.encode(v, depth + 1) for v in value]
        body = b"".join(sorted(parts) if kind in (set, frozenset) else parts)
        return head + body
