from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Callable

import pytest

from loopline.core import audit
from loopline.core.context import Context
from loopline.errors import Conflict, InvalidInput, NotFound
from loopline.training import (
    registry_aliases,
    registry_checks,
    registry_logged_models,
    registry_models,
    registry_versions,
)


def test_versions_are_numbered_and_aliases_audited(ctx: Context) -> None:
    v1 = registry_versions.create_model_version(ctx, "churn", source="runs:/r1/model", run_id="r1")
    v2 = registry_versions.create_model_version(ctx, "churn", source="runs:/r2/model", run_id="r2")
    assert (v1.version, v2.version) == (1, 2)
    registry_aliases.set_alias(ctx, "churn", "champion", 1, reason="first")
    registry_aliases.set_alias(ctx, "churn", "champion", 2, reason="better AUC")
    assert registry_aliases.get_version_by_alias(ctx, "churn", "champion").version == 2
    assert registry_models.get_registered_model(ctx, "churn").aliases == {"champion": 2}
    moves = [
        e
        for e in audit.events(ctx.engine, object_type="registered_model")
        if e.action == "alias.set"
    ]
    assert [(m.before, m.after, m.reason) for m in moves] == [
        ({"champion": None}, {"champion": 1}, "first"),
        ({"champion": 1}, {"champion": 2}, "better AUC"),
    ]
    assert audit.verify(ctx.engine).ok


def test_errors_name_what_is_missing(ctx: Context) -> None:
    with pytest.raises(NotFound, match="'ghost'"):
        registry_models.get_registered_model(ctx, "ghost")
    registry_versions.create_model_version(ctx, "m", source=None, run_id=None)
    with pytest.raises(NotFound, match="no version 7"):
        registry_versions.get_model_version(ctx, "m", 7)
    with pytest.raises(NotFound, match="no alias 'prod'"):
        registry_aliases.get_version_by_alias(ctx, "m", "prod")
    with pytest.raises(Conflict):
        registry_models.create_registered_model(ctx, "m")


@pytest.mark.parametrize("name", ["../evil", "a/b", "", " lead", "x" * 300], ids=str)
def test_bad_model_names_are_rejected(ctx: Context, name: str) -> None:
    with pytest.raises(InvalidInput):
        registry_models.create_registered_model(ctx, name)


@pytest.mark.parametrize("alias", ["v3", "3", "bad alias", ""], ids=str)
def test_bad_aliases_are_rejected(ctx: Context, alias: str) -> None:
    registry_versions.create_model_version(ctx, "m", source=None, run_id=None)
    with pytest.raises(InvalidInput):
        registry_aliases.set_alias(ctx, "m", alias, 1)


def test_concurrent_writers_get_distinct_versions(ctx: Context) -> None:
    registry_models.create_registered_model(ctx, "busy")
    made: list[int] = []

    def worker() -> None:
        for _ in range(5):
            made.append(
                registry_versions.create_model_version(
                    ctx, "busy", source=None, run_id=None
                ).version
            )

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(made) == list(range(1, 21))


def test_logged_model_lifecycle(ctx: Context) -> None:
    m = registry_logged_models.create_logged_model(
        ctx,
        name="model",
        experiment_id="1",
        source_run_id="r",
        params={"depth": "3"},
        tags={"a": "b"},
    )
    assert m.status == "PENDING" and m.artifact_location.endswith(f"{m.model_id}/artifacts")
    registry_logged_models.update_logged_model(ctx, m.model_id, status="READY")
    registry_logged_models.set_logged_model_tags(ctx, m.model_id, {"c": "d"})
    got = registry_logged_models.get_logged_model(ctx, m.model_id)
    assert (got.status, got.tags, got.params) == ("READY", {"a": "b", "c": "d"}, {"depth": "3"})
    assert [
        x.model_id for x in registry_logged_models.search_logged_models(ctx, source_run_id="r")
    ] == [m.model_id]


@pytest.mark.parametrize(
    ("ref", "number"),
    [(3, 3), ("3", 3), ("007", 7), (" 3", None), ("+3", None), ("1_0", None), ("٣", None),
     ("²", None), ("", None), ("latest", None), (True, None), (None, None), (2.0, None),
     ("2147483647", 2**31 - 1), ("2147483648", None), (2**31, None), ("9" * 25, None),
     (-1, None)],
)  # fmt: skip
def test_a_version_number_is_an_int_or_ascii_digits(ref: object, number: int | None) -> None:
    assert registry_checks.version_number(ref) == number
    if number is None:
        with pytest.raises(InvalidInput, match="is not a version number") as info:
            registry_checks.require_version_number(ref)
        assert info.value.field == "version"


def _run_together(*workers: Callable[[], None]) -> list[BaseException]:
    """Run ``workers`` in threads at once; the exceptions they raised."""
    errors: list[BaseException] = []

    def guarded(work: Callable[[], None]) -> None:
        try:
            work()
        except BaseException as exc:  # the test reports every one
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_concurrent_alias_moves_queue_up_and_audit_true_befores(ctx: Context) -> None:
    # PostgreSQL: two moves of an alias not set yet (or deleted meanwhile) both inserted
    # it, and the second failed with a raw UniqueViolation; 'before' could be stale.
    for _ in range(3):
        registry_versions.create_model_version(ctx, "busy", source=None, run_id=None)

    def mover(k: int) -> Callable[[], None]:
        def work() -> None:
            for i in range(12):
                if (i + k) % 4 == 3:
                    with contextlib.suppress(NotFound):  # deleted by another mover first
                        registry_aliases.delete_alias(ctx, "busy", "champion")
                else:
                    registry_aliases.set_alias(
                        ctx, "busy", "champion", 1 + (i + k) % 3, reason=f"{k}"
                    )

        return work

    assert _run_together(*(mover(k) for k in range(4))) == []
    moves = [
        e
        for e in audit.events(ctx.engine, object_type="registered_model", object_id="busy")
        if e.action.startswith("alias.")
    ]
    assert len(moves) >= 36  # every set, and each delete that found the alias
    for earlier, later in itertools.pairwise(moves):  # each move starts where the last ended
        assert (earlier.after or {}).get("champion") == later.before["champion"]
    last = moves[-1].after
    assert registry_models.get_registered_model(ctx, "busy").aliases == (
        {} if last is None else last
    )
    assert audit.verify(ctx.engine).ok


def test_a_version_its_deployment_names_cannot_be_deleted(ctx: Context) -> None:
    # Deleting the served version broke serving (loopline serve: NotFound on start) and
    # took 'champion' with it, so the next gate skipped every change bound.
    import loopline as ll
    from tests.serving.helpers import good_model, register, toy_data

    data = toy_data(60)
    for _ in range(5):  # real models: a version no model server could load is not deployed
        register(good_model(data), "served", data)
    ll.deploy("served", 1)
    ll.deploy("served", 2, strategy="blue_green")  # 1 is the standby now
    ll.deploy("served", 3, strategy="canary", fallback=4)
    for version, role in ((1, "standby"), (2, "stable"), (3, "candidate"), (4, "fallback")):
        with pytest.raises(Conflict, match=f"version {version} of 'served' is the {role}"):
            registry_versions.delete_model_version(ctx, "served", version)
    assert [v.version for v in registry_versions.search_model_versions(ctx, name="served")] == [
        5,
        4,
        3,
        2,
        1,
    ]
    assert registry_models.get_registered_model(ctx, "served").aliases == {"champion": 2}
    with pytest.raises(Conflict, match="model 'served' is deployed"):
        registry_models.delete_registered_model(ctx, "served")
    # its servers and rollout load it by name: a rename would leave them nothing to load
    with pytest.raises(Conflict, match=r"model 'served' is deployed .* cannot be renamed"):
        registry_models.rename_registered_model(ctx, "served", "elsewhere")
    assert registry_models.get_registered_model(ctx, "served").aliases == {"champion": 2}
    registry_versions.delete_model_version(ctx, "served", 5)  # not deployed: deleted as before
    assert [v.version for v in registry_versions.search_model_versions(ctx, name="served")] == [
        4,
        3,
        2,
        1,
    ]
    registry_versions.create_model_version(ctx, "idle", source="runs:/r/model", run_id=None)
    registry_models.delete_registered_model(ctx, "idle")


def test_a_description_with_nul_is_refused_naming_it_on_both_backends(ctx: Context) -> None:
    # PostgreSQL raised a raw psycopg DataError; SQLite stored the NUL (then no restore onto
    # PostgreSQL could take it). Each writer of a description refuses it before writing.
    attempts: list[Callable[[], object]] = [
        lambda: registry_models.create_registered_model(ctx, "churn", description="a\x00b"),
        lambda: registry_versions.create_model_version(
            ctx, "churn", source="runs:/r/model", run_id="r", description="\x00"
        ),
    ]
    for attempt in attempts:
        with pytest.raises(InvalidInput, match="description contains a NUL character") as e:
            attempt()
        assert e.value.field == "description"
    v1 = registry_versions.create_model_version(ctx, "churn", source="runs:/r1/model", run_id="r1")
    for attempt in [
        lambda: registry_models.update_registered_model(ctx, "churn", "x\x00"),
        lambda: registry_versions.update_model_version(ctx, "churn", v1.version, "x\x00"),
    ]:
        with pytest.raises(InvalidInput, match="description contains a NUL character"):
            attempt()
    assert registry_models.get_registered_model(ctx, "churn").description is None
    assert [v.version for v in registry_versions.search_model_versions(ctx, name="churn")] == [1]


def test_a_name_pattern_past_the_like_limit_is_refused_naming_it(ctx: Context) -> None:
    # SQLite refused it as "too complex", which the server answered as an outage (503).
    with pytest.raises(InvalidInput, match="at most 10,000 bytes") as info:
        registry_models.search_registered_models(ctx, name_like="x" * 60_000)
    assert info.value.field == "name_like"


#: (key, value, what the message says): tag keys are checked as a run's, values too.
BAD_TAGS = [
    ("", "a", "non-empty"),
    ("k" * 70_000, "a", "over the limit of 250"),
    ("a\x00b", "v", "control character"),
    ("../up", "v", "'..' segment"),
    ("/abs", "v", "absolute path"),
    ("team", "a\x00b", "NUL"),
    ("team", "v" * 8001, "over the limit of 8000"),
]


@pytest.mark.parametrize(("key", "value", "said"), BAD_TAGS, ids=lambda v: repr(v)[:20])
def test_a_bad_registry_tag_is_refused_and_not_stored(
    ctx: Context, key: str, value: str, said: str
) -> None:
    registry_models.create_registered_model(ctx, "tagged")
    v1 = registry_versions.create_model_version(ctx, "tagged", source="runs:/r1/model", run_id="r1")
    attempts: list[Callable[[], object]] = [
        lambda: registry_models.set_registered_model_tag(ctx, "tagged", key, value),
        lambda: registry_versions.set_model_version_tag(ctx, "tagged", v1.version, key, value),
        lambda: registry_models.create_registered_model(ctx, "tagged-2", tags={key: value}),
        lambda: registry_versions.create_model_version(
            ctx, "tagged", source="runs:/r1/model", run_id="r1", tags={key: value}
        ),
    ]
    for attempt in attempts:
        with pytest.raises(InvalidInput, match=said) as info:
            attempt()
        assert info.value.field is not None and "tag" in info.value.field
    assert registry_models.get_registered_model(ctx, "tagged").tags == {}
    assert registry_versions.get_model_version(ctx, "tagged", 1).tags == {}
    assert [v.version for v in registry_versions.search_model_versions(ctx, name="tagged")] == [1]
    with pytest.raises(NotFound):
        registry_models.get_registered_model(ctx, "tagged-2")


def test_a_tag_at_the_limits_is_stored(ctx: Context) -> None:
    registry_models.set_registered_model_tag(
        ctx, registry_models.create_registered_model(ctx, "edge").name, "k" * 250, "v" * 8000
    )
    assert registry_models.get_registered_model(ctx, "edge").tags == {"k" * 250: "v" * 8000}


#: Sources that name no artifact of this server (or climb out of one), and why.
BAD_SOURCES = [
    ("\x00../../etc/passwd", "not an artifact URI"),
    ("file:///etc/passwd", "not an artifact URI"),
    ("/etc", "not an artifact URI"),
    ("../../etc", "not an artifact URI"),
    ("s3://bucket/model", "not an artifact URI"),
    ("mlflow-artifacts:/../../etc", "'..' segment"),
    ("mlflow-artifacts:/0/r/artifacts/../../../etc", "'..' segment"),
    ("mlflow-artifacts:/%2e%2e/%2e%2e/etc", "'..' segment"),
    ("mlflow-artifacts://elsewhere:5000/0/r/artifacts/m", "absolute"),
    ("runs:/r1/../../model", "'..' segment"),
    ("runs:/r1/model\x00", "control character"),
    ("models:/", "names no model"),
    ("", "non-empty"),
    ("runs:/r1/" + "m" * 600, "over the limit of 500"),
]


@pytest.mark.parametrize(("source", "said"), BAD_SOURCES, ids=lambda v: repr(v)[:30])
def test_a_source_that_is_no_artifact_uri_of_this_server_is_refused(
    ctx: Context, source: str, said: str
) -> None:
    with pytest.raises(InvalidInput, match=said) as info:
        registry_versions.create_model_version(ctx, "sourced", source=source, run_id=None)
    assert info.value.field == "source"
    assert len(info.value.message) < 300  # a long source is not echoed whole
    with pytest.raises(NotFound):
        registry_versions.get_model_version(ctx, "sourced", 1)


@pytest.mark.parametrize(
    "source",
    [
        "runs:/0a1b2c3d/model",
        "models:/m-0123456789abcdef",
        "models:/churn/3",
        "models:/churn@champion",
        "mlflow-artifacts:/1/0a1b2c3d/artifacts/model",
    ],
)
def test_what_the_sdk_and_the_mlflow_client_register_from_is_kept(
    ctx: Context, source: str
) -> None:
    assert (
        registry_versions.create_model_version(ctx, "sourced", source=source, run_id=None).source
        == source
    )


def test_a_rename_moves_versions_tags_aliases_and_verdicts(ctx: Context) -> None:
    from loopline.delivery.verdicts import GateVerdict, store_verdict, verdicts

    registry_models.create_registered_model(ctx, "old", description="d", tags={"team": "growth"})
    for run in ("r1", "r2"):
        registry_versions.create_model_version(ctx, "old", source=f"runs:/{run}/model", run_id=run)
    registry_versions.delete_model_version(ctx, "old", 2)
    registry_versions.create_model_version(ctx, "old", source="runs:/r3/model", run_id="r3")
    registry_versions.set_model_version_tag(ctx, "old", 1, "validated", "yes")
    registry_aliases.set_alias(ctx, "old", "champion", 1)
    store_verdict(ctx, GateVerdict("old", 1, True, ["ok"], {}, [], None, "ds@1", {}))
    before = registry_models.get_registered_model(ctx, "old")

    renamed = registry_models.rename_registered_model(ctx, "old", "new")

    assert (renamed.name, renamed.description, renamed.tags) == ("new", "d", {"team": "growth"})
    assert renamed.aliases == {"champion": 1} and renamed.latest_version == 3
    assert renamed.last_updated_time >= before.last_updated_time
    assert renamed.creation_time == before.creation_time
    assert [v.version for v in registry_versions.search_model_versions(ctx, name="new")] == [3, 1]
    assert registry_versions.get_model_version(ctx, "new", 1).tags["validated"] == "yes"
    assert registry_aliases.get_version_by_alias(ctx, "new", "champion").run_id == "r1"
    assert [v.version for v in verdicts("new", ctx=ctx)] == [1] and not verdicts("old", ctx=ctx)
    with pytest.raises(NotFound, match="'old'"):
        registry_models.get_registered_model(ctx, "old")
    assert registry_versions.search_model_versions(ctx, name="old") == []
    # a deleted version's number is still not given again under the new name
    assert (
        registry_versions.create_model_version(ctx, "new", source="runs:/r4/m", run_id=None).version
        == 4
    )
    renames = [e for e in audit.events(ctx.engine, object_type="registered_model")]
    rename = [e for e in renames if e.action == "model.rename"]
    assert [(e.object_id, e.before, e.after) for e in rename] == [
        ("new", {"name": "old"}, {"name": "new"})
    ]
    assert audit.verify(ctx.engine).ok


def test_a_rename_refuses_a_taken_name_an_unknown_model_and_a_bad_name(ctx: Context) -> None:
    registry_versions.create_model_version(ctx, "a", source="runs:/r/model", run_id=None)
    registry_models.create_registered_model(ctx, "b")
    with pytest.raises(Conflict, match="registered model 'b' already exists"):
        registry_models.rename_registered_model(ctx, "a", "b")
    with pytest.raises(NotFound, match="'ghost'"):
        registry_models.rename_registered_model(ctx, "ghost", "c")
    with pytest.raises(InvalidInput, match=r"new_name '\.\./x'") as info:
        registry_models.rename_registered_model(ctx, "a", "../x")
    assert info.value.field == "new_name"
    assert registry_models.rename_registered_model(ctx, "a", "a").latest_version == 1  # a no-op
    assert [m.name for m in registry_models.search_registered_models(ctx)] == ["a", "b"]
    assert registry_versions.get_model_version(ctx, "a", 1).source == "runs:/r/model"
