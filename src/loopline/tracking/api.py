"""The tracking SDK: ``ll.start_run``, ``Run``, ``ll.get_run``, ``ll.search_runs``, ...

A run started with :func:`start_run` records, without being asked, the git commit and a
hash of uncommitted changes, the command line, the Python version, the host and every
installed package (see :mod:`loopline.tracking.environment`). Used as a context manager it
ends FINISHED, or FAILED with the exception's type, message and traceback in the
``loopline.error`` tag (KILLED on Ctrl-C). A run started while another is active in the
same thread becomes its child.

``log_metric`` and ``log_metrics`` only queue the points (:mod:`loopline.tracking.ingest`);
a background thread writes them. ``run.flush()``, the end of the run, every read through
this module and interpreter exit write what is queued. Params, tags, inputs and artifacts
are written at once - except that a new run is written together with its first data: the
params and tags logged right after ``start_run`` (checked at once, as always), and for a
run that ends quickly its points and its end too, all in one commit. A started run is
written at the latest :data:`~loopline.tracking.deferred.WRITE_DELAY_S` after it started,
and as soon as anything needs it to exist: reading it, ``run.id``, an artifact, an input,
``flush``, a search or ``get_run`` in this process (see :mod:`loopline.tracking.deferred`).

Everything goes through a :class:`~loopline.tracking.backend.TrackingBackend` chosen by
``LOOPLINE_URI``: the database itself (``sqlite://``, ``postgresql://``) or a Loopline
server (``http(s)://``, the REST API ``/api/v1``); the code using the SDK is the same.

Example:
    >>> import loopline as ll  # doctest: +SKIP
    >>> with ll.start_run(experiment="churn", name="lgbm") as run:  # doctest: +SKIP
    ...     run.log_params({"model": "lgbm", "lr": 0.05})
    ...     for step in range(100):
    ...         run.log_metrics({"loss": 1 / (step + 1)}, step=step)
    >>> ll.search_runs("churn", filter="params.model = 'lgbm'")[0].metrics["loss"]  # doctest: +SKIP
    0.01
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from loopline.core.context import get_context
from loopline.errors import InvalidInput, NotFound
from loopline.tracking import active, deferred, environment, ingest
from loopline.tracking.backend import backend_for
from loopline.tracking.entities import (
    MIN_RUN_ID_PREFIX,
    RUN_ID_LENGTH,
    MetricPoint,
    ViewType,
    is_run_id_prefix,
)
from loopline.tracking.experiments import check_experiment_name
from loopline.tracking.run_handle import Run, _items
from loopline.tracking.validation import (
    check_key,
    check_run_name,
    check_run_search,
)

DEFAULT_EXPERIMENT = "Default"
#: Tag holding the digest of the run's environment document.
ENVIRONMENT_TAG = "loopline.environment"


class RunPage(list[Run]):
    """A page of search results; pass ``next_page_token`` back for the next page (None: last).

    Example:
        >>> RunPage([], next_page_token=None).next_page_token is None
        True
    """

    def __init__(self, runs: Sequence[Run], next_page_token: str | None) -> None:
        super().__init__(runs)
        self.next_page_token = next_page_token


def active_run() -> Run | None:
    """The innermost run started in this thread (else in the main thread), or None.

    The data stage calls this to record which dataset versions a run read.

    Example:
        >>> # if (run := ll.active_run()) is not None: run.log_input("dataset", "churn", "3", d)
    """
    return active.current()


def start_run(
    experiment: str | None = None,
    name: str | None = None,
    tags: Mapping[str, Any] | None = None,
    nested: bool = False,
) -> Run:
    """Start a run (use it as a context manager); a run started inside another is its child.

    ``experiment`` is created if missing; it defaults to the parent's experiment, else
    ``Default``. ``nested=True`` insists on a parent: it raises InvalidInput when no run is
    active (MLflow's spelling; a run inside another run is nested either way).

    Example:
        >>> # with ll.start_run(experiment="churn", name="lgbm", tags={"team": "risk"}) as run:
        >>> #     run.log_param("lr", 0.05)
    """
    # Checked before either backend: a wrong type failed deep inside the embedded one
    # (TypeError) and in pydantic for the remote one (ValidationError), and "" silently
    # meant the parent's experiment or Default.
    if experiment is not None:
        check_experiment_name(experiment)
    if name is not None:
        check_run_name(name)
    user_tags = {} if tags is None else dict(_items(tags, "tags"))
    parent = active_run()
    if nested and parent is None:
        raise InvalidInput(
            "start_run(nested=True) needs an active parent run, but none is active",
            field="nested",
            hint="start the parent first: with ll.start_run() as parent: ...",
        )
    ctx = get_context()
    actor = ctx.settings.actor_name
    env_doc = environment.environment_document()
    all_tags: dict[str, Any] = {
        **environment.run_tags(),
        "mlflow.user": actor,
        ENVIRONMENT_TAG: environment.environment_digest(),
        **user_tags,
    }
    new = backend_for(ctx).prepare_run(
        experiment=experiment or (parent.experiment if parent else DEFAULT_EXPERIMENT),
        name=name,
        tags=all_tags,
        parent_run_id=parent._record.id if parent else None,
        user_id=actor,
        files={environment.ENVIRONMENT_ARTIFACT: env_doc},
    )
    run = Run(new.record, ctx, new, parent)
    active.push(run)
    return run


# -- reading ---------------------------------------------------------------------------


def get_run(run_id: str) -> Run:
    """The run with this id; NotFound names the id.

    Example:
        >>> # ll.get_run("3f2a9c...").metrics
    """
    ctx = get_context()
    deferred.write_all()
    ingest.flush_all()
    return Run(backend_for(ctx).get_run(run_id), ctx)


def resolve_run_id(
    run_id: str, *, field: str = "run_id", min_length: int = MIN_RUN_ID_PREFIX
) -> str:
    """The full id of the one run whose id starts with ``run_id``, as git and docker take
    an abbreviated id: at least ``min_length`` lowercase hex characters.

    Anything else is given back unchanged, without a query, for the read that follows to
    judge: a full-length id, and text that is no hex prefix (so ``runs show nope`` still
    says the run does not exist). A hex prefix shorter than ``min_length``, or one that
    starts several runs, is :class:`~loopline.errors.InvalidInput` on ``field`` (the
    latter naming the candidates); one that starts none is
    :class:`~loopline.errors.NotFound`. Deleted runs count too, as ``get_run`` finds them.
    Against a Loopline server the prefix goes through its run search with the same rules.
    :func:`get_run` itself takes full ids only.

    Example:
        >>> import loopline as ll, tempfile
        >>> _ = ll.init(uri="sqlite:///:memory:", artifacts=tempfile.mkdtemp())
        >>> with ll.start_run(experiment="demo") as run:
        ...     pass
        >>> resolve_run_id(run.id[:8]) == run.id
        True
    """
    if type(run_id) is not str or len(run_id) >= RUN_ID_LENGTH or not is_run_id_prefix(run_id):
        return run_id
    if len(run_id) < min_length:
        raise InvalidInput(
            f"run id prefix {run_id!r} is too short: give at least {min_length} characters",
            field=field,
            hint=f"pass at least the first {min_length} characters of the id "
            "(`loopline runs ls` shows them)",
        )
    ctx = get_context()
    deferred.write_all()  # a run this process started but has not written yet
    found = backend_for(ctx).run_ids_starting(run_id, limit=2)
    if not found:
        raise NotFound(
            f"run {run_id!r} does not exist (no run id starts with it)",
            hint="list runs with `loopline runs ls` and check the id",
        )
    if len(found) > 1:
        raise InvalidInput(
            f"run id prefix {run_id!r} is ambiguous: it starts {found[0]}, {found[1]} and "
            "maybe more",
            field=field,
            hint="give more characters of the id",
        )
    return found[0]


def metric_history(run_id: str, key: str) -> list[MetricPoint]:
    """Every point of one metric as ``(step, timestamp, value)`` tuples, by step.

    Example:
        >>> # [p.value for p in ll.metric_history(run.id, "loss")]
    """
    check_key(key, "metric")  # None, 5 or '' found no points and said nothing
    ctx = get_context()
    deferred.write_all()
    ingest.flush_all()
    return backend_for(ctx).metric_history(run_id, key)


def search_runs(
    experiment: str | Sequence[str] | None = None,
    filter: str | None = None,
    order_by: Sequence[str] | str | None = None,
    max_results: int = 1000,
    page_token: str | None = None,
    view: ViewType = "active",
) -> RunPage:
    """Runs matching an MLflow-style filter, in order; ``.next_page_token`` pages on.

    ``experiment`` is a name or a list of names (None: every experiment). The grammar is
    in :mod:`loopline.tracking.search`: ``metrics.auc > 0.8 and params.model = 'lgbm'``.

    Example:
        >>> # page = ll.search_runs("churn", filter="metrics.auc > 0.8",
        >>> #                       order_by=["metrics.auc DESC"])
        >>> # best = page[0]; more = ll.search_runs("churn", page_token=page.next_page_token)
    """
    names, orders = check_run_search(
        experiments=[experiment] if isinstance(experiment, str) else experiment,
        filter=filter,
        order_by=[order_by] if isinstance(order_by, str) else order_by,
        max_results=max_results,
        page_token=page_token,
        view=view,
    )
    ctx = get_context()
    deferred.write_all()
    ingest.flush_all()
    backend = backend_for(ctx)
    result = backend.search_runs(
        experiments=names,
        filter=filter,
        order_by=orders,
        max_results=max_results,
        page_token=page_token,
        view=view,
    )
    return RunPage(Run._read(result.runs, ctx, backend), result.next_page_token)
