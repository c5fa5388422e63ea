"""The MLflow filter grammar, ordering and paging, against real SQLite and PostgreSQL."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

import loopline as ll
from loopline.core.context import Context
from loopline.errors import InvalidInput, NotFound
from loopline.tracking import experiments, lineage, run_creation, run_data, run_state
from loopline.tracking.entities import Metric, RunInput
from loopline.tracking.search import Comparison, parse_filter, parse_order_by

T0 = 1_700_000_000_000


@dataclass
class Fixture:
    ids: dict[str, str]


@pytest.fixture
def runs(ctx: Context) -> Fixture:
    """Five runs in 'search' (start times 1..5 s after T0) and one in 'other'."""
    return _fill(ctx)


@pytest.fixture(scope="module")
def filled_store(module_store: tuple[str, str]) -> tuple[str, str]:
    """The module's shared store (``module_store``) holding the runs of ``runs``, filled once
    for the tests that only search it (through ``filled``): filling a store for each of them
    cost ~0.1 s (SQLite) and ~0.3 s (PostgreSQL) a test."""
    uri, artifacts = module_store
    context = ll.init(uri=uri, artifacts=artifacts)
    try:
        _fill(context)
    finally:
        context.close()
    return module_store


@pytest.fixture
def filled(filled_store: tuple[str, str], module_ctx: Context) -> Context:
    """The current context, on the module's filled store (see ``filled_store``)."""
    return module_ctx


def _fill(ctx: Context) -> Fixture:
    exp = experiments.get_or_create_experiment(ctx.engine, "search")
    other = experiments.get_or_create_experiment(ctx.engine, "other")
    spec: list[tuple[str, str, dict[str, str], dict[str, float], dict[str, str]]] = [
        ("lgbm-1", "FINISHED", {"model": "lgbm", "lr": "0.1", "x": "a"}, {"auc": 0.91},
         {"team": "risk"}),
        ("lgbm-2", "FINISHED", {"model": "lgbm", "lr": "0.05", "pct": "10%"}, {"auc": 0.85},
         {"team": "fraud"}),
        ("xgb-1", "FAILED", {"model": "xgb", "lr": "0.3", "pct": "10x"},
         {"auc": 0.78, "val/auc": 0.7}, {"my tag": "x"}),
        ("rf-1", "RUNNING", {"model": "RF"}, {"auc": math.nan}, {}),
        ("none-5", "KILLED", {}, {}, {}),
    ]  # fmt: skip
    ids: dict[str, str] = {}
    for i, (name, status, params, metrics, tags) in enumerate(spec, start=1):
        run = run_creation.create_run(
            ctx.engine, exp.id, name=name, start_time=T0 + i * 1000, tags=tags
        )
        run_data.log_batch(
            ctx.engine,
            run.id,
            params=params,
            metrics=[Metric(k, v, T0, 0) for k, v in metrics.items()],
        )
        end = None if status == "RUNNING" else T0 + i * 1000 + 500
        run_state.update_run(ctx.engine, run.id, status=status, end_time=end)
        ids[name] = run.id
    lineage.log_inputs(
        ctx.engine, ids["lgbm-1"], [RunInput("dataset", "churn", "3", "d" * 64, "training")]
    )
    elsewhere = run_creation.create_run(ctx.engine, other.id, name="other-1", start_time=T0)
    run_data.log_batch(ctx.engine, elsewhere.id, metrics=[Metric("auc", 0.99, T0, 0)])
    ids["other-1"] = elsewhere.id
    return Fixture(ids)


def _names(filter_: str, experiment: str | list[str] | None = "search") -> set[str]:
    return {r.name or "" for r in ll.search_runs(experiment, filter=filter_)}


MATCHES = [
    ("metrics.auc > 0.8", {"lgbm-1", "lgbm-2"}),
    ("metrics.auc >= 0.85", {"lgbm-1", "lgbm-2"}),
    ("metrics.auc < 0.8", {"xgb-1"}),  # NaN matches nothing
    ("metrics.auc <= 0.78", {"xgb-1"}),
    ("metrics.auc = 0.78", {"xgb-1"}),
    # NaN satisfies != and nothing else, as in MLflow (its stored 0.0 never matches)
    ("metrics.auc != 0.78", {"lgbm-1", "lgbm-2", "rf-1"}),
    ("metrics.auc = 0", set()),
    ("metrics.auc <= 0", set()),
    ("metric.auc>0.9", {"lgbm-1"}),
    ("metrics.`val/auc` <= 0.7", {"xgb-1"}),
    ('metrics."val/auc" = 0.7', {"xgb-1"}),
    ("metrics.val/auc = 0.7", {"xgb-1"}),
    ("metrics.auc > -1e3", {"lgbm-1", "lgbm-2", "xgb-1"}),
    ("params.model = 'lgbm'", {"lgbm-1", "lgbm-2"}),
    ('params.model = "lgbm"', {"lgbm-1", "lgbm-2"}),
    ("params.model != 'lgbm'", {"xgb-1", "rf-1"}),  # a run without the param never matches
    ("params.model LIKE 'lg%'", {"lgbm-1", "lgbm-2"}),
    ("params.model LIKE '_gbm'", {"lgbm-1", "lgbm-2"}),
    ("params.model LIKE 'rf'", set()),  # LIKE is case-sensitive on both backends
    ("params.model ILIKE 'rf'", {"rf-1"}),
    ("params.pct LIKE '10\\%'", {"lgbm-2"}),  # an escaped % is a literal
    ("params.pct LIKE '10_'", {"lgbm-2", "xgb-1"}),
    ("params.model IN ('xgb', 'RF')", {"xgb-1", "rf-1"}),
    ("params.model NOT IN ('xgb', 'RF')", {"lgbm-1", "lgbm-2"}),
    ("metrics.auc > 0.8 and params.model = 'lgbm' and params.lr = '0.1'", {"lgbm-1"}),
    ("METRICS.auc > 0.8 AND Params.model = 'lgbm'", {"lgbm-1", "lgbm-2"}),
    ("params.model = 'lgbm' and tags.team = 'fraud'", {"lgbm-2"}),
    ("tags.team = 'risk'", {"lgbm-1"}),
    ("tags.`my tag` = 'x'", {"xgb-1"}),
    ("attributes.status = 'FINISHED'", {"lgbm-1", "lgbm-2"}),
    ("status = 'FAILED'", {"xgb-1"}),
    ("attr.status IN ('RUNNING', 'KILLED')", {"rf-1", "none-5"}),
    ("attributes.run_name LIKE 'lgbm%'", {"lgbm-1", "lgbm-2"}),
    ("run_name ILIKE 'XGB%'", {"xgb-1"}),
    (f"attributes.start_time > {T0 + 3000}", {"rf-1", "none-5"}),
    (f"attributes.end_time <= {T0 + 2500}", {"lgbm-1", "lgbm-2"}),
    # the other spellings MLflow's grammar takes
    (f"attributes.Created > {T0 + 3000}", {"rf-1", "none-5"}),
    (f"Created > {T0 + 3000}", {"rf-1", "none-5"}),
    ("attributes.`Run name` = 'xgb-1'", {"xgb-1"}),
    ("attributes.`run name` LIKE 'lgbm%'", {"lgbm-1", "lgbm-2"}),
    ("run.`Run Name` = 'rf-1'", {"rf-1"}),
    ("datasets.name = 'churn'", {"lgbm-1"}),
    (f"datasets.digest = '{'d' * 64}' and datasets.context = 'training'", {"lgbm-1"}),
    ("params.x = 'a'", {"lgbm-1"}),
    # MLflow's IS NULL / IS NOT NULL: whether the run has the param or tag at all
    ("params.pct IS NULL", {"lgbm-1", "rf-1", "none-5"}),
    ("params.pct is not null", {"lgbm-2", "xgb-1"}),
    ("tags.`my tag` IS NOT NULL", {"xgb-1"}),
    ("tags.team IS NULL and params.model IS NOT NULL and metrics.auc > 0.5", {"xgb-1"}),
    ("params.model IS NOT NULL and params.model != 'lgbm'", {"xgb-1", "rf-1"}),
    # SQL injection attempts: the whole quoted text is one bound value, matching nothing.
    ("params.x = 'a'' OR 1=1 --'", set()),
    ("params.x = 'a\\' OR \\'1\\'=\\'1'", set()),
    ("params.x LIKE '%'' OR ''1''=''1'", set()),
    ("", {"lgbm-1", "lgbm-2", "xgb-1", "rf-1", "none-5"}),
    # What MLflow's SearchUtils also takes: an AND leading, trailing or repeated (its
    # statement check lets every AND through), and a back-ticked prefix (trimmed by
    # _valid_entity_type), so a filter written for MLflow does not break here.
    ("metrics.auc > 0.8 AND", {"lgbm-1", "lgbm-2"}),
    ("AND metrics.auc > 0.8 and and params.model = 'lgbm' AND ", {"lgbm-1", "lgbm-2"}),
    ("AND", {"lgbm-1", "lgbm-2", "xgb-1", "rf-1", "none-5"}),
    ("`metrics`.auc > 0.8", {"lgbm-1", "lgbm-2"}),
    ("`metrics`.`val/auc` <= 0.7 and `params`.'model' = 'xgb'", {"xgb-1"}),
    ("`tags`.`my tag` = 'x' and `attributes`.status = 'FAILED'", {"xgb-1"}),
]


@pytest.mark.parametrize(("filter_", "expected"), MATCHES, ids=[f for f, _ in MATCHES])
def test_filter_matches(filled: Context, filter_: str, expected: set[str]) -> None:
    assert _names(filter_) == expected
    with filled.engine.connect() as conn:  # the injection attempts left the tables alone
        assert conn.execute(sa.text("SELECT count(*) FROM runs")).scalar_one() == 6


def test_run_id_attribute_and_experiment_selection(runs: Fixture, ctx: Context) -> None:
    a, b = runs.ids["lgbm-1"], runs.ids["xgb-1"]
    assert _names(f"attributes.run_id IN ('{a}', '{b}')") == {"lgbm-1", "xgb-1"}
    assert _names(f"run_id = '{a}'") == {"lgbm-1"}
    assert _names("metrics.auc > 0.95", ["search", "other"]) == {"other-1"}
    assert _names("metrics.auc > 0.95", None) == {"other-1"}
    with pytest.raises(NotFound, match="'missing'"):
        ll.search_runs("missing")
    with ctx.engine.connect() as conn:  # the injection attempts left the tables alone
        assert conn.execute(sa.text("SELECT count(*) FROM runs")).scalar_one() == 6


MALFORMED = [
    ("metrics.auc 0.8", 12, "expected a comparison operator"),
    ("metrics.auc > 0.8 and params.model 'lgbm'", 35, "expected a comparison operator"),
    ("metrics.auc > 'high'", 14, "expected a number"),
    ("params.model = lgbm", 15, "expected a quoted string"),
    ("params.model > 'a'", 13, "> cannot compare param 'model'"),
    ("metrics.auc LIKE 0.8", 12, "LIKE cannot compare metric 'auc'"),
    ("params.model = 'lgbm", 15, "unterminated '-quoted string"),
    ("foo.bar = 'x'", 0, "unknown prefix 'foo'"),
    ("bogus = 'x'", 0, "unknown identifier 'bogus'"),
    ("attributes.colour = 'x'", 0, "unknown attribute 'colour'"),
    ("datasets.size = 'x'", 0, "unknown dataset field 'size'"),
    ("metrics.auc > 0.8 or params.a = 'b'", 18, "OR is not supported"),
    ("metrics.auc > 0.8 params.a = 'b'", 18, "expected AND"),
    ("params.model IN 'a'", 16, "expected '('"),
    ("params.model IN ('a' 'b')", 21, "expected ',' or ')'"),
    ("params.model IN ('a', 1)", 22, "expected a quoted string in the list"),
    ("params.model NOT LIKE 'a'", 17, "expected IN after NOT"),
    ("metrics.auc IS NULL", 12, "IS NULL tests a param or tag (as in MLflow), not metric 'auc'"),
    ("status IS NOT NULL", 7, "IS NOT NULL tests a param or tag"),
    ("params.model IS 'a'", 16, "expected NULL or NOT NULL after IS"),
    ("params.model IS NOT 'a'", 20, "expected NULL or NOT NULL after IS"),
    ("metrics.auc > 0.8 and and 1", 26, "expected an identifier"),
    ("`metrics`. auc > 0.8", 11, "expected a key right after `metrics`."),
    ("`metrics`.= 1", 10, "expected a key right after `metrics`."),
    ("`foo`.bar = 'x'", 0, "unknown prefix 'foo'"),
    ("`metrics` > 0.8", 0, "expected an identifier"),
    ("metrics.auc > 0.8; DROP TABLE runs", 17, "unexpected character ';'"),
    ("tags.team = 'risk'; DROP TABLE runs; --'", 18, "unexpected character ';'"),
    ("metrics. = 1", 9, "expected a key after 'metrics.'"),
    ("= 1", 0, "expected an identifier"),
]


@pytest.mark.parametrize(("filter_", "pos", "message"), MALFORMED, ids=[f for f, *_ in MALFORMED])
def test_malformed_filter_names_the_position_with_a_caret(
    filled: Context, filter_: str, pos: int, message: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        ll.search_runs("search", filter=filter_)
    text = str(info.value)
    assert f"at position {pos}: {message}" in text
    assert f"\n    {filter_}\n    {' ' * pos}^" in text
    assert info.value.field == "filter"


@pytest.mark.parametrize(
    ("filter_", "pos", "size"),
    [
        ("params.m LIKE '" + "x" * 10_001 + "'", 14, "10,001"),
        ("tags.t ILIKE '" + "é" * 5_001 + "'", 13, "10,002"),
    ],
    ids=["like", "ilike-utf8"],
)
def test_a_like_pattern_past_the_limit_is_refused_at_its_place(
    filter_: str, pos: int, size: str
) -> None:
    # SQLite answered "LIKE or GLOB pattern too complex", which read as an outage (503).
    with pytest.raises(InvalidInput) as info:
        parse_filter(filter_)
    assert f"at position {pos}: a LIKE pattern may be at most 10,000 bytes" in str(info.value)
    assert f"this one has {size}" in str(info.value)


def test_parser_unquotes_keys_and_strings() -> None:
    assert parse_filter("tags.`a b` = 'it''s' and params.'k' = 'it\\'s'") == [
        Comparison("tag", "a b", "=", "it's", 0),
        Comparison("param", "k", "=", "it's", 25),
    ]
    assert parse_filter("metrics.m <> -0.5")[0] == Comparison("metric", "m", "!=", -0.5, 0)
    assert parse_filter("  ") == []


def test_order_by_metric_puts_nan_then_missing_last(filled: Context) -> None:
    # MLflow's order in both directions: numbers, NaN (rf-1), no metric (none-5); by start
    # time alone none-5 (the newer) would come first
    desc = [r.name for r in ll.search_runs("search", order_by=["metrics.auc DESC"])]
    assert desc == ["lgbm-1", "lgbm-2", "xgb-1", "rf-1", "none-5"]
    asc = [r.name for r in ll.search_runs("search", order_by="metrics.auc")]
    assert asc == ["xgb-1", "lgbm-2", "lgbm-1", "rf-1", "none-5"]
    # ordered through the filter's own join, which holds the NaN that != keeps
    ne = ll.search_runs("search", filter="metrics.auc != 0.85", order_by="metrics.auc DESC")
    assert [r.name for r in ne] == ["lgbm-1", "xgb-1", "rf-1"]
    ne = ll.search_runs("search", filter="metrics.auc != 0.85", order_by="metrics.auc")
    assert [r.name for r in ne] == ["xgb-1", "lgbm-1", "rf-1"]


def test_the_run_name_tag_is_the_run_name(ctx: Context) -> None:
    # MLflow keeps tags.mlflow.runName and the name in step, and its wire shows Loopline's
    # name as that tag; the SDK's runs have no such tag row, so a search of the tag rows
    # found none of them, ordered nothing and called every run nameless.
    for name in ("b-run", "a-run", "c"):
        with ll.start_run(experiment="names", name=name):
            pass
    with ll.start_run(experiment="tagged", name="its-name") as tagged:
        tagged.set_tag("mlflow.runName", "its-tag")  # the tag row is what MLflow shows

    def names(filter_: str | None = None, order_by: str | None = None) -> list[str | None]:
        return [r.name for r in ll.search_runs("names", filter=filter_, order_by=order_by)]

    # Which runs a filter finds (sorted: runs started in the same millisecond come in the
    # order of their ids by default, so the default order of these three is not fixed).
    assert names("tags.mlflow.runName = 'a-run'") == ["a-run"]
    assert sorted(names("tags.`mlflow.runName` LIKE '%-run'")) == ["a-run", "b-run"]
    assert sorted(names("tags.mlflow.runName != 'a-run'")) == ["b-run", "c"]
    assert names("tags.mlflow.runName IN ('b-run', 'x')") == ["b-run"]
    assert names("tags.mlflow.runName IS NULL") == []  # every run has a name, as in MLflow
    assert sorted(names("tags.mlflow.runName IS NOT NULL")) == ["a-run", "b-run", "c"]
    assert names(order_by="tags.mlflow.runName") == ["a-run", "b-run", "c"]
    assert names(order_by="tags.`mlflow.runName` DESC") == ["c", "b-run", "a-run"]
    found = ll.search_runs("tagged", filter="tags.mlflow.runName = 'its-tag'")
    assert [r.id for r in found] == [tagged.id]


def test_order_by_a_param_tested_for_null(filled: Context) -> None:
    # IS NOT NULL joins nothing: the order key still needs its own join
    page = ll.search_runs("search", filter="params.lr IS NOT NULL", order_by="params.lr DESC")
    assert [r.name for r in page] == ["xgb-1", "lgbm-1", "lgbm-2"]
    page = ll.search_runs("search", filter="params.lr IS NULL", order_by="params.lr DESC")
    assert [r.name for r in page] == ["none-5", "rf-1"]


def test_order_by_params_attributes_and_default(filled: Context) -> None:
    by_lr = [r.name for r in ll.search_runs("search", order_by=["params.lr ASC"])]
    assert by_lr == ["lgbm-2", "lgbm-1", "xgb-1", "none-5", "rf-1"]
    by_name = [r.name for r in ll.search_runs("search", order_by=["attributes.run_name"])]
    assert by_name == ["lgbm-1", "lgbm-2", "none-5", "rf-1", "xgb-1"]
    newest_first = [r.name for r in ll.search_runs("search")]
    assert newest_first == ["none-5", "rf-1", "xgb-1", "lgbm-2", "lgbm-1"]
    two_keys = ll.search_runs("search", order_by=["params.model DESC", "start_time ASC"])
    assert [r.name for r in two_keys][:3] == ["xgb-1", "lgbm-1", "lgbm-2"]
    assert parse_order_by(["tags.`my tag` desc"])[0].ascending is False
    # a back-ticked prefix, as MLflow's order_by parser takes it
    by_lr_quoted = [r.name for r in ll.search_runs("search", order_by=["`params`.`lr` ASC"])]
    assert by_lr_quoted == by_lr


def test_bad_order_by_names_the_position(filled: Context) -> None:
    with pytest.raises(InvalidInput, match="at position 12: expected ASC, DESC") as info:
        ll.search_runs("search", order_by=["metrics.auc DOWN"])
    assert info.value.field == "order_by"


def test_paging_returns_every_run_once(filled: Context) -> None:
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = ll.search_runs("search", max_results=2, page_token=token)
        seen += [r.id for r in page]
        pages += 1
        token = page.next_page_token
        if token is None:
            break
    assert pages == 3
    assert seen == [r.id for r in ll.search_runs("search")]
    assert len(set(seen)) == 5


def test_an_experiment_id_past_the_column_names_no_experiment(filled: Context) -> None:
    # 2**31 and up cannot be bound (SQLite overflows, PostgreSQL refuses to compare): such an
    # id matches nothing instead of failing, as an unknown id in range does.
    from loopline.tracking import query

    engine = filled.engine
    search = experiments.get_experiment_by_name(engine, "search").id
    for past in (2**31, 10**25):
        assert query.search_runs(engine, experiment_ids=[past]).runs == []
        mixed = query.search_runs(engine, experiment_ids=[past, search]).runs
        assert len(mixed) == 5


@pytest.mark.parametrize(
    "token",
    [
        "zzz",
        "e30=",
        "eyJvZmZzZXQiOiAtMX0=",  # {"offset": -1}
        "eyJvZmZzZXQiOjkyMjMzNzIwMzY4NTQ3NzU4MDh9",  # 2**63: SQLite overflowed, a 500
        "eyJvZmZzZXQiOnRydWV9",  # {"offset":true}: a bool is no offset
    ],
    ids=str,
)
def test_bad_page_token_and_max_results(filled: Context, token: str) -> None:
    with pytest.raises(InvalidInput, match="page token"):
        ll.search_runs("search", page_token=token)
    with pytest.raises(InvalidInput, match="max_results must be between 1 and 50000"):
        ll.search_runs("search", max_results=0)


def test_a_filter_or_order_past_what_one_query_joins_is_refused_naming_the_limit(
    filled: Context,
) -> None:
    """Each term joins a table; past 64 SQLite failed as 'unavailable, retry shortly' and
    SQLAlchemy recursed past its limit (a 500)."""
    from loopline.tracking.search import MAX_FILTER_TERMS, MAX_ORDER_KEYS

    most = " and ".join([f"metrics.m{i} > 0" for i in range(MAX_FILTER_TERMS)])
    assert ll.search_runs("search", filter=most, order_by=[
        f"params.p{i} DESC" for i in range(MAX_ORDER_KEYS)
    ]) == []  # fmt: skip
    with pytest.raises(InvalidInput, match="at most 50 comparisons") as info:
        ll.search_runs("search", filter=most + " and metrics.x > 0")
    assert info.value.field == "filter"
    with pytest.raises(InvalidInput, match="over the limit of 10") as info:
        ll.search_runs("search", order_by=[f"params.p{i}" for i in range(MAX_ORDER_KEYS + 1)])
    assert info.value.field == "order_by"
