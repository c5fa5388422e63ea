"""Steps, the lazy handles a step call returns inside a pipeline, and the graph they make.

``@ll.step`` turns a function into a :class:`Step`. Called outside a pipeline a step is a
plain function call. Called while a pipeline function is being built it runs nothing: it
returns a :class:`StepHandle` standing for its future output, and records a node of the
graph. The edges come from where handles are passed: as arguments to other steps, also
inside lists, tuples and dicts; ``handle[0]`` or ``handle["key"]`` stands for one item.

The arguments of a node are kept as a *spec*, plain JSON that crosses process boundaries:

* ``{"v": value}`` - a JSON literal;
* ``{"a": digest, "t": type}`` - a literal of another kind (DataFrame, array, model, ...)
  stored as an artifact when the pipeline is built;
* ``{"ref": node, "path": [...]}`` - the output of another node (an item of it with path);
  resolved to ``{"a": digest, "t": type, "path": [...]}`` once that node has finished;
* ``{"list": [...]}``, ``{"tuple": [...]}``, ``{"dict": {...}}`` - containers of specs.

**Code hash.** A step's code hash is the BLAKE3 digest of its name and the syntax tree of
its source (``inspect.getsource``, decorators dropped, so comments and formatting do not
count). It covers the step's own source only: the module constants, same-package helpers,
closure variables and arrays the step reads are added by the cache key (see
:mod:`loopline.training.step_globals`), looked up at each run.

Example:
    >>> @step(retries=2)
    ... def double(x: int) -> int:
    ...     return 2 * x
    >>> double(21)  # outside a pipeline: a plain call
    42
"""

from __future__ import annotations

import ast
import contextvars
import functools
import importlib
import inspect
import math
import textwrap
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, ParamSpec, TypeVar, overload

import blake3

from loopline.core.artifacts import ArtifactStore
from loopline.errors import InvalidInput
from loopline.training.outputs import encode_json, is_json, store_value

P = ParamSpec("P")
R = TypeVar("R")
Spec = dict[str, Any]


class Step(Generic[P, R]):
    """A function made a pipeline step by :func:`step`.

    ``retries`` extra tries after a failure, waiting ``retry_delay * 2**attempt`` seconds
    before each; ``cache`` lets a run skip the step when its code, params and inputs match
    a finished run of it; ``timeout`` (seconds, or None) stops a try that runs longer,
    which then fails (and is retried) like any failure.

    Example:
        >>> s = Step(len, name="size", retries=1, retry_delay=0.0, cache=False)
        >>> s("abc"), s.name
        (3, 'size')
    """

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        retries: int = 0,
        retry_delay: float = 1.0,
        cache: bool = True,
        timeout: float | None = None,
    ) -> None:
        if not callable(fn):
            raise InvalidInput(f"@step needs a function, got {fn!r}", field="fn")
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise InvalidInput(
                f"The 'retries' parameter of step must be an int >= 0. Got {retries!r} instead.",
                field="retries",
            )
        if (
            not isinstance(retry_delay, int | float)
            or isinstance(retry_delay, bool)
            or not 0 <= retry_delay < math.inf  # NaN fails too: time.sleep refuses it
        ):
            raise InvalidInput(
                "The 'retry_delay' parameter of step must be a finite number >= 0. "
                f"Got {retry_delay!r} instead.",
                field="retry_delay",
            )
        if timeout is not None and (
            not isinstance(timeout, int | float)
            or isinstance(timeout, bool)
            or not 0 < timeout < math.inf  # NaN fails too
        ):
            raise InvalidInput(
                "The 'timeout' parameter of step must be a finite number of seconds > 0, "
                f"or None. Got {timeout!r} instead.",
                field="timeout",
                hint="e.g. timeout=600 stops a try of the step after ten minutes",
            )
        if not isinstance(cache, bool):  # cache="no" is truthy: it would cache
            raise InvalidInput(
                f"The 'cache' parameter of step must be True or False. Got {cache!r} instead.",
                field="cache",
            )
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise InvalidInput(
                f"The 'name' parameter of step must be a non-empty str. Got {name!r} instead.",
                field="name",
                hint="leave it out to name the step after its function",
            )
        self.fn = fn
        self.name: str = name or str(getattr(fn, "__name__", type(fn).__name__))
        self.retries = retries
        self.retry_delay = float(retry_delay)
        self.cache = cache
        # Not part of the cache key (nor of the code hash, which drops decorators): a
        # timeout stops a try or not, it does not change what a finished step returns.
        self.timeout = None if timeout is None else float(timeout)
        functools.update_wrapper(self, fn)

    @property
    def target(self) -> str:
        """``module:qualname`` of the function, by which worker processes import it.

        Example:
            >>> Step(len).target
            'builtins:len'
        """
        module = getattr(self.fn, "__module__", None) or "?"
        return f"{module}:{getattr(self.fn, '__qualname__', self.name)}"

    @functools.cached_property
    def code_hash(self) -> str:
        """BLAKE3 of the step's name and source syntax tree (called helpers not included).

        Example:
            >>> len(Step(len).code_hash)
            64
        """
        return code_hash(self.fn, self.name)

    @functools.cached_property
    def signature(self) -> inspect.Signature:
        """The function's signature, used to bind a call's arguments to names.

        Example:
            >>> list(Step(lambda a, b=1: a).signature.parameters)
            ['a', 'b']
        """
        return inspect.signature(self.fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function, or inside a pipeline record a node and return a handle.

        Inside a pipeline the return value is a :class:`StepHandle` standing for ``R``.
        """
        builder = _building.get()
        if builder is None:
            return self.fn(*args, **kwargs)
        return builder.add(self, args, kwargs)  # type: ignore[return-value]

    def __reduce__(self) -> tuple[Callable[[str], Step[Any, Any]], tuple[str]]:
        # Workers get a step by its import path, never its pickled code.
        return resolve_step, (self.target,)

    def __repr__(self) -> str:
        return f"<Step {self.name} ({self.target})>"


@overload
def step(fn: Callable[P, R], /) -> Step[P, R]: ...


@overload
def step(
    *,
    name: str | None = None,
    retries: int = 0,
    retry_delay: float = 1.0,
    cache: bool = True,
    timeout: float | None = None,
) -> Callable[[Callable[P, R]], Step[P, R]]: ...


def step(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    retries: int = 0,
    retry_delay: float = 1.0,
    cache: bool = True,
    timeout: float | None = None,
) -> Step[P, R] | Callable[[Callable[P, R]], Step[P, R]]:
    """Make a function a pipeline step: cached, retried with exponential backoff.

    Use bare (``@ll.step``) or with options. A step that raises is tried ``1 + retries``
    times, sleeping ``retry_delay * 2**attempt`` seconds between tries. A try still running
    after ``timeout`` seconds is stopped (its worker process killed on the ``process``
    executor, its task cancelled on ``ray``) and fails like a raise; the ``local``
    executor's threads cannot be stopped, so it refuses a pipeline with a timed step.
    Outside a pipeline (a plain call) the timeout does not apply. Its return value is
    stored as a typed artifact (see :mod:`loopline.training.outputs`). Steps run by the
    ``process`` and ``ray`` executors must be defined at the top level of an importable
    module.

    Example:
        >>> import loopline as ll
        >>> @ll.step(retries=2, retry_delay=1.0, cache=True, timeout=600)
        ... def load(n: int) -> list[int]:
        ...     return list(range(n))
        >>> load(3)
        [0, 1, 2]
    """

    def wrap(f: Callable[P, R]) -> Step[P, R]:
        return Step(
            f, name=name, retries=retries, retry_delay=retry_delay, cache=cache, timeout=timeout
        )

    return wrap(fn) if fn is not None else wrap


def code_hash(fn: Callable[..., Any], name: str) -> str:
    """BLAKE3 of ``name`` and the syntax tree of ``fn``'s source, decorators dropped.

    Falls back to the bytecode and constants when the source is not available (a function
    typed at the prompt). Helpers that ``fn`` calls and the globals it reads are not part
    of this hash; the cache key adds them (:func:`loopline.training.step_globals.read_globals`).

    Example:
        >>> def f(x): return x + 1  # a comment does not count
        >>> code_hash(f, "f") == code_hash(f, "f")
        True
    """
    try:
        source = textwrap.dedent(inspect.getsource(fn))
        tree = ast.parse(source)
        node = tree.body[0]
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            node.decorator_list = []
        text = ast.dump(node, annotate_fields=False)
    except (OSError, TypeError, SyntaxError, IndexError):
        code = getattr(fn, "__code__", None)
        text = repr((code.co_code, code.co_consts)) if code is not None else repr(fn)
    return blake3.blake3(f"{name}\n{text}".encode()).hexdigest()


def resolve_step(target: str) -> Step[Any, Any]:
    """Import ``module:qualname`` and return the step there; a clear error if it cannot.

    Example:
        >>> resolve_step("loopline.training.steps:nope")  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        loopline.errors.InvalidInput: ...
    """
    obj = resolve_target(target, what="step")
    if not isinstance(obj, Step):
        raise InvalidInput(
            f"{target} is a {type(obj).__name__}, not a step",
            field="step",
            hint="decorate the function with @ll.step",
        )
    return obj


def resolve_target(target: str, *, what: str) -> Any:
    """The object at ``module:qualname``; InvalidInput naming it when it cannot be imported.

    Example:
        >>> resolve_target("os.path:join", what="function").__name__
        'join'
    """
    module_name, _, qualname = target.partition(":")
    if not module_name or not qualname or "<locals>" in qualname:
        raise InvalidInput(
            f"the {what} {target} cannot be imported by another process",
            field=what,
            hint=f"define the {what} at the top level of an importable module "
            "(not inside a function)",
        )
    hint = f"define the {what} at the top level of a module on the workers' PYTHONPATH"
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidInput(
            f"the {what} {target} cannot be imported: {exc}", field=what, hint=hint
        ) from exc
    except SyntaxError as exc:
        raise InvalidInput(
            f"the {what} {target} cannot be imported: {exc.filename}, line {exc.lineno}: {exc.msg}",
            field=what,
            hint=f"fix the syntax error; {hint}",
        ) from exc
    except Exception as exc:  # the module's own code failed: its error, not "a step failed"
        where = traceback.extract_tb(exc.__traceback__)[-1]
        raise InvalidInput(
            f"the {what} {target} cannot be imported: {where.filename}, line {where.lineno}: "
            f"{type(exc).__name__}: {exc}",
            field=what,
            hint=f"fix the error the module raises when it is imported; {hint}",
        ) from exc
    try:
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except AttributeError as exc:
        raise InvalidInput(
            f"the {what} {target} cannot be imported: {exc}", field=what, hint=hint
        ) from exc
    return obj


# -- building a graph ----------------------------------------------------------------------


class StepHandle:
    """The future output of a step inside a pipeline; pass it to other steps.

    ``handle[0]`` / ``handle["key"]`` stand for one item of the output. A handle has no
    value while the pipeline is being built: using it as one (``if handle:``, iterating
    it) raises with a hint.

    Example:
        >>> # with a pipeline: df = load(); model = fit(df["train"], lr=0.1)
    """

    __slots__ = ("_builder", "_node", "_path")

    def __init__(self, builder: GraphBuilder, node: str, path: tuple[str | int, ...] = ()):
        self._builder = builder
        self._node = node
        self._path = path

    @property
    def node(self) -> str:
        """The name of the step node whose output this stands for.

        Example:
            >>> # load(...).node  -> 'load'
        """
        return self._node

    def __getitem__(self, key: str | int) -> StepHandle:
        if not isinstance(key, str | int) or isinstance(key, bool):
            raise InvalidInput(
                f"a step output can be indexed by a str or an int, not {key!r}", field="key"
            )
        return StepHandle(self._builder, self._node, (*self._path, key))

    def __iter__(self) -> Iterator[Any]:
        raise TypeError(
            f"the output of step {self._node!r} is not known while the pipeline is built, "
            "so it cannot be unpacked; index it instead: a, b = out[0], out[1]"
        )

    def __bool__(self) -> bool:
        raise InvalidInput(
            f"the output of step {self._node!r} is not known while the pipeline is built",
            field=self._node,
            hint="pass it to another step and decide there",
        )

    def __repr__(self) -> str:
        path = "".join(f"[{k!r}]" for k in self._path)
        return f"<output of step {self._node}{path}>"


@dataclass
class Node:
    """One step call in a pipeline: its arguments as a spec and the nodes it reads."""

    name: str
    step: Step[Any, Any]
    args: dict[str, Spec]
    upstream: tuple[str, ...]
    position: int


@dataclass
class Graph:
    """The nodes of a pipeline, in call order. :meth:`order` checks for cycles."""

    nodes: dict[str, Node] = field(default_factory=dict)

    def order(self) -> list[Node]:
        """The nodes in a topological order (call order among peers).

        Raises InvalidInput naming the steps of a cycle, or a step that reads a node that
        is not in the pipeline.

        Example:
            >>> Graph().order()
            []
        """
        for node in self.nodes.values():
            for up in node.upstream:
                if up not in self.nodes:
                    raise InvalidInput(
                        f"step {node.name!r} uses the output of {up!r}, "
                        "which is not a step of this pipeline",
                        field=node.name,
                        hint="pass only handles returned by step calls in the same pipeline",
                    )
        indegree = {name: len(set(n.upstream)) for name, n in self.nodes.items()}
        downstream = self.downstream()
        ready = [n for n in self.nodes.values() if indegree[n.name] == 0]
        out: list[Node] = []
        while ready:
            ready.sort(key=lambda n: n.position)
            node = ready.pop(0)
            out.append(node)
            for name in downstream[node.name]:
                indegree[name] -= 1
                if indegree[name] == 0:
                    ready.append(self.nodes[name])
        if len(out) < len(self.nodes):
            raise InvalidInput(
                "the steps " + " -> ".join(self._cycle({n.name for n in out})) + " form a cycle",
                field="pipeline",
                hint="a step cannot depend on its own output; build handles only by calling steps",
            )
        return out

    def downstream(self) -> dict[str, list[str]]:
        """For each node, the nodes that read its output.

        Example:
            >>> Graph().downstream()
            {}
        """
        down: dict[str, list[str]] = {name: [] for name in self.nodes}
        for node in self.nodes.values():
            for up in dict.fromkeys(node.upstream):
                down[up].append(node.name)
        return down

    def descendants(self, name: str) -> set[str]:
        """Every node that depends, directly or not, on ``name``.

        Example:
            >>> Graph().descendants("x")
            set()
        """
        down = self.downstream()
        seen: set[str] = set()
        stack = list(down.get(name, []))
        while stack:
            n = stack.pop()
            if n not in seen:
                seen.add(n)
                stack.extend(down[n])
        return seen

    def _cycle(self, done: set[str]) -> list[str]:
        left = {n: [u for u in self.nodes[n].upstream if u not in done] for n in self.nodes}
        left = {n: ups for n, ups in left.items() if n not in done}
        start = min(left, key=lambda n: self.nodes[n].position)
        path, seen = [start], {start: 0}
        while True:
            nxt = left[path[-1]][0]
            if nxt in seen:
                cycle = path[seen[nxt] :]
                return [*cycle, nxt]
            seen[nxt] = len(path)
            path.append(nxt)


class GraphBuilder:
    """Collects nodes while a pipeline function runs (see :func:`building`).

    Example:
        >>> import tempfile
        >>> from loopline.core.artifacts import open_artifact_store
        >>> b = GraphBuilder(open_artifact_store(tempfile.mkdtemp()))
        >>> with b.building():
        ...     h = step(lambda x: x)(1)
        >>> list(b.graph.nodes)
        ['<lambda>']
    """

    def __init__(self, store: ArtifactStore) -> None:
        self.store = store
        self.graph = Graph()
        self._counts: dict[str, int] = {}

    def building(self) -> _Building:
        """A context in which step calls add nodes to this builder.

        Example:
            >>> # with builder.building(): pipeline_fn(**params)
        """
        return _Building(self)

    def add(
        self, step_: Step[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> StepHandle:
        """Record a call of ``step_`` and return the handle of its output.

        Example:
            >>> # builder.add(load, (100,), {})  -> <output of step load>
        """
        count = self._counts.get(step_.name, 0) + 1
        self._counts[step_.name] = count
        name = step_.name if count == 1 else f"{step_.name}_{count}"
        try:
            bound = step_.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidInput(f"step {name!r}: {exc}", field=name) from exc
        bound.apply_defaults()
        upstream: list[str] = []
        specs = {
            key: self.spec(value, upstream, where=f"step {name!r}, argument {key!r}")
            for key, value in bound.arguments.items()
        }
        self.graph.nodes[name] = Node(
            name, step_, specs, tuple(dict.fromkeys(upstream)), len(self.graph.nodes)
        )
        return StepHandle(self, name)

    def spec(self, value: Any, upstream: list[str], *, where: str) -> Spec:
        """The JSON spec of an argument; handles found are appended to ``upstream``.

        Example:
            >>> GraphBuilder(None).spec([1, "a"], [], where="x")  # type: ignore[arg-type]
            {'v': [1, 'a']}
        """
        if isinstance(value, StepHandle):
            if value._builder is not self:
                raise InvalidInput(
                    f"{where} is the output of step {value.node!r} of another pipeline",
                    field="args",
                    hint="handles are valid only inside the pipeline that made them",
                )
            upstream.append(value.node)
            return {"ref": value.node, "path": list(value._path)}
        if is_json(value):
            return {"v": value}
        if isinstance(value, list | tuple):
            kind = "tuple" if isinstance(value, tuple) else "list"
            return {kind: [self.spec(v, upstream, where=where) for v in value]}
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return {"dict": {k: self.spec(v, upstream, where=where) for k, v in value.items()}}
        try:
            stored = store_value(value, self.store, step=where)
        except InvalidInput as exc:
            kind = f"{type(value).__module__}.{type(value).__qualname__}"
            raise InvalidInput(
                f"{where} is a {kind}, which Loopline cannot store as an artifact",
                field="args",
                hint="pass a DataFrame, an array, bytes, a JSON value, a model, or the "
                "output of another step (Loopline never pickles)",
            ) from exc
        return {"a": stored.digest, "t": stored.type}


class _Building:
    def __init__(self, builder: GraphBuilder) -> None:
        self.builder = builder
        self._token: contextvars.Token[GraphBuilder | None] | None = None

    def __enter__(self) -> GraphBuilder:
        self._token = _building.set(self.builder)
        return self.builder

    def __exit__(self, *exc: object) -> None:
        assert self._token is not None
        _building.reset(self._token)


_building: contextvars.ContextVar[GraphBuilder | None] = contextvars.ContextVar(
    "loopline_pipeline_builder", default=None
)


def is_building() -> bool:
    """Whether a pipeline is being built in this context (step calls return handles).

    Example:
        >>> is_building()
        False
    """
    return _building.get() is not None


def spec_digest(spec: Any) -> str:
    """BLAKE3 of a spec's canonical JSON.

    Example:
        >>> len(spec_digest({"v": 1}))
        64
    """
    return blake3.blake3(encode_json(spec)).hexdigest()
