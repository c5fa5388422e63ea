"""What ``loopline.data.diff`` reports between two versions' statistics."""

from __future__ import annotations

import numpy as np
import pandas as pd

import loopline as ll
from loopline.core.context import Context
from loopline.data.diff import diff_stats


def _stats(infinite: int, count: int = 100) -> dict[str, dict[str, object]]:
    return {"f": {"count": count, "nulls": 0, "mean": 1.0, "std": 1.0, "infinite": infinite}}


def test_a_column_that_gains_or_loses_infinities_is_reported() -> None:
    assert [(c.statistic, c.before, c.after) for c in diff_stats(_stats(0), _stats(1))] == [
        ("infinite", 0, 1)
    ]
    assert [c.statistic for c in diff_stats(_stats(3), _stats(0))] == ["infinite"]
    assert diff_stats(_stats(1, 10_000), _stats(2, 10_000)) == []  # a share within tolerance
    assert [c.statistic for c in diff_stats(_stats(1), _stats(5))] == ["infinite"]
    # Statistics recorded before infinities were counted have no "infinite": nothing to say.
    old = {"f": {"count": 100, "nulls": 0, "mean": 1.0, "std": 1.0}}
    assert diff_stats(old, _stats(1)) == []


def test_registered_versions_show_and_diff_infinities(ctx: Context) -> None:
    ll.datasets.register("infd", pd.DataFrame({"f": np.arange(100.0)}))
    f = np.arange(100.0)
    f[5] = np.inf
    v2 = ll.datasets.register("infd", pd.DataFrame({"f": f}))
    stats = v2.stats["f"]
    assert (stats["min"], stats["max"], stats["infinite"], stats["count"]) == (0.0, "inf", 1, 100)
    assert stats["mean"] == np.mean(np.delete(f, 5))
    changes = ll.datasets.diff("infd@1", "infd@2").stat_changes
    moved = [(c.column, c.statistic, c.before, c.after) for c in changes]
    assert moved == [("f", "infinite", 0, 1)]
