"""Labels sent to the model server (``/feedback``) meet the prediction of the row they name."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import pytest

from loopline.core.context import Context
from loopline.errors import InvalidInput
from loopline.monitoring.limits import MAX_LABEL_CHARS
from loopline.serving.feedback import MAX_FEEDBACK, RecentAnswers, Relay, read_feedback


def test_each_row_of_a_request_is_scored_against_its_own_prediction() -> None:
    recent = RecentAnswers()
    recent.remember("r", "churn", 1, False, [1, 0, 1])
    # A request of several rows: each label names its row. Before, every label was
    # compared with the first row's prediction.
    assert recent.match("r", "churn", 1, 1, 0) == ("stable", True)
    assert recent.match("r", "churn", 1, 2, 0) == ("stable", False)
    assert recent.match("r", "churn", 1, 2, 1) is None  # a row is scored once
    assert recent.match("r", "churn", 1, 3, 1) is None  # past the last row
    assert recent.match("r", "churn", 1, None, 1) is None  # which row would it be?
    assert recent.match("r", "churn", 1, 0, True) == ("stable", True)
    assert len(recent) == 0  # every row was labelled: forgotten


def test_a_request_of_one_row_takes_a_label_without_a_row() -> None:
    recent = RecentAnswers()
    recent.remember("a", "churn", 2, True, [np.int64(1)])
    recent.remember("b", "churn", 2, True, ["1.0"])
    assert recent.match("a", "churn", 2, None, 1.0) == ("candidate", True)
    assert recent.match("a", "churn", 2, None, 1.0) is None  # once
    assert recent.match("b", "churn", 2, 0, 1) == ("candidate", True)  # one class, spelt twice


def test_a_probability_is_the_class_it_points_to() -> None:
    recent = RecentAnswers()
    recent.remember("p", "churn", 1, False, [0.83, 0.2, 0.5, 0.4])
    # A binary classifier answering P(class 1): 0.83 was never equal to a label of 1.
    assert recent.match("p", "churn", 1, 0, 1) == ("stable", True)
    assert recent.match("p", "churn", 1, 1, 0) == ("stable", True)
    assert recent.match("p", "churn", 1, 2, 1) == ("stable", True)  # 0.5 is class 1
    assert recent.match("p", "churn", 1, 3, "1") == ("stable", False)
    recent.remember("q", "price", 1, False, [0.83])
    assert recent.match("q", "price", 1, None, 0.83) == ("stable", True)  # not 0/1: as is


def test_a_label_for_another_model_or_revision_matches_nothing() -> None:
    recent = RecentAnswers()
    recent.remember("r", "churn", 1, False, [1])
    assert recent.match("r", "fraud", 1, None, 1) is None
    assert recent.match("r", "churn", 2, None, 1) is None
    assert recent.match("nope", "churn", 1, None, 1) is None
    assert recent.match("r", "churn", 1, None, 1) == ("stable", True)


def test_memory_is_bounded_by_requests_and_by_rows() -> None:
    recent = RecentAnswers(max_requests=3, max_rows=10)
    for i in range(5):
        recent.remember(f"r{i}", "m", 1, False, [0])
    assert len(recent) == 3 and recent.match("r1", "m", 1, None, 0) is None
    recent.remember("big", "m", 1, False, [0] * 9)  # 3 + 9 rows > 10: the oldest go
    assert len(recent) == 2
    assert recent.match("r4", "m", 1, None, 0) == ("stable", True)
    recent.remember("huge", "m", 1, False, [0] * 11)  # more than the budget on its own
    assert len(recent) == 0
    recent.remember("again", "m", 1, False, [0])
    recent.remember("again", "m", 1, False, [1, 1])  # a repeated id replaces the answer
    assert recent.match("again", "m", 1, 1, 1) == ("stable", True)


LONG = "x" * (MAX_LABEL_CHARS + 1)


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"request_id": "r", "label": None}, "label", "is null"),
        ({"request_id": "r", "label": {}}, "label", "is an object"),
        ({"request_id": "r", "label": {"a": 1}}, "label", "is an object"),
        ({"request_id": "r", "label": []}, "label", "is an array"),
        ({"request_id": "r", "label": [[[]]]}, "label", "is an array"),
        ({"request_id": "r", "label": math.nan}, "label", "is NaN: a label must be finite"),
        ({"request_id": "r", "label": -math.inf}, "label", "is -Infinity"),
        ({"request_id": "r", "label": LONG}, "label", f"text of {MAX_LABEL_CHARS + 1} char"),
        (
            {"labels": [{"request_id": "r", "label": 1}, {"request_id": "r", "label": None}]},
            "labels[1].label",
            "is null",
        ),
        ({"request_id": None, "label": 1}, "request_id", "is null: a request id is a string"),
        ({"request_id": [], "label": 1}, "request_id", "is an array"),
        ({"request_id": {}, "label": 1}, "request_id", "is an object"),
        ({"request_id": True, "label": 1}, "request_id", "is true"),
        ({"request_id": 1.5, "label": 1}, "request_id", "is the number 1.5"),
        ({"request_id": "", "label": 1}, "request_id", "1 to 200 characters"),
        ({"labels": [{"request_id": 7, "label": 1}]}, "labels[0].request_id", "number 7"),
        ({"request_id": "r", "label": 1, "row": 1e30}, "row", "a whole number from 0"),
        ({"request_id": "r", "label": 1, "row": 2**31}, "row", "2147483648 is past"),
        ({"request_id": "r", "label": 1, "rwo": 1}, "rwo", "unknown field 'rwo'"),
        ({"labels": [], "label": 1}, "label", "unknown field 'label'"),
        ({"labels": [[]]}, "labels[0]", "is an array"),
        ({"labels": [{"label": 1}]}, "labels[0].request_id", "missing"),
        ({"request_id": "r"}, "label", "missing"),
        ({"labels": {"request_id": "r"}}, "labels", "is an object"),
        ([1], "body", "is an array"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None,
)
def test_a_label_the_live_accuracy_cannot_use_is_refused_naming_field_and_index(
    body: Any, field: str, words: str
) -> None:
    """A null, an object or NaN as a label was matched and scored (an accuracy computed from
    nothing); a request id of null or 1.5 became the text 'None' or '1.5'."""
    with pytest.raises(InvalidInput) as info:
        read_feedback(body)
    assert info.value.field == field and words in info.value.message, info.value.message


def test_one_request_carries_at_most_max_feedback_labels() -> None:
    label = {"request_id": "r", "label": 1}
    assert len(read_feedback({"labels": [label] * MAX_FEEDBACK})) == MAX_FEEDBACK
    with pytest.raises(InvalidInput, match=f"at most {MAX_FEEDBACK}") as info:
        read_feedback({"labels": [label] * (MAX_FEEDBACK + 1)})
    assert info.value.field == "labels" and "several requests" in (info.value.hint or "")


def test_good_labels_are_read_with_their_rows() -> None:
    assert read_feedback({"request_id": "r", "label": "spam"}) == [("r", None, "spam")]
    body = {
        "labels": [
            {"request_id": "a", "label": True, "row": 2},
            {"request_id": "b", "label": 0.5, "row": None},
            {"request_id": "c", "label": "x" * MAX_LABEL_CHARS},
        ]
    }
    assert read_feedback(body) == [("a", 2, True), ("b", None, 0.5), ("c", None, "x" * 1000)]


def test_labels_handed_over_reach_every_other_worker_once_even_when_committed_late(
    ctx: Context,
) -> None:
    """A label sent to a worker that did not answer its request was counted unmatched there
    and lost: with N workers or replicas, about (N-1)/N of the labels never counted."""
    a, b, c = Relay("a"), Relay("b"), Relay("c")
    served = [("churn", 3)]
    assert b.receive(ctx.engine, served) == [] == c.receive(ctx.engine, served)
    a.send(ctx.engine, "churn", 3, [("r-1", None, 1), ("r-2", 4, "spam")])
    a.send(ctx.engine, "churn", 2, [("r-old", None, 0)])  # another revision
    a.send(ctx.engine, "fraud", 3, [("r-f", None, 0)])  # another deployment
    for relay in (b, c):  # every other worker gets them, as they were sent
        got = [h[1:] for h in relay.receive(ctx.engine, served)]
        assert got == [("churn", 3, "r-1", None, 1), ("churn", 3, "r-2", 4, "spam")]
    assert a.receive(ctx.engine, served) == []  # never its own
    # PostgreSQL hands an id out before the insert commits: a row with a lower id can
    # appear after a higher one was read. Read one poll behind, it is still received.
    top = max(_ids(ctx))
    _insert(ctx, top + 10, "r-10")
    assert [h[3] for h in b.receive(ctx.engine, served)] == ["r-10"]
    _insert(ctx, top + 5, "r-late")  # committed after r-10 was read
    assert [h[3] for h in b.receive(ctx.engine, served)] == ["r-late"]
    assert b.receive(ctx.engine, served) == []  # and each only once
    assert [h[3] for h in c.receive(ctx.engine, served)] == ["r-late", "r-10"]


def _insert(ctx: Context, id: int, rid: str) -> None:
    """A label row with the given id, as worker 'a' would store it for churn revision 3."""
    import sqlalchemy as sa

    from loopline.serving.tables import feedback_labels

    values = {"name": "churn", "revision": 3, "worker": "a", "request_id": rid}
    with ctx.engine.begin() as conn:
        conn.execute(sa.insert(feedback_labels).values(id=id, label="1", received=0.0, **values))


def _ids(ctx: Context) -> set[int]:
    import sqlalchemy as sa

    from loopline.serving.tables import feedback_labels

    with ctx.engine.connect() as conn:
        return set(conn.execute(sa.select(feedback_labels.c.id)).scalars())


def test_labels_handed_over_expire_once_after_the_horizon_and_scored_ones_never(
    ctx: Context,
) -> None:
    """A label no worker could score stayed in the table and 'pending' for ever, counted
    nowhere (and with no rollout running no worker even pruned the table)."""
    a, b, c = Relay("a"), Relay("b", horizon=0.3), Relay("c", horizon=0.3)
    b.receive(ctx.engine, [("churn", 1)])
    a.send(ctx.engine, "churn", 1, [("r-1", None, 1), ("never-made", None, 0)])
    handed = b.receive(ctx.engine, [("churn", 1)])
    b.resolve(ctx.engine, [h[0] for h in handed if h[3] == "r-1"])  # b answered r-1
    assert b.expire(ctx.engine) == []  # too young: not even looked for yet
    time.sleep(0.35)
    expired = b.expire(ctx.engine) + c.expire(ctx.engine)  # each row to one worker only
    assert [h[1:] for h in expired] == [("churn", 1, "never-made", None, 0)]
    assert _ids(ctx) == set()
    a.send(ctx.engine, "churn", 1, [("fresh", None, 1)])
    time.sleep(0.1)
    assert c.expire(ctx.engine) == [] and len(_ids(ctx)) == 1  # within its horizon: kept


def test_a_label_stored_after_the_newest_was_scored_and_deleted_is_still_received(
    ctx: Context,
) -> None:
    """SQLite gave a deleted newest row's id to the next label: the workers read only ids
    above the highest they had read, so that label was never scored (2 of 20 were lost
    with two workers once scored labels were deleted)."""
    a, b = Relay("a"), Relay("b")
    b.receive(ctx.engine, [("churn", 1)])
    a.send(ctx.engine, "churn", 1, [("r-1", None, 1)])
    first = b.receive(ctx.engine, [("churn", 1)])
    b.resolve(ctx.engine, [h[0] for h in first])  # scored by b, deleted: the table is empty
    a.send(ctx.engine, "churn", 1, [("r-2", None, 0)])
    second = b.receive(ctx.engine, [("churn", 1)]) + b.receive(ctx.engine, [("churn", 1)])
    assert [h[3] for h in second] == ["r-2"] and second[0][0] > first[0][0]
