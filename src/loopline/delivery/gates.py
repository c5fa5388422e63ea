"""Gates: a challenger model version ships only if its data and its performance pass.

Used as ``ll.gates``::

    verdict = ll.gates.evaluate("churn", 4, "churn-holdout@2", "gate.yaml")
    verdict.blessed, verdict.reasons, verdict.metrics["challenger"]["auc"]

**Data gate.** The held-out dataset must meet the model's training data contract: the
contract file named in the thresholds (``data.contract``), else the contract of the
dataset the model's run trained on (found through lineage: column names, dtypes, nulls
and categories - value ranges are left out, held-out values may lie outside the training
range), else the model's signature. An optional sample of serving data
(``data.serving_sample``) is checked against the same contract without the label column.

**Performance gate.** The challenger and the current ``champion`` alias predict the SAME
held-out dataset version; per metric a value bound and a change bound against the
champion are checked (see :mod:`loopline.delivery.thresholds`). A metric that a bound
names but that cannot be computed fails. The first model (no champion) is judged by value
bounds alone. With ``bootstrap`` the change bound is checked on the worse end of a seeded
confidence interval.

The verdict is stored (``gate_verdicts``), tagged on the model version
(``loopline.gate = blessed|blocked``) and written to the audit log; a blocked version
cannot be deployed without ``force`` and a reason (see :func:`loopline.deploy`).

Example:
    >>> # v = ll.gates.evaluate("churn", 4, "churn-holdout@2", "gate.yaml")
    >>> # v.blessed, v.reasons
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from loopline.core.context import get_context
from loopline.delivery import metrics as gm
from loopline.delivery.thresholds import (
    Task,
    Thresholds,
    load_thresholds,
    parse_thresholds,
)
from loopline.delivery.verdicts import (
    GateCheck,
    GateVerdict,
    latest_verdict,
    store_verdict,
    verdicts,
)
from loopline.errors import InvalidInput, LooplineError, NotFound
from loopline.training.registry_checks import require_version_number

if TYPE_CHECKING:
    from loopline.data.contract_validation import Contract
    from loopline.data.dataset_version import DatasetVersion

__all__ = [
    "GateCheck",
    "GateVerdict",
    "Thresholds",
    "evaluate",
    "latest_verdict",
    "load_thresholds",
    "verdicts",
]

CHAMPION = "champion"


# -- evaluation ---------------------------------------------------------------------------


def _thresholds(thresholds: Thresholds | dict[str, Any] | str | os.PathLike[str]) -> Thresholds:
    if isinstance(thresholds, Thresholds):
        return thresholds
    if isinstance(thresholds, dict):
        return parse_thresholds(thresholds)
    return load_thresholds(thresholds)


def _dataset(dataset: DatasetVersion | str) -> DatasetVersion:
    from loopline.data import datasets

    if isinstance(dataset, str):
        name, number = datasets.parse_ref(dataset)
        if number is None:
            raise InvalidInput(
                f"dataset {dataset!r} names no version; the gate needs a fixed version",
                field="dataset",
                hint=f"use NAME@VERSION, e.g. {name}@3",
            )
        return datasets.get(name, number)
    return dataset


def _check_labels(frame: Any, label: str, ref: str) -> None:
    """Every held-out row must have a label: a missing one cannot be scored, and the AUC
    counted it as a negative (``y == positive`` is False for NaN) while the other metrics
    failed on it."""
    missing = frame[label].isna().to_numpy()
    if not missing.any():
        return
    rows = [int(i) for i in missing.nonzero()[0][:5]]
    more = ", ..." if int(missing.sum()) > len(rows) else ""
    raise InvalidInput(
        f"the label column {label!r} of dataset {ref} has {int(missing.sum())} missing "
        f"value(s) (rows {', '.join(map(str, rows))}{more}); every held-out row needs a label",
        field="label",
        hint=f"register a version of the held-out data without them, e.g. "
        f"df.dropna(subset=[{label!r}])",
    )


def _load_model(name: str, version: int) -> Any:
    from loopline.training import registry_reads

    return registry_reads.load(f"models:/{name}/{version}")


def current_champion(name: str) -> int | None:
    """The version the ``champion`` alias of model ``name`` points at, or None.

    Example:
        >>> # current_champion("churn")  -> 3
    """
    from loopline.training import registry_reads

    try:
        return registry_reads.get(name, CHAMPION).version
    except NotFound:
        return None


def evaluate(
    name: str,
    challenger_version: int | str,
    dataset: DatasetVersion | str,
    thresholds: Thresholds | dict[str, Any] | str | os.PathLike[str],
) -> GateVerdict:
    """Judge model version ``challenger_version`` of ``name``; store, tag and audit it.

    ``dataset`` is the held-out dataset version (``"NAME@VERSION"``), ``thresholds`` a
    YAML file path, a dict of the same shape or a :class:`Thresholds`.

    Example:
        >>> # verdict = ll.gates.evaluate("churn", 4, "churn-holdout@2", "gate.yaml")
        >>> # verdict.blessed
    """
    from loopline.training import registry_reads

    ctx = get_context()
    spec = _thresholds(thresholds)
    version = require_version_number(challenger_version)
    mv = registry_reads.get(name, version)
    data = _dataset(dataset)
    frame = data.to_pandas()
    if spec.label not in frame.columns:
        raise InvalidInput(
            f"the label column {spec.label!r} is not in dataset {data.ref} "
            f"(columns: {', '.join(map(str, frame.columns))})",
            field="label",
            hint="set 'label' in the thresholds file to the dataset's label column",
        )
    _check_labels(frame, spec.label, data.ref)
    challenger = _load_model(name, version)
    # The model's own task, when it says, decides how it is scored: a classifier gated on
    # rmse alone was scored as a regressor. A metric of the other task is refused.
    task = spec.task_for(challenger.task, f"version {version} of {name!r}")
    champion_version = current_champion(name)
    checks: list[GateCheck] = []
    if spec.data.validate_:
        checks.extend(_data_gate(spec, frame, data.ref, challenger, mv))
    perf_checks, metrics = _performance_gate(spec, task, frame, name, challenger, champion_version)
    checks.extend(perf_checks)
    blessed = all(c.passed for c in checks)
    reasons = [c.message for c in checks if c.passed == blessed]
    verdict = GateVerdict(
        name=name,
        version=version,
        blessed=blessed,
        reasons=reasons,
        metrics=metrics,
        checks=checks,
        champion_version=champion_version,
        dataset=data.ref,
        thresholds=spec.model_dump(mode="json", by_alias=True),
        created=time.time(),
        actor=ctx.settings.actor_name,
    )
    return store_verdict(ctx, verdict)


# -- the data gate ------------------------------------------------------------------------


def _relaxed(contract: Contract) -> Contract:
    """The contract's schema rules only: columns, dtypes, nulls and categories."""
    from loopline.data.contract_rules import ColumnRule, RowRule
    from loopline.data.contract_validation import Contract

    columns = {
        col: ColumnRule(dtype=rule.dtype, nullable=rule.nullable, allowed=rule.allowed)
        for col, rule in contract.columns.items()
    }
    return Contract(columns, rows=RowRule(), name=contract.name)


def _training_contract(mv: Any, held_out: str) -> tuple[Contract | None, str]:
    """The contract inferred from the dataset the model's run trained on, via lineage."""
    from loopline.data import contracts, datasets

    if mv.run_id is None:
        return None, "the model version has no run"
    inputs = [i for i in mv.datasets if i.kind == "dataset"]
    if not inputs:
        return None, f"run {mv.run_id} recorded no dataset input"
    preferred = [i for i in inputs if (i.context or "").lower() in ("training", "train")]
    others = [i for i in inputs if f"{i.name}@{i.version}" != held_out]
    skipped = []
    # The first one that is a table: a run that also read a folder of files (images, a
    # vocabulary) made the whole gate fail with 'is a folder of files, not a table'.
    for chosen in dict.fromkeys([*preferred, *others, *inputs]):
        train = datasets.get(chosen.name, chosen.version)
        try:
            frame = train.to_pandas()
        except InvalidInput:
            skipped.append(train.ref)
            continue
        contract = _relaxed(contracts.infer(frame, name=train.ref))
        return contract, f"the training data contract of {train.ref}"
    return None, f"run {mv.run_id} read no table dataset ({', '.join(skipped)}: files)"


def _data_gate(spec: Thresholds, frame: Any, held_out: str, model: Any, mv: Any) -> list[GateCheck]:
    from loopline.data.contract_validation import Contract

    if spec.data.contract:
        contract: Contract | None = Contract.from_yaml(spec.data.contract)
        source = f"contract {spec.data.contract}"
    else:
        contract, source = _training_contract(mv, held_out)
    checks: list[GateCheck] = []
    if contract is None:
        checks.append(_signature_check(spec, frame, held_out, model, source))
    else:
        checks.append(_contract_check(contract, frame, held_out, source))
    if spec.data.serving_sample:
        try:
            sample = _dataset(spec.data.serving_sample)
        except NotFound as exc:  # say which of the gate's datasets is missing
            raise NotFound(f"data.serving_sample: {exc.message}", hint=exc.hint) from exc
        serving = sample.to_pandas()
        if contract is None:
            checks.append(_signature_check(spec, serving, sample.ref, model, source))
        else:
            without = {c: r for c, r in contract.columns.items() if c != spec.label}
            checks.append(
                _contract_check(
                    Contract(without, name=contract.name),
                    serving,
                    sample.ref,
                    source,
                    check="serving_sample",
                )
            )
    return checks


def _contract_check(
    contract: Contract, frame: Any, ref: str, source: str, check: str = "contract"
) -> GateCheck:
    report = contract.validate(frame)
    if report.ok:
        return GateCheck("data", check, True, f"data: {ref} meets {source}")
    shown = "; ".join(str(v) for v in report.violations[:5])
    more = f" (and {len(report.violations) - 5} more)" if len(report.violations) > 5 else ""
    return GateCheck("data", check, False, f"data: {ref} breaks {source}: {shown}{more}")


def _signature_check(spec: Thresholds, frame: Any, ref: str, model: Any, source: str) -> GateCheck:
    signature = model.signature
    if signature is None:
        return GateCheck(
            "data",
            "contract",
            False,
            f"data: no contract to check {ref} against ({source}, and the model "
            "has no signature); name one with data.contract",
        )
    features = frame.drop(columns=[spec.label], errors="ignore")
    try:
        signature.validate(features)
    except InvalidInput as exc:
        return GateCheck(
            "data",
            "signature",
            False,
            f"data: {ref} does not fit the model's signature: {exc.message}",
        )
    return GateCheck(
        "data", "signature", True, f"data: {ref} fits the model's signature ({source})"
    )


# -- the performance gate -----------------------------------------------------------------


def _classes(model: Any) -> Any:
    """The model's classes in the order of its probability columns, or None if unknown.

    scikit-learn and XGBoost keep them on the estimator (``classes_``); a LightGBM
    classifier is loaded as its Booster, which has none, so they come from the manifest
    (recorded at logging).
    """
    import numpy as np

    native = getattr(model, "native", model)
    classes = getattr(native, "classes_", None)
    if classes is None:
        saved = getattr(getattr(model, "manifest", None), "saved", None)
        classes = None if saved is None else saved.options.get("classes")
    return None if classes is None else np.asarray(classes)


def _outputs(model: Any, features: Any, y_true: Any, task: str, positive: Any = None) -> gm.Outputs:
    import numpy as np

    y_pred = np.asarray(model.predict(features))
    proba = None
    classes = None
    no_proba = None
    if task == "classification":
        classes = _classes(model)
        try:
            predict_proba = model.predict_proba
        except AttributeError:
            predict_proba = None
        if predict_proba is not None:
            proba = np.asarray(predict_proba(features), dtype=np.float64)
            # Never guess which class a column is: taking the classes the labels and
            # predictions hold scored one class's probabilities as another's when the
            # held-out rows named a class the model never saw.
            if classes is None or proba.ndim != 2 or len(classes) != proba.shape[1]:
                no_proba = (
                    "the model does not say which class each probability column is "
                    f"(classes: {'unknown' if classes is None else len(classes)}, "
                    f"probability columns: {proba.shape[1] if proba.ndim == 2 else 1})"
                )
                proba, classes = None, None
    if y_pred.ndim > 1 and y_pred.shape[1] == 1:
        y_pred = y_pred.ravel()
    return gm.Outputs(np.asarray(y_true), y_pred, proba, classes, no_proba, positive)


def _features(spec: Thresholds, frame: Any, model: Any) -> Any:
    """The held-out columns the model takes, in its order (:attr:`LoadedModel.input_columns`):
    every column but the label went to a model logged without an input example, so an id
    column or another column order failed in scikit-learn. A model fitted on a bare array
    and logged without an example records no column names: its columns cannot be told
    from an id, nor its order from another, so it is not scored on a guess."""
    names = model.select_inputs([c for c in frame.columns if c != spec.label])
    if names is None:
        raise InvalidInput(
            f"{model.uri} was fitted on unnamed columns (a bare array) and logged without "
            "an input example, so nothing records which held-out columns it takes nor in "
            "which order, and the gate does not guess; log it again with "
            "input_example=X.head(5) (X the table it was fitted on, with column names) "
            "and gate that version",
            field="input_example",
            hint="run.log_model(model, 'model', input_example=X.head(5))",
        )
    return frame[names]


def _predict_all(
    spec: Thresholds, task: Task, frame: Any, model: Any, label: str
) -> tuple[gm.Outputs | None, str | None]:
    try:
        out = _outputs(model, _features(spec, frame, model), frame[spec.label], task, spec.positive)
    except (LooplineError, ValueError, TypeError) as exc:
        return None, f"{label} could not predict the held-out data: {exc}"
    return out, None


def _performance_gate(
    spec: Thresholds,
    task: Task,
    frame: Any,
    name: str,
    challenger: Any,
    champion_version: int | None,
) -> tuple[list[GateCheck], dict[str, Any]]:
    checks: list[GateCheck] = []
    chal, error = _predict_all(spec, task, frame, challenger, "the challenger")
    metrics: dict[str, Any] = {
        "task": task,
        "challenger": {},
        "champion": None,
        "change": {},
        "intervals": {},
    }
    if chal is None:
        return [GateCheck("performance", "predict", False, f"performance: {error}")], metrics
    metrics["challenger"] = gm.compute(task, chal)
    champ: gm.Outputs | None = None
    if champion_version is not None:
        champ, error = _predict_all(
            spec,
            task,
            frame,
            _load_model(name, champion_version),
            f"the champion (version {champion_version})",
        )
        if champ is None:
            checks.append(GateCheck("performance", "champion", False, f"performance: {error}"))
        else:
            metrics["champion"] = gm.compute(task, champ)
    for metric, bound in spec.metrics.items():
        value = metrics["challenger"].get(metric)
        if value is None:
            checks.append(
                GateCheck(
                    "performance",
                    metric,
                    False,
                    f"{metric}: missing: {gm.why_missing(metric, chal)}",
                )
            )
            continue
        checks.extend(_value_checks(metric, value, bound.lower, bound.upper))
        if bound.change is None:
            continue
        if champ is None or metrics["champion"] is None:
            if champion_version is None:
                checks.append(
                    GateCheck(
                        "performance",
                        f"{metric}.change",
                        True,
                        f"{metric}: no champion yet, change bound not applied",
                    )
                )
            continue
        base = metrics["champion"].get(metric)
        if base is None:
            checks.append(
                GateCheck(
                    "performance",
                    f"{metric}.change",
                    False,
                    f"{metric}: missing for the champion "
                    f"(version {champion_version}): "
                    f"{gm.why_missing(metric, champ)}",
                )
            )
            continue
        metrics["change"][metric] = {
            "absolute": value - base,
            "relative": (value - base) / abs(base) if base else None,
        }
        checks.extend(_change_checks(spec, metric, value, base, chal, champ, metrics))
    return checks, metrics


def _value_checks(
    metric: str, value: float, lower: float | None, upper: float | None
) -> list[GateCheck]:
    out = []
    if lower is not None:
        ok = value >= lower
        out.append(
            GateCheck(
                "performance",
                f"{metric}.lower",
                ok,
                f"{metric} = {value:.4g} {'>=' if ok else '<'} lower bound {lower}",
            )
        )
    if upper is not None:
        ok = value <= upper
        out.append(
            GateCheck(
                "performance",
                f"{metric}.upper",
                ok,
                f"{metric} = {value:.4g} {'<=' if ok else '>'} upper bound {upper}",
            )
        )
    return out


def _change_checks(
    spec: Thresholds,
    metric: str,
    value: float,
    base: float,
    chal: gm.Outputs,
    champ: gm.Outputs,
    metrics: dict[str, Any],
) -> list[GateCheck]:
    bound = spec.metrics[metric].change
    assert bound is not None
    higher = spec.direction(metric) == "higher"
    out = []
    for kind, limit in (("absolute", bound.absolute), ("relative", bound.relative)):
        if limit is None:
            continue
        if kind == "relative" and base == 0:
            out.append(
                GateCheck(
                    "performance",
                    f"{metric}.change.relative",
                    False,
                    f"{metric}: the champion's value is 0, so a relative change "
                    "is undefined; use an absolute bound",
                )
            )
            continue
        change = value - base if kind == "absolute" else (value - base) / abs(base)
        judged, how = change, f"change {change:+.4g}"
        rows = len(chal.y_true)
        if spec.bootstrap is not None and rows < spec.bootstrap.min_rows:
            out.append(
                GateCheck(
                    "performance",
                    f"{metric}.change.{kind}",
                    False,
                    f"{metric}: {rows} held-out rows are too few for the bootstrap to judge "
                    f"the change (bootstrap.min_rows: {spec.bootstrap.min_rows}): resamples "
                    "of a few rows often miss every row where the models differ; gate on a "
                    "larger held-out dataset",
                )
            )
            continue
        if spec.bootstrap is not None:
            interval = gm.bootstrap_change(
                metric,
                chal,
                champ,
                samples=spec.bootstrap.samples,
                confidence=spec.bootstrap.confidence,
                seed=spec.bootstrap.seed,
                relative=kind == "relative",
            )
            if interval is None:
                out.append(
                    GateCheck(
                        "performance",
                        f"{metric}.change.{kind}",
                        False,
                        f"{metric}: the bootstrap could not estimate the change "
                        "(too few resamples with a defined value)",
                    )
                )
                continue
            metrics["intervals"].setdefault(metric, {})[kind] = interval.to_dict()
            judged = interval.low if higher else interval.high
            how = (
                f"change {change:+.4g}, {interval.confidence:.0%} interval "
                f"[{interval.low:+.4g}, {interval.high:+.4g}]"
            )
        ok = judged >= limit if higher else judged <= limit
        sign = (">=" if ok else "<") if higher else ("<=" if ok else ">")
        out.append(
            GateCheck(
                "performance",
                f"{metric}.change.{kind}",
                ok,
                f"{metric} = {value:.4g} vs champion {base:.4g}: {kind} {how} {sign} {limit} "
                f"({'higher' if higher else 'lower'} is better)",
            )
        )
    return out
