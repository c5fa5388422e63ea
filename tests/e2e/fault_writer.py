"""A writer process for the fault tests: logs metric points until told to stop, and records
which points were acknowledged.

Usage: ``python fault_writer.py sdk|mlflow OUT STOP``. The store is ``LOOPLINE_URI`` (the
SDK: a database, or a server's ``http://`` URL) or ``MLFLOW_TRACKING_URI`` (the MLflow
client, to a ``loopline server``). Each line of OUT is JSON: first ``{"run_id": ...}``,
then ``{"acked": N, "t": unix time}`` each time every step up to N is acknowledged - for
the SDK when ``run.flush()`` returned (the points are committed), for the MLflow client
when ``log_batch`` returned - and last ``{"done": N}`` once the run ended. The writer
stops when the file STOP exists. Step ``s`` is logged as metric ``m`` with value ``s``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TextIO

STEPS_PER_ACK = 25


def _say(out: TextIO, **fields: object) -> None:
    out.write(json.dumps(fields) + "\n")
    out.flush()


def sdk(out: TextIO, stop: Path) -> None:
    import loopline as ll

    with ll.start_run(experiment="faults") as run:
        _say(out, run_id=run.id)
        step = 0
        while not stop.exists():
            for _ in range(STEPS_PER_ACK):
                run.log_metric("m", float(step), step=step)
                step += 1
            run.flush()  # returns once every point so far is committed
            _say(out, acked=step - 1, t=time.time())
            time.sleep(0.02)
    _say(out, done=step - 1)


def mlflow(out: TextIO, stop: Path) -> None:
    from mlflow import MlflowClient
    from mlflow.entities import Metric
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        experiment_id = client.create_experiment("faults-mlflow")
    except MlflowException:  # another writer made it first
        experiment_id = client.get_experiment_by_name("faults-mlflow").experiment_id
    run_id = client.create_run(experiment_id).info.run_id
    _say(out, run_id=run_id)
    step = 0
    while not stop.exists():
        now = int(time.time() * 1000)
        batch = [Metric("m", float(s), now, s) for s in range(step, step + STEPS_PER_ACK)]
        client.log_batch(run_id, metrics=batch)  # returns once the server committed it
        step += STEPS_PER_ACK
        _say(out, acked=step - 1, t=time.time())
        time.sleep(0.02)
    client.set_terminated(run_id)
    _say(out, done=step - 1)


def main() -> None:
    mode, out_path, stop_path = sys.argv[1:4]
    with Path(out_path).open("a") as out:
        {"sdk": sdk, "mlflow": mlflow}[mode](out, Path(stop_path))


if __name__ == "__main__":
    main()
