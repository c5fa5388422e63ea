"""What runs where a step runs: load the inputs, call the function with retries, store the output.

:func:`execute_step` is the one function every executor runs, in a thread, a process or a
Ray task. It reads input artifacts and writes the output artifact to the artifact store,
and returns a small :class:`StepOutcome` (digests, never values): only digests cross
process boundaries. It never touches the metadata database; the driver records outcomes.

Each call runs ONE try of the step (``task.attempt``, from 0), sleeping its backoff first
(:func:`backoff`: 1x, 2x, 4x ... ``retry_delay`` before the 2nd, 3rd, 4th try). The runner
sends the next try when an outcome is ``retryable`` (the step raised) and tries are left,
and also after a try that timed out or whose worker process died: those end the call
without an outcome, so the retries cannot live inside it. An output with no safe format
fails the step at once (trying again would not help).

Example:
    >>> current_step() is None  # outside a step
    True
"""

from __future__ import annotations

import contextvars
import inspect
import threading
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal

from loopline.core.artifacts import ArtifactStore, open_artifact_store
from loopline.errors import LooplineError
from loopline.training.outputs import StoredOutput, load_value, pick, store_value
from loopline.training.steps import Spec, Step


@dataclass(frozen=True)
class StoreSpec:
    """How a worker opens the artifact store (URL and fsspec options)."""

    url: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StepTask:
    """One step to run: the step, its arguments (resolved specs) and where outputs go.

    Example:
        >>> # StepTask("fit", fit_step, {"lr": {"v": 0.1}}, StoreSpec("/tmp/a"))
    """

    node: str
    step: Step[Any, Any]
    args: dict[str, Spec]
    store: StoreSpec
    #: Which try this is, from 0 (the runner sends the next one after a failure).
    attempt: int = 0


@dataclass(frozen=True)
class StepOutcome:
    """What happened to a step: status, tries, output digest/type, or the last traceback."""

    node: str
    status: Literal["finished", "failed"]
    attempts: int
    output: StoredOutput | None = None
    error: str | None = None
    started_at: float = 0.0
    finished_at: float = 0.0
    #: The dataset versions the step read, ``(name, version, hash, asked_for_latest)``:
    #: its output's lineage.
    reads: tuple[tuple[str, int, str, bool], ...] = ()
    #: Whether the step itself failed (it raised), so that another try may succeed.
    retryable: bool = False


@dataclass(frozen=True)
class StepInfo:
    """The step being run in this context: see :func:`current_step`."""

    name: str
    attempt: int


_current: contextvars.ContextVar[StepInfo | None] = contextvars.ContextVar(
    "loopline_current_step", default=None
)
_stores: dict[tuple[str, str], ArtifactStore] = {}
_stores_lock = threading.Lock()


def current_step() -> StepInfo | None:
    """The step running in this context (its node name and 1-based attempt), else None.

    Example:
        >>> # inside a step: ll_info = current_step(); ll_info.attempt  -> 1, 2, ...
    """
    return _current.get()


def open_store(spec: StoreSpec) -> ArtifactStore:
    """The artifact store of ``spec``, opened once per process.

    Example:
        >>> import tempfile
        >>> open_store(StoreSpec(tempfile.mkdtemp())).url.startswith("/")
        True
    """
    key = (spec.url, repr(sorted(spec.options.items())))
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = open_artifact_store(spec.url, spec.options)
        return store


def materialize(spec: Spec, store: ArtifactStore) -> Any:
    """The value a resolved spec stands for (artifacts loaded and verified).

    Example:
        >>> materialize({"list": [{"v": 1}, {"tuple": [{"v": "a"}]}]}, None)  # type: ignore
        [1, ('a',)]
    """
    if "v" in spec:
        return spec["v"]
    if "a" in spec:
        value = load_value(StoredOutput(spec["a"], spec["t"]), store)
        return pick(value, tuple(spec.get("path", ())))
    if "list" in spec:
        return [materialize(s, store) for s in spec["list"]]
    if "tuple" in spec:
        return tuple(materialize(s, store) for s in spec["tuple"])
    if "dict" in spec:
        return {k: materialize(s, store) for k, s in spec["dict"].items()}
    raise ValueError(f"unresolved argument spec {spec!r}")


def _describe(exc: BaseException) -> str:
    head = (
        f"SystemExit: the step called sys.exit({exc.code!r})"
        if isinstance(exc, SystemExit)
        else f"{type(exc).__qualname__}: {exc}"
    )
    return f"{head}\n\n" + "".join(traceback.format_exception(exc))


def backoff(step: Step[Any, Any], attempt: int) -> float:
    """Seconds to wait before try ``attempt`` (from 0): ``retry_delay * 2**(attempt - 1)``.

    Example:
        >>> s = Step(len, retry_delay=0.5)
        >>> [backoff(s, a) for a in range(4)]
        [0.0, 0.5, 1.0, 2.0]
    """
    return 0.0 if attempt == 0 else step.retry_delay * 2 ** (attempt - 1)


def execute_step(task: StepTask) -> StepOutcome:
    """Run one try of a step where the executor placed it; never raises for the step's
    own errors.

    Example:
        >>> # outcome = execute_step(task); outcome.status, outcome.output.digest
    """
    step = task.step
    time.sleep(backoff(step, task.attempt))
    started = time.time()
    try:
        store = open_store(task.store)
        values = OrderedDict((k, materialize(s, store)) for k, s in task.args.items())
        bound = inspect.BoundArguments(step.signature, values)
        call_args, call_kwargs = bound.args, bound.kwargs
    except (LooplineError, OSError, ValueError) as exc:
        return StepOutcome(
            task.node,
            "failed",
            task.attempt,
            error="loading the inputs failed: " + _describe(exc),
            started_at=started,
            finished_at=time.time(),
        )
    from loopline.data.dataset_reads import READS

    attempts = task.attempt + 1
    token = _current.set(StepInfo(task.node, attempts))
    reads: list[tuple[str, int, str, bool]] = []
    reads_token = READS.set(reads)
    try:
        value = step.fn(*call_args, **call_kwargs)
    # SystemExit too: a step that calls sys.exit() (a script's habit) has failed, like a
    # container exiting non-zero; raised on, it ended the driver and every other step.
    except (Exception, SystemExit) as exc:
        return StepOutcome(
            task.node,
            "failed",
            attempts,
            error=_describe(exc),
            started_at=started,
            finished_at=time.time(),
            retryable=True,
        )
    finally:
        _current.reset(token)
        READS.reset(reads_token)
    try:
        output = store_value(value, store, step=task.node)
    except LooplineError as exc:
        return StepOutcome(
            task.node,
            "failed",
            attempts,
            error=_describe(exc),
            started_at=started,
            finished_at=time.time(),
        )
    return StepOutcome(
        task.node,
        "finished",
        attempts,
        output=output,
        started_at=started,
        finished_at=time.time(),
        reads=tuple(dict.fromkeys(reads)),
    )
