"""Watching a model: the newest window of the stable version's logged predictions, its
drift against the data the model was trained on and its live metrics, and the triggers
they fire.

Separate from :mod:`loopline.loop.actions`: watching only reads (and stores the drift it
measured); what a fired trigger leads to is decided by the controller and done there.

Example:
    >>> _dead("broken: all null in current")  # a broken feature triggers whatever the share
    True
"""

from __future__ import annotations

from loopline.loop.policy import LoopPolicy
from loopline.monitoring.drift_results import store_drift
from loopline.monitoring.performance import WindowMetrics, performance

# -- watching ------------------------------------------------------------------------------


def _reference(policy: LoopPolicy, version: int) -> str | None:
    """The drift reference: the ``reference`` dataset version the stable model read."""
    from loopline.data import datasets
    from loopline.training import registry_reads

    if policy.reference is None:
        return None
    for item in registry_reads.get(policy.model, version).datasets:
        if item.name == policy.reference:
            return f"{item.name}@{item.version}"
    return datasets.get(policy.reference).ref


def _features(policy: LoopPolicy, version: int) -> list[str] | None:
    """The columns to test for drift: the policy's ``features``, else the registered
    signature's, else None (every column of the reference).

    Not :attr:`~loopline.training.models.LoadedModel.input_columns`: for a model logged
    without an input example the names it was fitted on live only in the model file, and
    loading (reading, hashing and unpickling) every version on each pass of the loop to
    read them is not worth it; docs/monitoring.md tells such a model's policy to list its
    ``features``.

    Example:
        >>> # _features(policy, 3)  -> ['tenure', 'spend']
    """
    from loopline.training import registry_reads

    if policy.features:
        return list(policy.features)
    signature = registry_reads.get(policy.model, version).signature
    return None if signature is None else list(signature.names or [])


def watch(policy: LoopPolicy, version: int) -> tuple[WindowMetrics | None, list[str]]:
    """The newest window of the stable ``version`` and the triggers it fires.

    Example:
        >>> # window, triggers = watch(policy, 3)
    """
    m = policy.monitor
    features = _features(policy, version)
    ref = _reference(policy, version) if m.drift.enabled else None
    windows = performance(
        policy.model,
        window=10**9,
        last=m.window_requests,
        reference=ref,
        features=features,
        positive=policy.gate.thresholds.get("positive"),  # the class the gate scores
    )
    mine = [w for w in windows if w.version == str(version)]
    if mine and ref is not None and (mine[-1].drift_scores or mine[-1].drifted):
        store_drift(policy.model, mine[-1], ref)  # a window of broken features only, too
    if not mine or mine[-1].rows < m.min_rows:
        return (mine[-1] if mine else None), []
    w = mine[-1]
    triggers = []
    if ref is not None:
        drifted = [c for c in w.drifted if features is None or c in features]
        # The window's sketch holds the features only; its share counts a missing feature
        # once, as drifted (it was drifted / tested, which could pass 1).
        share = w.value("drift_share")
        if m.drift.share is None and drifted:
            # each with why: "spend (broken: all null in current)", "temp (wasserstein ...)"
            why = [f"{c} ({w.drift_notes[c]})" if c in w.drift_notes else c for c in drifted]
            triggers.append(f"drift in {', '.join(why)}")
        elif m.drift.share is not None:
            # As DriftReport.trigger(share=...): a feature missing from the traffic, or
            # broken in it (all null, another type), triggers whatever the share; in a wide
            # model one dead feature is too few for a share, and it is the worst drift.
            dead = [c for c in drifted if _dead(w.drift_notes.get(c))]
            if share is not None and share >= m.drift.share:
                total = len(w.drift_scores.keys() | set(w.drifted))
                triggers.append(f"drift in {len(drifted)}/{total} features")
            elif dead:
                said = ", ".join(f"{c} ({w.drift_notes[c]})" for c in dead)
                triggers.append(f"drift in {said}")
    if w.labelled >= m.min_labels:
        for metric, floor in m.floors.items():
            value = w.value(metric)
            if value is not None and value < floor:
                triggers.append(f"{metric} {value:.3f} < floor {floor:g}")
    for metric, ceiling in m.ceilings.items():
        value = w.value(metric)
        if value is not None and value > ceiling:
            triggers.append(f"{metric} {value:.3g} > ceiling {ceiling:g}")
    return w, triggers


def _dead(note: str | None) -> bool:
    """Whether a drift note says the feature is missing or broken, not just drifted.

    Example:
        >>> _dead("broken: all null in current"), _dead("ks p=0.001 < 0.05")
        (True, False)
    """
    from loopline.monitoring.report import BROKEN, MISSING

    return note is not None and (note == MISSING or note.startswith(f"{BROKEN}:"))
