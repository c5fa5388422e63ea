"""The Feast side of bench_features: runs in the anchor venv (bench/.envs/feast).

Usage: python feast_features.py MODE REPO DATA [OUT]
Modes:
  apply        register the entity and the feature view in the repository REPO
  historical   time get_historical_features(...).to_df() for DATA/entities.parquet
               (OUT: write the result there as Parquet, after the clock stops)
  materialize  time materialize(end - ttl, end) into the repository's SQLite online store
  online       latency of get_online_features for one entity x 10 features
               (OUT: a JSON file of keys whose online values are written there)
Prints one JSON line of figures, with the process's peak RSS.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from feast import Entity, FeatureStore, FeatureView, Field, FileSource
from feast.types import Float64
from feast.value_type import ValueType

FEATURES = [f"f{i}" for i in range(10)]
TTL = timedelta(days=7)
END = datetime(2024, 1, 31, tzinfo=UTC)


def _objects(data: Path) -> tuple[Entity, FeatureView]:
    source = FileSource(
        path=str(data / "features.parquet"),
        timestamp_field="event_ts",
        created_timestamp_column="created_ts",
    )
    entity = Entity(name="entity", join_keys=["entity_id"], value_type=ValueType.INT64)
    view = FeatureView(
        name="bench",
        entities=[entity],
        ttl=TTL,
        source=source,
        schema=[Field(name=f, dtype=Float64) for f in FEATURES],
    )
    return entity, view


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    mode, repo, data = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    out = Path(sys.argv[4]) if len(sys.argv) > 4 else None
    store = FeatureStore(repo_path=str(repo))
    refs = [f"bench:{f}" for f in FEATURES]
    result: dict[str, object] = {"mode": mode}
    if mode == "apply":
        started = time.perf_counter()
        store.apply(list(_objects(data)))
        result["seconds"] = time.perf_counter() - started
    elif mode == "historical":
        entities = pd.read_parquet(data / "entities.parquet")
        started = time.perf_counter()
        frame = store.get_historical_features(entity_df=entities, features=refs).to_df()
        result["seconds"] = time.perf_counter() - started
        result["rows"] = len(frame)
        result["peak_rss_mb"] = _peak_mb()
        if out is not None:
            frame[["row_id", "entity_id", *FEATURES]].to_parquet(out, index=False)
    elif mode == "materialize":
        started = time.perf_counter()
        store.materialize(start_date=END - TTL, end_date=END, feature_views=["bench"])
        result["seconds"] = time.perf_counter() - started
        result["peak_rss_mb"] = _peak_mb()
    elif mode == "online":
        keys = np.random.default_rng(0).integers(0, 100_000, 3_000).tolist()
        lat = []
        for key in keys:
            t = time.perf_counter_ns()
            store.get_online_features(features=refs, entity_rows=[{"entity_id": key}]).to_dict()
            lat.append(time.perf_counter_ns() - t)
        ms = np.array(lat[500:]) / 1e6  # the first calls warm up
        result.update(
            p50_ms=float(np.percentile(ms, 50)), p99_ms=float(np.percentile(ms, 99)), calls=len(ms)
        )
        if out is not None:
            sample = json.loads(out.read_text())
            rows = store.get_online_features(
                features=refs, entity_rows=[{"entity_id": k} for k in sample["keys"]]
            ).to_dict()
            sample["values"] = {f: rows[f] for f in FEATURES}
            out.write_text(json.dumps(sample))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
