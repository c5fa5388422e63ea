"""``loopline deployments promote|rollback`` and ``loopline models alias`` as a user runs
them (real processes, a real store): a version whose files rotted is refused, exit 6."""

from __future__ import annotations

import loopline as ll
from loopline.core.context import Context
from loopline.serving.deploy import get_deployment
from tests.cli_run import run_loopline
from tests.serving.helpers import corrupt, good_model, register, toy_data


def test_promote_rollback_and_alias_exit_6_naming_the_version_and_the_file(ctx: Context) -> None:
    data = toy_data(200)
    v1, v2 = (register(good_model(data), "churn", data) for _ in range(2))
    ll.deploy("churn", v1)
    ll.deploy("churn", v2, strategy="ab", split=20)
    corrupt(ctx, "churn", v2)
    promoted = run_loopline(ctx, "deployments", "promote", "churn", "--reason", "B wins")
    assert promoted.returncode == 6, promoted.stderr
    assert f"cannot promote version {v2} of 'churn'" in promoted.stderr
    assert f"model.skops of models:/churn/{v2} is corrupted" in promoted.stderr
    aliased = run_loopline(ctx, "models", "alias", "churn", "champion", str(v2))
    assert aliased.returncode == 6, aliased.stderr
    assert f"version {v2} of 'churn'" in aliased.stderr and "model.skops" in aliased.stderr
    dropped = run_loopline(ctx, "deployments", "rollback", "churn", "--json")
    assert dropped.returncode == 0, dropped.stderr  # the A/B test ends: v1 serves alone

    corrupt(ctx, "churn", v2)  # flipped back: v2 is intact again, and deployed directly
    ll.deploy("churn", v2)
    corrupt(ctx, "churn", v1)
    back = run_loopline(ctx, "deployments", "rollback", "churn", "--reason", "p99 doubled")
    assert back.returncode == 6, back.stderr
    assert f"cannot roll back to version {v1} of 'churn'" in back.stderr
    assert f"model.skops of models:/churn/{v1} is corrupted" in back.stderr
    d = get_deployment("churn")
    assert (d.stable_version, d.standby_version) == (v2, v1)
    assert ll.registry.get("churn", "champion").version == v2


def test_show_says_what_serves_and_a_window_without_traffic_in_words(ctx: Context) -> None:
    """The live window read 'p99 None ms, accuracy None' before any request or label."""
    data = toy_data(200)
    v1, v2 = (register(good_model(data), "churn", data) for _ in range(2))
    ll.deploy("churn", v1)
    ll.deploy("churn", v2, strategy="canary", steps=[10, 100])
    shown = run_loopline(ctx, "deployments", "show", "churn")
    assert shown.returncode == 0, shown.stderr
    assert f"churn serves v{v1}; canary of v{v2} at 10%" in shown.stdout
    assert "stable: 0 requests, 0 errors, p99 -, accuracy - (no labels)" in shown.stdout
    assert "None" not in shown.stdout
