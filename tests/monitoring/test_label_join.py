"""join_labels against the rules of :mod:`loopline.monitoring.label_join`, written out in
plain Python one row at a time, over random logs and labels."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from loopline.monitoring.label_join import join_labels


def _random_case(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    requests = [(f"r{i}", int(rng.choice([1, 1, 2, 3]))) for i in range(int(rng.integers(1, 30)))]
    log = [(rid, row) for rid, n in requests for row in range(n)]
    cut = int(rng.integers(0, max(1, len(log) // 3)))  # a `last=` cut: the oldest rows go
    frame = pd.DataFrame(log[cut:], columns=["_request_id", "_row"])
    labels = []
    ids = [rid for rid, _ in requests] + ["unknown"]
    for rid in ids:
        rows: list[int | None] = [None, 0, 1, 2, 5]
        for row in rows:
            if rng.random() < 0.35:
                value = int(rng.integers(0, 3))
                labels.append(
                    {
                        "request_id": rid,
                        "row": row,
                        "label": str(value),
                        "label_num": float(value),
                        "arrived": float(rng.integers(0, 4)),  # ties between row and whole
                        "all_rows": bool(row is None and rng.random() < 0.4),
                    }
                )
    out = pd.DataFrame(
        labels, columns=["request_id", "row", "label", "label_num", "arrived", "all_rows"]
    )
    out["row"] = out["row"].astype("Int64")
    return frame.sample(frac=1.0, random_state=int(rng.integers(0, 1000))), out


def _expected(frame: pd.DataFrame, labels: pd.DataFrame) -> list[tuple[object, ...]]:
    rows_of: dict[str, int] = {}
    for rid, row in zip(frame["_request_id"], frame["_row"], strict=True):
        rows_of[rid] = max(rows_of.get(rid, 0), int(row) + 1)
    by_row, whole = {}, {}
    for lab in labels.to_dict("records"):
        if pd.isna(lab["row"]):
            whole[lab["request_id"]] = lab
        else:
            by_row[(lab["request_id"], int(lab["row"]))] = lab
    seen: set[str] = set()
    out = []
    for rid, row in zip(frame["_request_id"], frame["_row"], strict=True):
        own, all_of = by_row.get((rid, int(row))), whole.get(rid)
        applies = all_of is not None and (all_of["all_rows"] or rows_of[rid] == 1)
        use = own
        if applies and (own is None or all_of["arrived"] > own["arrived"]):
            use = all_of
        first = rid not in seen
        seen.add(rid)
        left_without = [
            r for r in frame.loc[frame["_request_id"] == rid, "_row"] if (rid, int(r)) not in by_row
        ]
        no_row = first and all_of is not None and not applies and bool(left_without)
        past = sum(1 for (i, r) in by_row if i == rid and r >= rows_of[rid]) if first else 0
        out.append(
            (
                None if use is None else use["label"],
                math.nan if use is None else use["label_num"],
                int(no_row),
                past,
            )
        )
    return out


@pytest.mark.parametrize("seed", range(40), ids=lambda s: f"seed{s}")
def test_join_labels_follows_its_rules_row_by_row(seed: int) -> None:
    frame, labels = _random_case(np.random.default_rng(seed))
    got = join_labels(frame, labels)
    assert list(got.index) == list(frame.index)
    columns = ["label", "label_num", "_no_row_label", "_out_of_range_labels"]
    actual = list(got[columns].itertuples(index=False, name=None))
    for a, e in zip(actual, _expected(frame, labels), strict=True):
        assert (pd.isna(a[0]) and e[0] is None) or a[0] == e[0]  # no label: missing
        assert a[2:] == e[2:]
        assert (math.isnan(a[1]) and math.isnan(e[1])) or a[1] == e[1]
