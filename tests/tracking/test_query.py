"""Run search pages: one compiled statement per filter shape, each search with its own values."""

from __future__ import annotations

import pytest

from loopline.core.context import Context
from loopline.tracking import query, run_creation, run_data
from loopline.tracking.entities import Metric
from loopline.tracking.search import parse_filter, parse_order_by


@pytest.fixture
def three_runs(ctx: Context) -> dict[str, str]:
    ids = {}
    for n, model in enumerate(["alpha", "beta", "gamma"]):
        run = run_creation.create_run(ctx.engine, 0, name=f"run-{model}", start_time=1000 + n)
        run_data.log_batch(
            ctx.engine,
            run.id,
            params={"model": model, "depth": str(n)},
            tags={"team": "risk" if n else "growth"},
            metrics=[Metric("auc", 0.5 + n / 10, 1, 0), Metric("loss", 1 - n / 10, 1, 0)],
        )
        ids[model] = run.id
    return ids


def _names(ctx: Context, filter: str | None = None, order_by: list[str] | None = None) -> list[str]:
    page = query.search_runs(ctx.engine, experiment_ids=[0], filter=filter, order_by=order_by)
    return [r.name or "" for r in page.runs]


def test_searches_of_one_shape_each_bind_their_own_values(
    ctx: Context, three_runs: dict[str, str]
) -> None:
    assert _names(ctx, "params.model = 'alpha'") == ["run-alpha"]
    assert _names(ctx, "params.model = 'beta'") == ["run-beta"]
    assert _names(ctx, "params.depth = 'alpha'") == []  # the key is bound too
    assert _names(ctx, "params.model IN ('alpha', 'gamma')") == ["run-gamma", "run-alpha"]
    assert _names(ctx, "params.model IN ('beta')") == ["run-beta"]
    assert _names(ctx, "params.model LIKE 'g%'") == ["run-gamma"]
    assert _names(ctx, "params.model LIKE 'A%'") == []  # LIKE is case-sensitive
    assert _names(ctx, "tags.team = 'growth' and metrics.auc < 0.55") == ["run-alpha"]
    assert _names(ctx, "tags.team = 'risk' and metrics.loss < 0.85") == ["run-gamma"]
    assert _names(ctx, None, ["metrics.auc DESC"]) == ["run-gamma", "run-beta", "run-alpha"]
    assert _names(ctx, None, ["metrics.loss DESC"]) == ["run-alpha", "run-beta", "run-gamma"]
    assert _names(ctx, None, ["params.model ASC"]) == ["run-alpha", "run-beta", "run-gamma"]


def test_a_shape_is_compiled_once_whatever_its_values(
    ctx: Context, three_runs: dict[str, str]
) -> None:
    _names(ctx, "params.model = 'alpha'", ["metrics.auc DESC"])
    before = query._page_statement.cache_info()
    for model in ("beta", "gamma", "delta"):
        _names(ctx, f"params.model = '{model}'", ["metrics.loss DESC"])
    after = query._page_statement.cache_info()
    assert (after.hits - before.hits, after.misses - before.misses) == (3, 0)


def test_pages_and_experiments_are_bound_values_too(
    ctx: Context, three_runs: dict[str, str]
) -> None:
    first = query.search_runs(ctx.engine, experiment_ids=[0], max_results=2)
    rest = query.search_runs(
        ctx.engine, experiment_ids=[0], max_results=2, page_token=first.next_page_token
    )
    assert [r.name for r in first.runs + rest.runs] == ["run-gamma", "run-beta", "run-alpha"]
    assert rest.next_page_token is None
    assert query.search_runs(ctx.engine, experiment_ids=[12345]).runs == []
    assert query.search_runs(ctx.engine, experiment_ids=[]).runs == []
    assert len(query.search_runs(ctx.engine, experiment_ids=[0, 12345]).runs) == 3


def test_ordering_by_a_filtered_key_reuses_its_join_and_orders_the_same(ctx: Context) -> None:
    # Ties on the value fall back to start time (newest first), then run id; a run without
    # the metric, or with NaN, is not matched by the filter at all.
    for n, (auc, model) in enumerate(
        [(0.7, "b"), (0.9, "a"), (0.7, "a"), (float("nan"), "c"), (None, "b"), (0.9, "c")]
    ):
        run = run_creation.create_run(ctx.engine, 0, name=f"r{n}", start_time=1000 + n % 3)
        metrics = [] if auc is None else [Metric("auc", auc, 1, 0)]
        run_data.log_batch(ctx.engine, run.id, params={"model": model}, metrics=metrics)
    unfiltered = _names(ctx, None, ["metrics.auc DESC"])
    assert unfiltered[:4] == ["r5", "r1", "r2", "r0"] and set(unfiltered[4:]) == {"r3", "r4"}
    for order in (["metrics.auc DESC"], ["metrics.auc ASC"], ["params.model DESC", "run_name"]):
        reference = [
            name for name in _names(ctx, None, order) if name not in ("r3", "r4")
        ]  # the runs the filter below keeps, in the order of a search without it
        filtered = _names(ctx, "metrics.auc >= 0 and params.model != 'z'", order)
        assert filtered == reference, order
    comparisons = parse_filter("metrics.auc >= 0")
    keys = parse_order_by(["metrics.auc DESC"])
    statement = query._page_statement(
        ctx.engine.dialect,
        "active",
        1,
        tuple(query._comparison_shape(c) for c in comparisons),
        tuple(query._order_shape(k, comparisons) for k in keys),
    )
    assert "order_0" not in statement.sql and "filter_0.value DESC" in statement.sql
