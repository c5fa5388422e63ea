"""Stage 6, observability (see DESIGN.md). Public names: ``ll.monitor`` (:mod:`.api`).

Data drift (:mod:`.drift`, :mod:`.sketch`), in short for the README:

``ll.monitor.drift(reference, current)`` / ``loopline drift REF CUR`` test every column with
Evidently 0.7's default tests (KS or normed Wasserstein for numeric columns, chi-square /
z-test or Jensen-Shannon for categorical ones, by reference size) and report PSI as well.
``report.drifted`` is Evidently's dataset verdict (at least half of the columns drifted),
kept so that the two tools can be compared. **The loop does not trigger on it**: with 25
columns, 5 drifted ones are "no drift" for that rule, even if they are the model's top
features. The loop calls ``report.trigger(columns=model_features)``, which fires when any
feature drifts, its share of missing values rises, or it is missing or broken (all null,
another type) in the current data; drift in columns the model does not read triggers
nothing, and neither do columns skipped on purpose (text IDs) or an empty current table.
``DriftSketch`` keeps fixed-bin counts per column so that drift over a window of logged
predictions is computed from stored counts in milliseconds, whatever the traffic.
"""
