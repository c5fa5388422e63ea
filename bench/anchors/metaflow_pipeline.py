"""The Metaflow side of bench_pipeline: runs in the anchor venv (bench/.envs/metaflow).

Usage: python metaflow_pipeline.py STEPS WORKDIR
Writes a FlowSpec of STEPS chained no-op steps (``start`` .. ``end``), runs it locally
(``python flow.py run``: each step a local process, the datastore a folder under WORKDIR),
then ``resume end --origin-run-id`` (Metaflow's nearest thing to a cache: every step but
``end`` is cloned from the first run instead of run). Prints one JSON line of figures.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

steps, workdir = int(sys.argv[1]), Path(sys.argv[2])
workdir.mkdir(parents=True, exist_ok=True)
names = ["start", *[f"s{i}" for i in range(1, steps - 1)], "end"]
body = ["from metaflow import FlowSpec, step", "", "", "class Chain(FlowSpec):"]
for name, nxt in zip(names, [*names[1:], None], strict=True):
    body += ["    @step", f"    def {name}(self):"]
    body.append(f"        self.next(self.{nxt})" if nxt else "        pass")
    body.append("")
body += ["", 'if __name__ == "__main__":', "    Chain()", ""]
flow = workdir / "chain_flow.py"
flow.write_text("\n".join(body))
env = {
    **os.environ,
    "USERNAME": "bench",
    "METAFLOW_HOME": str(workdir / "mf-home"),
    "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(workdir),
    "METAFLOW_DEFAULT_DATASTORE": "local",
    "METAFLOW_DEFAULT_METADATA": "local",
}


def run(*args: str) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(flow), "--no-pylint", *args],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"metaflow {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return elapsed, done.stdout + done.stderr


import metaflow  # noqa: E402

first, log = run("run")
run_id = re.findall(r"run-id (\d+)", log)[0]
resumed, log2 = run("resume", "end", "--origin-run-id", run_id)
print(
    json.dumps(
        {
            "version": metaflow.__version__,
            "steps": steps,
            "uncached_s": first,
            "resume_s": resumed,
            "cloned": len(re.findall(r"Cloning previously run task", log2)),
        }
    )
)
