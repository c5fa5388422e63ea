"""Deployments without a server: strategies, gates, force with a reason, audit, history."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import loopline as ll
from loopline.core import audit
from loopline.core.context import Context
from loopline.errors import Conflict, IntegrityError, InvalidInput, NotFound, PermissionDenied
from loopline.serving.canary import Analysis
from loopline.serving.control import next_state
from loopline.serving.deploy import (
    deployments_of_version,
    get_deployment,
    history,
    list_deployments,
    promote,
    rollback,
)
from loopline.serving.policy import RolloutPolicy, check_options
from loopline.serving.tables import STRATEGIES
from loopline.training import registry_versions
from tests.conftest import seeded
from tests.serving.helpers import corrupt, good_model, register, toy_data, weak_model

GATE = {"label": "label", "metrics": {"accuracy": {"lower": 0.99}}}


@seeded
def versions() -> tuple[int, int, int]:
    """Three versions of ``churn`` (good, weak, good), in the test's ``ctx`` store."""
    data = toy_data(200)
    return (
        register(good_model(data), "churn", data),
        register(weak_model(data), "churn", data),
        register(good_model(data), "churn", data),
    )


def test_a_blocked_challenger_cannot_be_deployed_unless_forced_with_a_reason(
    ctx: Context, versions: tuple[int, int, int]
) -> None:
    v1, v2, _ = versions
    ll.deploy("churn", v1)
    ll.datasets.register("holdout", toy_data(120, seed=1))
    verdict = ll.gates.evaluate("churn", v2, "holdout@1", GATE)
    assert not verdict.blessed
    with pytest.raises(PermissionDenied, match="blocked by its gate verdict") as blocked:
        ll.deploy("churn", v2, strategy="canary")
    assert "force" in (blocked.value.hint or "")
    with pytest.raises(InvalidInput, match="needs a reason") as no_reason:
        ll.deploy("churn", v2, strategy="canary", force=True)
    assert no_reason.value.field == "reason"
    assert get_deployment("churn").candidate_version is None  # nothing changed

    d = ll.deploy("churn", v2, strategy="canary", force=True, reason="hotfix INC-42")
    assert (d.candidate_version, d.traffic) == (v2, 5.0)
    forced = audit.events(ctx.engine, object_type="model_version", object_id=f"churn/{v2}")
    override = [e for e in forced if e.action == "deployment.force"]
    assert len(override) == 1 and override[0].reason == "hotfix INC-42"
    assert override[0].before["verdict_id"] == verdict.id
    deployed = audit.events(ctx.engine, object_type="deployment", object_id="churn")
    assert deployed[-1].action == "deployment.deploy.canary"
    assert deployed[-1].reason == "hotfix INC-42"
    assert audit.verify(ctx.engine).ok


def test_a_blocked_version_cannot_be_the_fallback_unless_forced(
    ctx: Context, versions: tuple[int, int, int]
) -> None:
    # The fallback answers clients whenever the serving version fails: a version its gate
    # blocked was kept out as the version and let in as the fallback.
    v1, v2, v3 = versions
    ll.deploy("churn", v1)
    ll.datasets.register("holdout", toy_data(120, seed=1))
    assert not ll.gates.evaluate("churn", v2, "holdout@1", GATE).blessed
    with pytest.raises(PermissionDenied, match=f"fallback version {v2} of 'churn' is blocked"):
        ll.deploy("churn", v3, fallback=v2)
    assert get_deployment("churn").stable_version == v1  # nothing changed
    d = ll.deploy("churn", v3, fallback=v2, force=True, reason="v2 is better than nothing")
    assert (d.stable_version, d.fallback_version) == (v3, v2)
    forced = audit.events(ctx.engine, object_type="model_version", object_id=f"churn/{v2}")
    assert [e.after["as"] for e in forced if e.action == "deployment.force"] == ["fallback version"]


def test_a_verdict_against_an_older_champion_is_stale(
    ctx: Context, versions: tuple[int, int, int]
) -> None:
    # v3 was blessed against v1; v4 has served (and been the champion) since, so the verdict
    # says nothing about whether v3 is better than what serves now.
    v1, _, v3 = versions
    data = toy_data(200)
    v4 = register(good_model(data), "churn", data)
    passing = {"label": "label", "metrics": {"accuracy": {"lower": 0.5}}}
    ll.deploy("churn", v1)
    ll.datasets.register("holdout", toy_data(120, seed=1))
    assert ll.gates.evaluate("churn", v3, "holdout@1", passing).champion_version == v1
    assert ll.gates.evaluate("churn", v4, "holdout@1", passing).champion_version == v1
    ll.deploy("churn", v4)
    assert ll.registry.get("churn", "champion").version == v4
    with pytest.raises(PermissionDenied, match=f"against version {v1}.*now version {v4}") as e:
        ll.deploy("churn", v3, strategy="canary")
    assert "stale" in e.value.message and "gate it again" in (e.value.hint or "")
    assert get_deployment("churn").candidate_version is None
    # As the fallback, a stale blessing is fine: it answers only when v4 fails.
    assert ll.deploy("churn", v4, fallback=v3).fallback_version == v3
    again = ll.gates.evaluate("churn", v3, "holdout@1", passing)
    assert again.blessed and again.champion_version == v4
    assert ll.deploy("churn", v3, strategy="canary").candidate_version == v3
    rollback("churn")
    # v4's verdict was made against v1 too, but v4 is the champion: nothing newer to beat.
    assert ll.deploy("churn", v4, strategy="blue_green").stable_version == v4


def test_going_back_from_a_champion_forced_past_its_gate_needs_no_new_verdict(
    ctx: Context, versions: tuple[int, int, int]
) -> None:
    # v1 was blessed with no champion; v2, blocked, was forced in and became the champion.
    # v2 is no bar to clear: going back to v1 is not refused as stale.
    v1, v2, _ = versions
    ll.datasets.register("holdout", toy_data(120, seed=1))
    passing = {"label": "label", "metrics": {"accuracy": {"lower": 0.5}}}
    assert ll.gates.evaluate("churn", v1, "holdout@1", passing).champion_version is None
    ll.deploy("churn", v1)
    assert not ll.gates.evaluate("churn", v2, "holdout@1", GATE).blessed
    ll.deploy("churn", v2, force=True, reason="hotfix INC-7")
    assert ll.registry.get("churn", "champion").version == v2
    assert ll.deploy("churn", v1, strategy="canary").candidate_version == v1


def test_a_version_deleted_while_it_is_deployed_is_never_served(
    ctx: Context, versions: tuple[int, int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # deploy() checks the version exists, then writes the deployment in a later
    # transaction; a delete in between left a canary naming a version no server can load
    # (the delete saw no deployment naming it yet).
    import loopline.serving.deploy as deploy_module

    v1, v2, _ = versions
    ll.deploy("churn", v1)
    gate = deploy_module._gate

    def gate_then_delete(*args: object, **kwargs: object) -> None:
        gate(*args, **kwargs)  # type: ignore[arg-type]
        registry_versions.delete_model_version(ctx, "churn", v2)

    monkeypatch.setattr(deploy_module, "_gate", gate_then_delete)
    with pytest.raises(Conflict, match=f"version {v2} of 'churn' was deleted while"):
        ll.deploy("churn", v2, strategy="canary")
    d = get_deployment("churn")
    assert (d.stable_version, d.candidate_version, d.revision) == (v1, None, 1)


def test_each_strategy_sets_traffic_and_rollback_and_promote_undo_or_finish_it(
    ctx: Context, versions: tuple[int, int, int]
) -> None:
    v1, v2, v3 = versions
    with pytest.raises(InvalidInput, match="no deployment yet"):
        ll.deploy("churn", v2, strategy="canary")
    d = ll.deploy("churn", v1)
    assert (d.phase, d.stable_version, d.revision) == ("stable", v1, 1)

    d = ll.deploy("churn", v2, strategy="ab", split=20)
    assert (d.phase, d.candidate_version, d.traffic) == ("ab", v2, 20.0)
    with pytest.raises(Conflict, match="in progress"):
        ll.deploy("churn", v3, strategy="canary")
    d = rollback("churn", reason="B lost")
    assert (d.phase, d.stable_version, d.candidate_version) == ("stable", v1, None)

    d = ll.deploy("churn", v2, strategy="shadow")
    assert (d.phase, d.traffic) == ("shadow", 0.0)
    d = promote("churn", reason="shadow agrees")
    assert (d.stable_version, d.standby_version, d.candidate_version) == (v2, v1, None)

    d = ll.deploy("churn", v3, strategy="blue_green")
    assert (d.stable_version, d.standby_version) == (v3, v2)
    assert d.versions() == [v3, v2]  # blue/green keeps the standby loaded
    d = rollback("churn")
    assert (d.stable_version, d.standby_version) == (v2, v3)

    d = ll.deploy("churn", v1, strategy="canary", steps=[10, 60])
    assert (d.traffic, d.policy.steps) == (10.0, [10.0, 60.0, 100.0])
    assert [e.action for e in history("churn")] == [
        "deploy.direct",
        "deploy.ab",
        "rollback",
        "deploy.shadow",
        "promote",
        "deploy.blue_green",
        "rollback",
        "deploy.canary",
    ]
    assert [x.name for x in list_deployments()] == ["churn"]
    assert {e.action for e in deployments_of_version("churn", v3)} == {"deploy.blue_green"}
    revisions = [e.revision for e in history("churn")]
    assert revisions == list(range(1, 9))


def test_bad_deploy_arguments_are_named(ctx: Context, versions: tuple[int, int, int]) -> None:
    v1, _, _ = versions
    with pytest.raises(InvalidInput) as strategy:
        ll.deploy("churn", v1, strategy="yolo")
    assert strategy.value.field == "strategy"
    with pytest.raises(InvalidInput) as policy:
        ll.deploy("churn", v1, window_reqests=5)
    assert policy.value.field == "window_reqests"
    with pytest.raises(InvalidInput) as steps:
        ll.deploy("churn", v1, steps=[50, 20])
    assert steps.value.field == "steps" and "increase" in steps.value.message
    with pytest.raises(NotFound, match="no version 99"):
        ll.deploy("churn", 99)
    for spelled, field in ((" 1", "version"), ("1.0", "version"), ("+1", "fallback")):
        with pytest.raises(InvalidInput, match="is not a version number") as bad:
            if field == "version":
                ll.deploy("churn", spelled)
            else:
                ll.deploy("churn", v1, fallback=spelled)
        assert bad.value.field == field
    with pytest.raises(NotFound, match="no version 42"):
        ll.deploy("churn", v1, fallback=42)
    with pytest.raises(NotFound, match="not deployed"):
        rollback("churn")
    ll.deploy("churn", v1)
    with pytest.raises(Conflict, match="nothing to roll back"):
        rollback("churn")
    with pytest.raises(Conflict, match="no candidate"):
        promote("churn")
    with pytest.raises(InvalidInput, match="already the stable"):
        ll.deploy("churn", v1, strategy="ab")
    with pytest.raises(InvalidInput, match="fallback version 2 is the version being") as same:
        ll.deploy("churn", 2, fallback=2)
    assert same.value.field == "fallback"


def test_the_deploy_command_refuses_an_empty_canary_step(
    ctx: Context, versions: tuple[int, int, int]
) -> None:
    from typer.testing import CliRunner

    from loopline.cli.main import app

    v1, v2, _ = versions
    ll.deploy("churn", v1)
    for steps in ("5,,50", "5,50,", " "):
        done = CliRunner().invoke(
            app, ["deploy", "churn", str(v2), "-s", "canary", "--steps", steps]
        )
        assert isinstance(done.exception, InvalidInput), (steps, done.output)
        assert done.exception.field == "steps" and done.exception.exit_code == 2
    assert get_deployment("churn").candidate_version is None  # nothing was rolled out


def test_canary_steps_advance_then_promote_or_roll_back(
    ctx: Context, versions: tuple[int, int, int]
) -> None:
    v1, v2, _ = versions
    ll.deploy("churn", v1)
    d = ll.deploy("churn", v2, strategy="canary", steps=[5, 25, 100])
    passed = Analysis("pass", "4/4 checks passed")
    d1, action = next_state(d, passed)
    assert (action, d1.traffic, d1.step) == ("canary.step", 25.0, 1)
    d2, action = next_state(d1, passed)
    assert action == "canary.promote"
    assert (d2.stable_version, d2.candidate_version, d2.standby_version) == (v2, None, v1)
    d3, action = next_state(d1, Analysis("fail", "error rate 20% > 1%"))
    assert action == "canary.rollback"
    assert (d3.stable_version, d3.candidate_version, d3.traffic) == (v1, None, 0.0)
    assert "error rate 20%" in (d3.status or "")


def test_the_deploy_and_deployments_commands(ctx: Context, versions: tuple[int, int, int]) -> None:
    import orjson
    from typer.testing import CliRunner

    from loopline.cli.main import app

    v1, v2, _ = versions
    run = CliRunner().invoke
    assert run(app, ["deploy", "churn", str(v1)]).exit_code == 0
    out = run(
        app,
        [
            "deploy",
            "churn",
            str(v2),
            "--strategy",
            "canary",
            "--steps",
            "10,50",
            "--window-requests",
            "50",
            "--fallback",
            str(v1),
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    shown = orjson.loads(out.stdout)
    assert (shown["candidate"], shown["traffic"], shown["fallback"]) == (v2, 10.0, v1)
    assert shown["policy"]["steps"] == [10.0, 50.0, 100.0]
    listed = orjson.loads(run(app, ["deployments", "ls", "--json"]).stdout)
    assert [d["name"] for d in listed] == ["churn"]
    show = run(app, ["deployments", "show", "churn"])
    assert show.exit_code == 0 and "canary of v2 at 10%" in show.stdout
    assert "deploy.canary" in show.stdout
    promoted = orjson.loads(
        run(app, ["deployments", "promote", "churn", "--reason", "good", "--json"]).stdout
    )
    assert (promoted["stable"], promoted["candidate"]) == (v2, None)
    back = run(app, ["deployments", "rollback", "churn", "--reason", "regret"])
    assert back.exit_code == 0 and "serves v1" in back.stdout
    bad = run(app, ["deploy", "churn", str(v1), "--steps", "5,x"])
    assert isinstance(bad.exception, InvalidInput) and bad.exception.field == "steps"
    events = [e.reason for e in history("churn")]
    assert events[-2:] == ["good", "regret"]


def test_champion_follows_the_stable_version_with_an_audited_move(
    ctx: Context, versions: tuple[int, int, int]
) -> None:
    v1, v2, v3 = versions

    def champion() -> int:
        return ll.registry.get("churn", "champion").version

    ll.deploy("churn", v1)
    assert champion() == v1  # the first deploy names the champion the gates compare with
    ll.deploy("churn", v3, strategy="canary")
    assert champion() == v1  # a candidate does not replace it
    rollback("churn", reason="canary regressed")
    assert champion() == v1
    ll.deploy("churn", v3, strategy="canary")
    promote("churn", reason="canary passed")
    assert champion() == v3
    ll.deploy("churn", v2, strategy="blue_green", force=True, reason="test the switch back")
    assert champion() == v2
    rollback("churn", reason="switch back")
    assert champion() == v3
    moves = [
        e
        for e in audit.events(ctx.engine, object_type="registered_model", object_id="churn")
        if e.action == "alias.set"
    ]
    assert [m.after["champion"] for m in moves] == [v1, v3, v2, v3]
    assert "after promote" in (moves[1].reason or "")
    assert audit.verify(ctx.engine).ok


def test_deploys_and_alias_moves_at_once_neither_deadlock_nor_fail(
    ctx: Context, versions: tuple[int, int, int]
) -> None:
    # PostgreSQL: a deploy took the audit head and then the champion alias, a person's move
    # the alias and then the audit head - DeadlockDetected for one of them (or a raw
    # UniqueViolation when both inserted the alias). Versions 1 to 3, all deployable.
    assert versions == (1, 2, 3)
    ll.deploy("churn", 1)
    errors: list[BaseException] = []

    def deployer(k: int) -> None:
        for i in range(12):
            try:
                ll.deploy("churn", 2 + (i + k) % 2)
            except Conflict:  # the other deployer changed it meanwhile: said as such
                pass
            except BaseException as exc:  # the test reports every one
                errors.append(exc)

    def mover(k: int) -> None:
        for i in range(12):
            try:
                ll.registry.set_alias("churn", "champion", 1 + (i + k) % 3, reason="person")
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=f, args=(k,)) for f in (deployer, mover) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert audit.verify(ctx.engine).ok


def test_a_reason_with_nul_is_refused_and_nothing_moves(
    ctx: Context, versions: tuple[int, int, int]
) -> None:
    # PostgreSQL raised a raw psycopg DataError from the deployment event's insert.
    v1, v2, _ = versions
    ll.deploy("churn", v1)
    with pytest.raises(InvalidInput, match="reason contains a NUL character") as e:
        ll.deploy("churn", v2, reason="hotfix\x00")
    assert e.value.field == "reason"
    assert get_deployment("churn").stable_version == v1


#: Which strategies read each rollout option: split the A/B test, timeout_ms every
#: strategy, every other option (steps, the window, the checks) the canary.
EXPECTED_USERS = {"split": {"ab"}, "timeout_ms": set(STRATEGIES)}


@pytest.mark.parametrize("option", list(RolloutPolicy.model_fields))
def test_every_rollout_option_is_checked_against_every_strategy(option: str) -> None:
    users = EXPECTED_USERS.get(option, {"canary"})
    for strategy in STRATEGIES:
        if strategy in users:
            check_options(strategy, [option])
            continue
        with pytest.raises(InvalidInput) as refused:
            check_options(strategy, [option])
        assert refused.value.field == option
        assert refused.value.message.startswith(f"{option} is only used with strategy ")
        assert f"not {strategy}" in refused.value.message


@pytest.mark.parametrize(
    ("strategy", "options", "words"),
    [
        ("direct", {"split": 20}, "split is only used with strategy ab"),
        ("direct", {"steps": [5, 50]}, "steps is only used with strategy canary"),
        ("blue_green", {"steps": [5, 50]}, "steps is only used with strategy canary"),
        ("shadow", {"split": 10}, "split is only used with strategy ab"),
        ("ab", {"split": 20, "steps": [5, 50]}, "steps is only used with strategy canary"),
        ("ab", {"window_requests": 50}, "window_requests is only used with strategy canary"),
        ("canary", {"split": 20}, "split is only used with strategy ab"),
        ("shadow", {"max_psi": 0.1}, "max_psi is only used with strategy canary"),
    ],
)
def test_an_option_the_strategy_does_not_read_is_refused_and_nothing_moves(
    ctx: Context, versions: tuple[int, int, int], strategy: str, options: dict[str, Any], words: str
) -> None:
    """``split=20`` without ``strategy="ab"`` was ignored: version 2 took all the traffic."""
    v1, v2, _ = versions
    ll.deploy("churn", v1)
    with pytest.raises(InvalidInput, match=words) as refused:
        ll.deploy("churn", v2, strategy=strategy, **options)
    assert refused.value.field in options
    d = get_deployment("churn")
    assert (d.stable_version, d.candidate_version, d.revision) == (v1, None, 1)
    assert ll.registry.get("churn", "champion").version == v1


def test_the_options_each_strategy_reads_are_taken(
    ctx: Context, versions: tuple[int, int, int]
) -> None:
    v1, v2, v3 = versions
    ll.deploy("churn", v1, timeout_ms=50)
    d = ll.deploy("churn", v2, strategy="ab", split=20, timeout_ms=50)
    assert (d.traffic, d.policy.timeout_ms) == (20.0, 50.0)
    rollback("churn")
    d = ll.deploy("churn", v2, strategy="canary", steps=[5, 50], window_requests=50, alpha=0.05)
    assert (d.traffic, d.policy.window_requests, d.policy.alpha) == (5.0, 50, 0.05)
    rollback("churn")
    for strategy in ("shadow", "blue_green"):
        d = ll.deploy("churn", v3, strategy=strategy, timeout_ms=20)
        assert d.policy.timeout_ms == 20.0
        if d.candidate_version is not None:
            rollback("churn")


def test_the_deploy_command_refuses_an_option_its_strategy_does_not_read(
    ctx: Context, versions: tuple[int, int, int]
) -> None:
    from typer.testing import CliRunner

    from loopline.cli.main import app

    v1, v2, _ = versions
    ll.deploy("churn", v1)
    for args, option in (
        (["--split", "20"], "split"),  # forgot --strategy ab
        (["--steps", "5,50"], "steps"),
        (["-s", "shadow", "--window-requests", "50"], "window_requests"),
        (["-s", "ab", "--window-seconds", "60"], "window_seconds"),
    ):
        done = CliRunner().invoke(app, ["deploy", "churn", str(v2), *args])
        assert isinstance(done.exception, InvalidInput), (args, done.output)
        assert done.exception.field == option and done.exception.exit_code == 2
    assert get_deployment("churn").revision == 1


def test_a_version_whose_files_are_corrupted_or_missing_is_not_deployed(
    ctx: Context, versions: tuple[int, int, int]
) -> None:
    """Deploying it was accepted and moved the champion; every server that started after
    could then serve nothing (503) and answered predictions 404 "deploy one"."""
    v1, v2, v3 = versions
    ll.deploy("churn", v1)
    corrupt(ctx, "churn", v2)
    for forced in (False, True):  # force overrides a gate, not missing bytes
        with pytest.raises(IntegrityError) as refused:
            ll.deploy("churn", v2, force=forced, reason="hotfix" if forced else None)
        message = refused.value.message
        assert message.startswith(f"cannot deploy version {v2} of 'churn': the model servers")
        assert f"model.skops of models:/churn/{v2} is corrupted" in message
        assert "backup" in (refused.value.hint or "")
    with pytest.raises(IntegrityError, match=f"fallback version {v2} of 'churn'"):
        ll.deploy("churn", v3, fallback=v2)
    with pytest.raises(IntegrityError, match=f"version {v2} of 'churn'"):
        ll.deploy("churn", v2, strategy="canary")
    d = get_deployment("churn")
    assert (d.stable_version, d.candidate_version, d.revision) == (v1, None, 1)
    assert ll.registry.get("churn", "champion").version == v1

    path = corrupt(ctx, "churn", v3)
    path.unlink()
    with pytest.raises(IntegrityError, match="is missing from the artifact store"):
        ll.deploy("churn", v3)
    assert get_deployment("churn").revision == 1
    with pytest.raises(IntegrityError, match="is corrupted"):
        ll.registry.verify("churn", v2)
    assert ll.registry.verify("churn", v1).version == v1


def test_the_deploy_command_exits_6_for_a_corrupted_version(
    ctx: Context, versions: tuple[int, int, int]
) -> None:
    from typer.testing import CliRunner

    from loopline.cli.main import app

    v1, v2, _ = versions
    ll.deploy("churn", v1)
    corrupt(ctx, "churn", v2)
    done = CliRunner().invoke(app, ["deploy", "churn", str(v2)])
    assert isinstance(done.exception, IntegrityError) and done.exception.exit_code == 6
    assert get_deployment("churn").stable_version == v1


def test_a_version_the_mlflow_client_logged_is_not_deployed(ctx: Context) -> None:
    registry_versions.create_model_version(ctx, "legacy", source="runs:/abc/model", run_id=None)
    with pytest.raises(InvalidInput, match="logged by the MLflow client") as refused:
        ll.deploy("legacy", 1)
    assert refused.value.field == "version"
    assert "could not load it" in refused.value.message
    with pytest.raises(NotFound):
        get_deployment("legacy")


def test_a_candidate_whose_files_rotted_after_its_deploy_is_not_promoted(
    ctx: Context, versions: tuple[int, int, int]
) -> None:
    """promote moved a canary to stable without looking at its files: every server that
    started after served nothing, and the champion alias pointed at unloadable bytes."""
    v1, _, v3 = versions
    ll.deploy("churn", v1)
    ll.deploy("churn", v3, strategy="canary")
    corrupt(ctx, "churn", v3)
    with pytest.raises(IntegrityError) as refused:
        promote("churn", reason="looks good")
    message = refused.value.message
    assert message.startswith(f"cannot promote version {v3} of 'churn': the model servers")
    assert f"model.skops of models:/churn/{v3} is corrupted" in message
    assert refused.value.exit_code == 6
    d = get_deployment("churn")
    assert (d.stable_version, d.candidate_version, d.revision) == (v1, v3, 2)
    assert ll.registry.get("churn", "champion").version == v1
    # dropping the broken candidate needs nothing of it: the stable version keeps serving
    assert rollback("churn", reason="its files rotted").candidate_version is None


def test_a_rollback_to_a_corrupted_standby_is_refused_and_the_serving_version_stays(
    ctx: Context, versions: tuple[int, int, int]
) -> None:
    """rollback switched to the standby blindly: a direct or blue/green switch back to a
    version whose files rotted left the servers that restart with nothing to load."""
    v1, _, v3 = versions
    for strategy in ("direct", "blue_green"):
        ll.deploy("churn", v1)
        ll.deploy("churn", v3, strategy=strategy)
        path = corrupt(ctx, "churn", v1)
        revision = get_deployment("churn").revision
        with pytest.raises(IntegrityError) as refused:
            rollback("churn", reason="p99 doubled")
        message = refused.value.message
        assert message.startswith(f"cannot roll back to version {v1} of 'churn'"), strategy
        assert f"model.skops of models:/churn/{v1} is corrupted" in message
        assert "loopline deploy churn" in (refused.value.hint or "")
        d = get_deployment("churn")
        assert (d.stable_version, d.standby_version, d.revision) == (v3, v1, revision)
        assert ll.registry.get("churn", "champion").version == v3
        corrupt(ctx, "churn", v1)  # the same byte flipped back: intact again
        assert path.exists()
        back = rollback("churn", reason="p99 doubled")
        assert (back.stable_version, back.standby_version) == (v1, v3)


def test_an_alias_is_not_moved_onto_a_corrupted_version(
    ctx: Context, versions: tuple[int, int, int]
) -> None:
    """A server started with models:/churn@champion follows the alias: set_alias pointed it
    at rotten bytes, and the server loaded nothing at its next start."""
    v1, v2, _ = versions
    ll.registry.set_alias("churn", "champion", v1)
    corrupt(ctx, "churn", v2)
    with pytest.raises(IntegrityError) as refused:
        ll.registry.set_alias("churn", "champion", v2, reason="better AUC")
    assert refused.value.message.startswith(
        f"cannot point alias 'champion' at version {v2} of 'churn'"
    )
    assert f"model.skops of models:/churn/{v2} is corrupted" in refused.value.message
    assert ll.registry.get("churn", "champion").version == v1
    # a version the MLflow client logged has no Loopline files to check: its alias moves
    registry_versions.create_model_version(ctx, "legacy", source="runs:/abc/model", run_id=None)
    assert ll.registry.set_alias("legacy", "prod", 1).version == 1
