"""The process that reruns a pipeline for ``loopline reproduce`` (``python -m`` this module).

It is started by :func:`loopline.training.reproduce.reproduce` with the checked-out code
on ``PYTHONPATH``, the store in ``LOOPLINE_URI``/``LOOPLINE_ARTIFACTS`` and the data pins
in ``LOOPLINE_DATASET_PINS``, by the interpreter of the chosen environment. It imports the
pipeline from the checkout, runs it with the recorded params and no step cache (a cache hit
would hand back the original outputs and prove nothing), tags the new run as a
reproduction, and writes ``{"run_id", "status", "steps": {name: run_id}}`` to ``--out``.

Example:
    >>> # python -m loopline.training.reproduce_worker RUN_ID --out /tmp/r.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

MODEL_TAG = "loopline.reproduction.model"


def main(argv: list[str] | None = None) -> int:
    """Rerun pipeline run ``RUN_ID`` (see module doc); the exit code is 0 when it ran.

    Example:
        >>> # main(["3f2a...", "--out", "/tmp/r.json", "--executor", "local"])
    """
    parser = argparse.ArgumentParser(prog="loopline-reproduce-worker")
    parser.add_argument("run_id")
    parser.add_argument("--out", required=True)
    parser.add_argument("--executor", default=None)
    parser.add_argument("--model", default=None)
    args = parser.parse_args(argv)

    import loopline
    from loopline.core.context import get_context
    from loopline.tracking.api import get_run
    from loopline.training import pipeline_store, reproduce_record
    from loopline.training.pipeline import resolve_pipeline
    from loopline.training.worker import materialize

    loopline.init()
    ctx = get_context()
    old = pipeline_store.get(ctx.engine, args.run_id)
    pipe = resolve_pipeline(old.target)
    params = {k: materialize(spec, ctx.artifacts) for k, spec in old.params.items()}
    orig = get_run(args.run_id).tags
    tags = {reproduce_record.REPRODUCTION_OF_TAG: args.run_id}
    if args.model:
        tags[MODEL_TAG] = args.model
    # The checkout is no git work tree: say which code it is (the original's commit + diff).
    for key in (
        reproduce_record.COMMIT_TAG,
        reproduce_record.DIRTY_TAG,
        reproduce_record.DIFF_HASH_TAG,
    ):
        value = orig.get(key)
        if value:
            tags[key] = value
    result = pipe.run(params, executor=args.executor or old.executor, cache=False, tags=tags)
    Path(args.out).write_bytes(
        orjson.dumps(
            {
                "run_id": result.run_id,
                "status": result.status,
                "steps": {name: s.run_id for name, s in result.steps.items()},
            }
        )
    )
    return 0


if __name__ == "__main__":
    from loopline.errors import LooplineError

    try:
        sys.exit(main())
    except LooplineError as exc:  # the parent shows this text; a traceback would bury it
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
