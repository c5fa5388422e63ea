"""Benchmark: the feature store against Feast (point-in-time join, materialize, online read).

Workload (deterministic, made under ``bench/.work/features`` and deleted at the end):
100,000 entities x 10 timestamped rows of 10 float features over 30 days, shuffled; 5 % of
the rows repeat the event time of another row of the same entity and are told apart by
their ``created_ts``; an entity frame of 1,000,000 rows whose times run from 5 days before
to 5 days after the feature data, 5 % of them exact matches of a feature row's time and
~5 % with keys that have no feature rows; a TTL of 7 days.

- **Point-in-time join**: ``ll.features.get_historical`` against Feast's
  ``get_historical_features(...).to_df()`` with its DuckDB offline store, each in a fresh
  process, in turn, ``--repeat`` times (medians); the clock covers the call only (the
  entity frame is read, each side's store opened and its modules imported before). Peak
  RSS is the whole process's (``ru_maxrss``). Feast's default file offline store runs
  once, with a timeout. Loopline's result is compared row for row with the DuckDB store's;
  rows whose feature row is one of several with the same key, event time *and* created
  time (where Feast's pick is arbitrary) are counted apart.
- **Materialize**: ``ll.features.materialize(view, end)`` into the embedded SQLite online
  store against Feast's ``materialize(end - ttl, end)`` into its SQLite online store (the
  same rows: the newest per entity within the TTL of ``end``).
- **Online read**: ``ll.features.get_online(view, [key])`` for one entity x 10 features,
  20,000 calls after 1,000 warm-up calls; Feast's ``get_online_features`` for the same
  shape as the anchor. The values read back are compared with Feast's for 2,000 keys.

Usage:
    .venv/bin/python bench/bench_features.py [--repeat 5] [--file-store-timeout 300]

Example:
    .venv/bin/python bench/bench_features.py --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import WORK, anchor_python, fmt_ratio, write_result

FEAST_PINS = [
    "feast[duckdb]==0.67.0",
    "duckdb==2.0.1",
    "ibis-framework==12.0.0",
    "pandas==2.3.3",
    "pyarrow==26.0.1",
    "numpy==2.4.6",
    "dask==2026.8.0",
]
FEAST_SCRIPT = Path(__file__).resolve().parent / "anchors" / "feast_features.py"
FEATURES = [f"f{i}" for i in range(10)]
N_ENTITIES, PER_ENTITY, N_ROWS = 100_000, 10, 1_000_000
TTL_DAYS = 7
END = "2024-01-31T00:00:00Z"
ONLINE_SAMPLE = 2_000


# -- data -----------------------------------------------------------------------------------


def make_data(out: Path) -> None:
    """Write ``features.parquet`` and ``entities.parquet`` (seeded: the same every run)."""
    import numpy as np
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(42)
    n = N_ENTITIES * PER_ENTITY
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    span = 30 * 86400
    ent = np.repeat(np.arange(N_ENTITIES, dtype=np.int64), PER_ENTITY)
    secs = rng.integers(0, span, n)
    # 5 % of the rows take the event time of the previous row of the same entity.
    dup = rng.random(n) < 0.05
    dup[::PER_ENTITY] = False
    secs[dup] = secs[np.flatnonzero(dup) - 1]
    ts = t0 + pd.to_timedelta(secs, unit="s")
    created = ts + pd.to_timedelta(rng.integers(0, 3600, n), unit="s")
    values = {f: rng.normal(size=n) for f in FEATURES}
    features = pd.DataFrame({"entity_id": ent, "event_ts": ts, "created_ts": created, **values})
    features = features.sample(frac=1.0, random_state=1).reset_index(drop=True)
    features.to_parquet(out / "features.parquet", index=False)
    eid = rng.integers(0, int(N_ENTITIES * 1.05), N_ROWS)  # ~5 % of keys have no rows
    esecs = rng.integers(-5 * 86400, span + 5 * 86400, N_ROWS)
    ets = pd.Series(t0 + pd.to_timedelta(esecs, unit="s"))
    exact = rng.random(N_ROWS) < 0.05
    pick = rng.integers(0, n, int(exact.sum()))
    eid[exact] = features["entity_id"].to_numpy()[pick]
    ets[exact] = features["event_ts"].to_numpy()[pick]
    entities = pd.DataFrame(
        {
            "row_id": np.arange(N_ROWS),
            "entity_id": eid,
            "event_timestamp": pd.to_datetime(ets, utc=True),
        }
    )
    entities.to_parquet(out / "entities.parquet", index=False)


# -- Loopline worker (a fresh process per measurement) --------------------------------------


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(mode: str, home: Path, data: Path, out: str) -> dict[str, Any]:
    """One Loopline measurement; returns its figures."""
    import datetime as dt

    import numpy as np
    import pandas as pd

    import loopline as ll

    ctx = ll.init(uri=f"sqlite:///{home / 'meta.db'}", artifacts=str(home / "artifacts"), home=home)
    # Like Feast's FeatureStore(...) before its clock: open the store, load the module.
    ctx.engine  # noqa: B018
    ll.features  # noqa: B018
    result: dict[str, Any] = {"mode": mode}
    if mode == "setup":
        frame = pd.read_parquet(data / "features.parquet")
        view = ll.features.FeatureView(
            name="bench",
            entity="entity_id",
            timestamp="event_ts",
            created="created_ts",
            features=FEATURES,
            ttl=dt.timedelta(days=TTL_DAYS),
            source=frame,
        )
        started = time.perf_counter()
        ll.features.register(view)  # also writes the sorted, deduplicated copy the join reads
        result["seconds"] = time.perf_counter() - started
    elif mode == "historical":
        entities = pd.read_parquet(data / "entities.parquet")
        started = time.perf_counter()
        frame = ll.features.get_historical(entities, [f"bench:{f}" for f in FEATURES])
        result["seconds"] = time.perf_counter() - started
        result["rows"] = len(frame)
        result["peak_rss_mb"] = _peak_mb()
        if out != "-":
            frame[["row_id", "entity_id", *FEATURES]].to_parquet(out, index=False)
    elif mode == "materialize":
        started = time.perf_counter()
        m = ll.features.materialize("bench", end=END)
        result["seconds"] = time.perf_counter() - started
        result["rows"] = m.rows
        result["peak_rss_mb"] = _peak_mb()
    elif mode == "online":
        keys = np.random.default_rng(0).integers(0, N_ENTITIES, 21_000).tolist()
        get_online = ll.features.get_online
        for key in keys[:1000]:
            get_online("bench", [key])
        lat = []
        clock = time.perf_counter_ns
        for key in keys[1000:]:
            t = clock()
            row = get_online("bench", [key])
            lat.append(clock() - t)
            assert len(row[0]) == len(FEATURES)
        ms = np.array(lat) / 1e6
        result.update(
            p50_ms=float(np.percentile(ms, 50)),
            p99_ms=float(np.percentile(ms, 99)),
            p999_ms=float(np.percentile(ms, 99.9)),
            calls=len(ms),
        )
        if out != "-":
            sample = json.loads(Path(out).read_text())
            rows = get_online("bench", sample["keys"])
            sample["values"] = {f: [r[f] for r in rows] for f in FEATURES}
            Path(out).write_text(json.dumps(sample))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    return result


# -- driver ---------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPLINE_")}
    env["FEAST_USAGE"] = "False"  # no telemetry
    return env


def _json_run(cmd: list[str], timeout: float = 900) -> dict[str, Any]:
    out = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _ours(mode: str, home: Path, data: Path, out: Path | str = "-") -> dict[str, Any]:
    return _json_run([sys.executable, __file__, "--worker", mode, str(home), str(data), str(out)])


def _feast(
    py: Path, mode: str, repo: Path, data: Path, out: Path | None = None, timeout: float = 900
) -> dict[str, Any]:
    cmd = [str(py), str(FEAST_SCRIPT), mode, str(repo), str(data)]
    return _json_run(cmd + ([str(out)] if out is not None else []), timeout=timeout)


def _feast_repo(path: Path, offline: str) -> Path:
    path.mkdir(parents=True)
    (path / "feature_store.yaml").write_text(
        "project: bench\n"
        f"registry: {path / 'registry.db'}\n"
        "provider: local\n"
        f"offline_store:\n  type: {offline}\n"
        f"online_store:\n  type: sqlite\n  path: {path / 'online.db'}\n"
        "entity_key_serialization_version: 3\n"
    )
    return path


def compare(data: Path, ours_path: Path, feast_path: Path) -> dict[str, Any]:
    """Row-for-row comparison; rows matched to a full tie (same key, time, created) apart."""
    import duckdb
    import numpy as np
    import pandas as pd

    ours = pd.read_parquet(ours_path).sort_values("row_id").reset_index(drop=True)
    theirs = pd.read_parquet(feast_path).sort_values("row_id").reset_index(drop=True)
    if (
        len(ours) != len(theirs)
        or not (ours["row_id"].to_numpy() == theirs["row_id"].to_numpy()).all()
    ):
        return {"rows": [len(ours), len(theirs)], "same_rows": False}
    a = ours[FEATURES].astype("float64").to_numpy()
    b = theirs[FEATURES].astype("float64").to_numpy()
    differ = ~((np.isnan(a) & np.isnan(b)) | (a == b)).all(axis=1)
    # Entity rows whose visible feature row is one of several with the same key, event
    # time and created time: which of them wins is arbitrary in Feast.
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    feats = str(data / "features.parquet")
    ents = str(data / "entities.parquet")
    tied = _tied_rows(con, feats, ents)
    tie_mask = np.zeros(len(ours), dtype=bool)
    tie_mask[np.searchsorted(ours["row_id"].to_numpy(), tied)] = True
    full_ties = con.execute(
        f"SELECT count(*) FROM (SELECT 1 FROM read_parquet('{feats}') "
        "GROUP BY entity_id, event_ts, created_ts HAVING count(*) > 1)"
    ).fetchone()
    return {
        "rows": len(ours),
        "same_rows": True,
        "rows_with_features": int((~np.isnan(a[:, 0])).sum()),
        "rows_differing": int(differ.sum()),
        "full_tie_groups_in_features": int(full_ties[0]) if full_ties else 0,
        "rows_matched_to_a_full_tie": int(tie_mask.sum()),
        "rows_differing_outside_full_ties": int((differ & ~tie_mask).sum()),
        "rows_differing_at_full_ties": int((differ & tie_mask).sum()),
    }


def _tied_rows(con: Any, feats: str, ents: str) -> Any:
    """row_ids of entity rows whose visible feature row is a full tie (key, ts, created)."""
    return con.execute(
        f"""
        WITH f AS (SELECT entity_id, event_ts, created_ts FROM read_parquet('{feats}')),
        best AS (  -- the newest created time of each (key, event time) and how many share it
            SELECT entity_id, event_ts, max(created_ts) AS top FROM f GROUP BY ALL),
        tops AS (
            SELECT b.entity_id, b.event_ts, count(*) AS n FROM best b
            JOIN f ON f.entity_id = b.entity_id AND f.event_ts = b.event_ts
                  AND f.created_ts = b.top
            GROUP BY ALL),
        e AS (SELECT row_id, entity_id, event_timestamp FROM read_parquet('{ents}'))
        SELECT e.row_id FROM e ASOF JOIN tops t
        ON e.entity_id = t.entity_id AND e.event_timestamp >= t.event_ts
        WHERE t.n > 1 AND t.event_ts >= e.event_timestamp - INTERVAL {TTL_DAYS} DAY
        ORDER BY e.row_id
        """
    ).fetchnumpy()["row_id"]


def compare_online(sample_ours: Path, sample_feast: Path) -> dict[str, Any]:
    ours = json.loads(sample_ours.read_text())
    theirs = json.loads(sample_feast.read_text())
    keys = ours["keys"]
    differ = sum(
        1
        for i in range(len(keys))
        if any(ours["values"][f][i] != theirs["values"][f][i] for f in FEATURES)
    )
    present = sum(1 for v in ours["values"][FEATURES[0]] if v is not None)
    return {"keys": len(keys), "present": present, "keys_differing": differ}


def _med(xs: list[float]) -> float:
    return statistics.median(xs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per contender (medians)")
    parser.add_argument("--file-store-timeout", type=float, default=300)
    parser.add_argument(
        "--worker", nargs=4, metavar=("MODE", "HOME", "DATA", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.worker:
        mode, home, data_dir, out = args.worker
        print(json.dumps(worker(mode, Path(home), Path(data_dir), out)))
        return
    feast_py = anchor_python("feast", FEAST_PINS)
    feast_version = subprocess.run(
        [str(feast_py), "-c", "import feast; print(feast.__version__)"],
        capture_output=True,
        text=True,
        check=True,
        env=_env(),
    ).stdout.strip()
    feast_name = f"Feast {feast_version}"
    work = WORK / "features"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    details: dict[str, Any] = {}
    try:
        data = work / "data"
        started = time.perf_counter()
        make_data(data)
        details["data_seconds"] = round(time.perf_counter() - started, 1)
        home = work / "home"
        details["setup"] = {"ours": _ours("setup", home, data)}
        duck = _feast_repo(work / "feast_duckdb", "duckdb")
        files = _feast_repo(work / "feast_file", "file")
        details["setup"]["feast_duckdb"] = _feast(feast_py, "apply", duck, data)
        _feast(feast_py, "apply", files, data)
        rows = _run_all(args, feast_py, feast_name, work, data, home, duck, files, details)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    details["load_average"] = os.getloadavg()
    path = write_result("features", rows, details)
    for row in rows:
        print(
            f"{row['case']}: {row['loopline']} vs {row['anchor_value']} ({row['ratio']}, "
            f"target {row['target']}, {'met' if row['met'] else 'NOT met'})"
        )
    print(json.dumps(details, indent=1))
    print(f"wrote {path}")


def _run_all(
    args: argparse.Namespace,
    feast_py: Path,
    feast_name: str,
    work: Path,
    data: Path,
    home: Path,
    duck: Path,
    files: Path,
    details: dict[str, Any],
) -> list[dict[str, Any]]:
    ours_out, feast_out = work / "ours.parquet", work / "feast.parquet"
    hist: dict[str, list[dict[str, Any]]] = {"ours": [], "duckdb": []}
    for i in range(args.repeat):
        hist["ours"].append(_ours("historical", home, data, ours_out if i == 0 else "-"))
        hist["duckdb"].append(
            _feast(feast_py, "historical", duck, data, feast_out if i == 0 else None)
        )
        print(
            f"historical {i + 1}/{args.repeat}: ours {hist['ours'][-1]['seconds']:.2f} s, "
            f"feast duckdb {hist['duckdb'][-1]['seconds']:.2f} s",
            flush=True,
        )
    details["historical"] = hist
    details["historical_compare"] = cmp = compare(data, ours_out, feast_out)
    print("compare:", cmp, flush=True)
    # Feast's default file offline store: once, with a timeout.
    started = time.perf_counter()
    try:
        file_run: dict[str, Any] = _feast(
            feast_py, "historical", files, data, timeout=args.file_store_timeout
        )
        file_run["outcome"] = "finished"
    except subprocess.TimeoutExpired:
        file_run = {"outcome": f"timed out after {args.file_store_timeout:g} s (killed)"}
    except RuntimeError as exc:
        file_run = {"outcome": "failed", "error": str(exc)[-1500:]}
    file_run["wall_seconds"] = round(time.perf_counter() - started, 1)
    details["historical_feast_file_store"] = file_run
    print("feast file store:", {k: v for k, v in file_run.items() if k != "error"}, flush=True)

    mat: dict[str, list[dict[str, Any]]] = {"ours": [], "feast": []}
    for i in range(args.repeat):
        mat["ours"].append(_ours("materialize", home, data))
        mat["feast"].append(_feast(feast_py, "materialize", duck, data))
        print(
            f"materialize {i + 1}/{args.repeat}: ours {mat['ours'][-1]['seconds']:.2f} s, "
            f"feast {mat['feast'][-1]['seconds']:.2f} s",
            flush=True,
        )
    details["materialize"] = mat

    import numpy as np

    keys = np.random.default_rng(7).integers(0, N_ENTITIES, ONLINE_SAMPLE).tolist()
    sample_ours, sample_feast = work / "online_ours.json", work / "online_feast.json"
    for p in (sample_ours, sample_feast):
        p.write_text(json.dumps({"keys": keys}))
    online = _ours("online", home, data, sample_ours)
    feast_online = _feast(feast_py, "online", duck, data, sample_feast)
    details["online"] = {"ours": online, "feast": feast_online}
    details["online_compare"] = compare_online(sample_ours, sample_feast)
    print("online:", details["online"], details["online_compare"], flush=True)
    rows = _rows(feast_name, hist, cmp, file_run, mat, online, feast_online)
    # Loopline prepares the view's rows (deduplicated, sorted) when it is registered, so the
    # join itself does less: this row shows the preparation and the first join together.
    setup_ours = float(details["setup"]["ours"]["seconds"])
    setup_feast = float(details["setup"]["feast_duckdb"]["seconds"])
    ours_first = setup_ours + float(hist["ours"][0]["seconds"])
    feast_first = setup_feast + float(hist["duckdb"][0]["seconds"])
    rows.insert(
        1,
        {
            "case": "register the view + first get_historical (preparation included)",
            "loopline": f"{ours_first:.2f} s ({setup_ours:.2f} s register)",
            "anchor": f"{feast_name} apply + get_historical_features, DuckDB offline store",
            "anchor_value": f"{feast_first:.2f} s ({setup_feast:.2f} s apply)",
            "ratio": fmt_ratio(feast_first / ours_first),
            "target": "reference",
            "met": True,
        },
    )
    return rows


def _rows(
    feast_name: str,
    hist: dict[str, list[dict[str, Any]]],
    cmp: dict[str, Any],
    file_run: dict[str, Any],
    mat: dict[str, list[dict[str, Any]]],
    online: dict[str, Any],
    feast_online: dict[str, Any],
) -> list[dict[str, Any]]:
    ours_s = _med([r["seconds"] for r in hist["ours"]])
    duck_s = _med([r["seconds"] for r in hist["duckdb"]])
    ours_mb = _med([r["peak_rss_mb"] for r in hist["ours"]])
    duck_mb = _med([r["peak_rss_mb"] for r in hist["duckdb"]])
    identical = cmp.get("same_rows", False) and cmp.get("rows_differing_outside_full_ties") == 0
    rows: list[dict[str, Any]] = [
        {
            "case": "get_historical, 1M entity rows x 10 features (100k entities x 10 rows)",
            "loopline": f"{ours_s:.2f} s",
            "anchor": f"{feast_name} get_historical_features, DuckDB offline store",
            "anchor_value": f"{duck_s:.2f} s",
            "ratio": fmt_ratio(duck_s / ours_s),
            "target": ">= 2x",
            "met": duck_s / ours_s >= 2,
        },
        {
            "case": "get_historical: same rows and values as Feast (DuckDB store)",
            "loopline": f"{cmp.get('rows_differing_outside_full_ties', 'n/a')} of "
            f"{cmp.get('rows', 0):,} rows differ",
            "anchor": f"{feast_name}, DuckDB offline store",
            "anchor_value": f"{cmp.get('rows_matched_to_a_full_tie', 0)} rows at full ties "
            f"excluded ({cmp.get('rows_differing_at_full_ties', 0)} of them differ)",
            "ratio": "identical" if identical else "DIFFERENT",
            "target": "identical",
            "met": bool(identical),
        },
        {
            "case": "get_historical: peak RSS of the process",
            "loopline": f"{ours_mb:,.0f} MB",
            "anchor": f"{feast_name}, DuckDB offline store",
            "anchor_value": f"{duck_mb:,.0f} MB",
            "ratio": fmt_ratio(duck_mb / ours_mb),
            "target": "<= Feast DuckDB",
            "met": ours_mb <= duck_mb,
        },
    ]
    if file_run["outcome"] == "finished":
        file_s = float(file_run["seconds"])
        rows.append(
            {
                "case": "get_historical vs Feast's default file offline store",
                "loopline": f"{ours_s:.2f} s",
                "anchor": f"{feast_name} get_historical_features, file offline store (1 run)",
                "anchor_value": f"{file_s:.2f} s, {file_run['peak_rss_mb']:,.0f} MB, "
                f"{file_run['rows']:,} of {N_ROWS:,} rows",
                "ratio": fmt_ratio(file_s / ours_s),
                "target": ">= 10x",
                "met": file_s / ours_s >= 10,
            }
        )
    else:
        rows.append(
            {
                "case": "get_historical vs Feast's default file offline store",
                "loopline": f"{ours_s:.2f} s",
                "anchor": f"{feast_name} get_historical_features, file offline store (1 run)",
                "anchor_value": file_run["outcome"],
                "ratio": f"> {fmt_ratio(file_run['wall_seconds'] / ours_s)}"
                if "timed out" in file_run["outcome"]
                else "n/a",
                "target": ">= 10x",
                "met": "timed out" in file_run["outcome"]
                and file_run["wall_seconds"] / ours_s >= 10,
            }
        )
    ours_m = _med([r["seconds"] for r in mat["ours"]])
    feast_m = _med([r["seconds"] for r in mat["feast"]])
    rows.append(
        {
            "case": f"materialize to SQLite ({mat['ours'][0]['rows']:,} entities x 10 features)",
            "loopline": f"{ours_m:.2f} s",
            "anchor": f"{feast_name} materialize, SQLite online store",
            "anchor_value": f"{feast_m:.2f} s",
            "ratio": fmt_ratio(feast_m / ours_m),
            "target": ">= 10x",
            "met": feast_m / ours_m >= 10,
        }
    )
    rows.append(
        {
            "case": "get_online, 1 entity x 10 features, embedded SQLite: p99",
            "loopline": f"{online['p99_ms']:.3f} ms (p50 {online['p50_ms']:.3f} ms)",
            "anchor": f"{feast_name} get_online_features, SQLite",
            "anchor_value": (
                f"{feast_online['p99_ms']:.3f} ms (p50 {feast_online['p50_ms']:.3f} ms)"
            ),
            "ratio": fmt_ratio(feast_online["p99_ms"] / online["p99_ms"]),
            "target": "p99 < 0.5 ms",
            "met": online["p99_ms"] < 0.5,
        }
    )
    return rows


if __name__ == "__main__":
    main()
