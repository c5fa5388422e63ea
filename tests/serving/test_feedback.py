"""Labels sent to the model server (``/feedback``) meet the prediction of the row they name."""

from __future__ import annotations

import numpy as np

from loopline.serving.feedback import RecentAnswers


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
