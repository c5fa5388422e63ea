"""Fault: model servers (``loopline serve``) killed with SIGKILL right after answering,
then started again. Two servers share one store on one machine, each with its own spool
segment. Every request answered before a kill is in the prediction log afterwards, once:
the restarted server replays the dead one's spool, and never the live one's."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx
import pytest

import loopline as ll
from loopline.core.context import Context
from loopline.monitoring.log_reads import read_predictions
from tests.e2e.faults import KillableServer, wait_until
from tests.server.conftest import free_port
from tests.serving.helpers import good_model, register, row, toy_data


def _answer(server: KillableServer, count: int, tag: float) -> Counter[str]:
    """``count`` requests (every third of two rows); the rows of each answered id."""
    answered: Counter[str] = Counter()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for i in range(count):
            rows = [row(a=tag, b=i / 100)] * (2 if i % 3 == 0 else 1)
            r = client.post("/v1/models/churn/predict", json={"instances": rows})
            assert r.status_code == 200, r.text
            answered[r.json()["request_id"]] = len(rows)
    return answered


def _replays(server: KillableServer) -> list[str]:
    return [line for line in server.log.read_text().splitlines() if "recovered" in line]


def _logged() -> Counter[str]:
    return Counter(read_predictions("churn")["_request_id"])


@pytest.mark.slow
def test_every_answered_request_is_logged_once_after_a_sigkill_of_the_model_server(
    embedded_ctx: Context, tmp_path: Path
) -> None:
    data = toy_data()
    ll.deploy("churn", register(good_model(data), "churn", data))
    env = {
        "LOOPLINE_URI": embedded_ctx.settings.metadata_uri,
        "LOOPLINE_ARTIFACTS": embedded_ctx.settings.artifacts_uri,
        "LOOPLINE_SPOOL": str(tmp_path / "spool"),
    }
    command = ("serve", "--log-predictions", "--poll-interval", "0.2")
    one, two = (
        KillableServer(free_port(), env, tmp_path / f"serve-{n}.log", command) for n in (1, 2)
    )
    try:
        one.start()
        two.start()
        first = _answer(one, 150, 1.0)
        dead = one.pid()
        one.kill()  # right after its last answer: well inside the log's 5 s interval
        # The kill beat the writer's next batch (its interval is 5 s, the answers took less).
        assert not set(first) <= set(_logged())
        second = _answer(two, 100, 2.0)
        one.start()  # its writer thread replays the dead server's spool
        wait_until(lambda: set(first) <= set(_logged()), 60, "the killed server's replay")
        replays = _replays(one)
        assert len(replays) == 1 and f"/{dead}-" in replays[0], replays  # not the live one's
        third = _answer(one, 20, 3.0)
        second += _answer(two, 30, 4.0)
        dead = two.pid()
        two.kill()  # it was live during the first replay; killed now
        two.start()
        wait_until(lambda: set(second) <= set(_logged()), 60, "the second server's replay")
        assert any(f"/{dead}-" in line for line in _replays(two))
        one.stop()  # a clean stop writes what is queued
        two.stop()
    finally:
        one.stop()
        two.stop()
    answered = first + second + third
    frame = read_predictions("churn")
    rows = Counter(zip(frame["_request_id"], frame["_row"], strict=True))
    assert max(rows.values()) == 1, "a request's row was logged twice"
    assert _logged() == answered  # every answered request, each of its rows, nothing else
    assert list((tmp_path / "spool").rglob("*.seg")) == []  # written in full: deleted
