"""MLflow-compatible routes for what a run read and made: dataset inputs
(``runs/log-inputs``), logged-model outputs (``runs/outputs``) and its artifact listing
(``artifacts/list``), as :mod:`loopline.tracking.lineage` keeps them.

Separate from the run routes (:mod:`.mlflow_runs`) because they check and store lineage
records (MLflow's dataset limits, a logged model that must exist), not the run itself.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends
from pydantic import Field

from loopline.core.context import Context
from loopline.errors import InvalidInput
from loopline.server import mlflow_ops as ops
from loopline.server.deps import get_ctx
from loopline.server.mlflow_wire import WireRequest as _Req
from loopline.server.mlflow_wire import run_info_json
from loopline.server.strict_json import StrictJsonRoute
from loopline.tracking import lineage, run_state
from loopline.tracking.entities import RunInput, RunOutput

router = APIRouter(route_class=StrictJsonRoute, prefix="/api/2.0/mlflow", tags=["mlflow-tracking"])
Ctx = Annotated[Context, Depends(get_ctx)]


# MLflow's limits (mlflow.utils.validation: MAX_DATASET_*, MAX_INPUT_TAG_*; its datasets
# table's columns), so that what is refused here is what MLflow's server refuses too.
# The run's input row checks the rest (lineage.check_input: no NUL, no control character).
class DatasetIn(_Req):
    name: str = Field(max_length=500)
    digest: str = Field(max_length=36)
    source_type: str | None = Field(None, max_length=36)
    source: str | None = Field(None, max_length=65_535)
    schema_: str | None = Field(None, alias="schema", max_length=1_048_575)
    profile: str | None = Field(None, max_length=16_777_215)


class InputTag(_Req):
    key: str = Field(max_length=255)
    value: str | None = Field(None, max_length=500)


class DatasetInputIn(_Req):
    tags: list[InputTag] | None = None
    dataset: DatasetIn


class LogInputs(_Req):
    run_id: str
    datasets: list[DatasetInputIn] | None = None


#: Where each field of a run's input comes from in MLflow's request (to name it there).
_INPUT_FIELDS = {
    "kind": "dataset.source_type",
    "name": "dataset.name",
    "digest": "dataset.digest",
    "context": "tags.mlflow.data.context",
}


def _mlflow_input(index: int, item: RunInput) -> RunInput:
    """``item`` checked as the store checks it, a refusal naming the request's field."""
    try:
        return lineage.check_input(item)
    except InvalidInput as exc:
        where = f"datasets.{index}.{_INPUT_FIELDS.get(exc.field or '', exc.field)}"
        raise InvalidInput(f"{where}: {exc.message}", field=where, hint=exc.hint) from None


@router.post("/runs/log-inputs")
def log_inputs(body: LogInputs, ctx: Ctx) -> dict[str, Any]:
    inputs = []
    for index, item in enumerate(body.datasets or []):
        tags = [(t.key, t.value) for t in item.tags or []]
        context = next((v for k, v in tags if k == "mlflow.data.context"), None)
        dataset = item.dataset
        # Kept as sent, so that the client reads back what it logged (mlflow.data.get_source
        # parses the source, schema and profile).
        details = {
            "source": dataset.source,
            "schema": dataset.schema_,
            "profile": dataset.profile,
            "tags": tags,
        }
        found = RunInput(
            dataset.source_type or "dataset",
            dataset.name,
            "mlflow",
            dataset.digest,
            context,
            orjson.dumps(details).decode(),
        )
        inputs.append(_mlflow_input(index, found))
    lineage.log_inputs(ctx.engine, body.run_id, inputs)
    return {}


class ModelOutput(_Req):
    model_id: str
    step: int | None = 0


class LogOutputs(_Req):
    run_id: str
    models: list[ModelOutput] | None = None


@router.post("/runs/outputs")
def log_outputs(body: LogOutputs, ctx: Ctx) -> dict[str, Any]:
    """MLflow 3's ``LogOutputs``: the models a run logged (``log_model`` sends it), read back
    in ``runs/get``'s ``outputs.model_outputs``.

    Example:
        >>> # POST /api/2.0/mlflow/runs/outputs
        >>> #      {"run_id": "3f2a...", "models": [{"model_id": "m-0123", "step": 0}]}
    """
    run_state.get_run(ctx.engine, body.run_id)  # 404 for an unknown run
    from loopline.training import registry_logged_models

    for m in body.models or []:
        registry_logged_models.get_logged_model(ctx, m.model_id)
    outputs = [RunOutput(m.model_id, 0 if m.step is None else m.step) for m in body.models or []]
    lineage.log_outputs(ctx.engine, body.run_id, outputs)
    return {}


@router.get("/artifacts/list")
def list_run_artifacts(
    ctx: Ctx,
    run_id: str | None = None,
    run_uuid: str | None = None,
    path: str | None = None,
    page_token: str | None = None,  # accepted: the one page is every entry
) -> dict[str, Any]:
    """MLflow's ``ListArtifacts`` of a run (its UI's artifact browser): what lies directly
    under ``path``, each ``path`` relative to the run's artifact root, with that root.
    One page holds everything (no ``next_page_token``), as MLflow's proxied listing does.

    Example:
        >>> # GET /api/2.0/mlflow/artifacts/list?run_id=3f2a...&path=plots
        >>> #   -> {"root_uri": "mlflow-artifacts:/1/3f2a.../artifacts",
        >>> #       "files": [{"path": "plots/roc.png", "is_dir": false, "file_size": 812}]}
    """
    from loopline.core.artifact_paths import clean_path
    from loopline.server.mlflow_artifacts import list_run

    record = run_state.get_run(ctx.engine, ops.require_run_id(run_id or run_uuid))
    sub = clean_path(path or "", allow_empty=True)
    listed = list_run(ctx, record.id, sub)
    prefix = f"{sub}/" if sub else ""
    files = [{**f, "path": prefix + f["path"]} for f in listed.get("files", [])]
    out: dict[str, Any] = {"root_uri": run_info_json(record)["artifact_uri"]}
    if files:
        out["files"] = files
    return out
