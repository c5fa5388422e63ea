"""Stage 2, experiment tracking: runs, params, metrics, tags, artifacts, lineage, search.

The SDK (``ll.start_run``, ``ll.get_run``, ``ll.search_runs``, ``ll.metric_history``,
``ll.active_run``) lives in :mod:`~loopline.tracking.api`, the handle it gives out (``Run``)
in :mod:`~loopline.tracking.run_handle`. Underneath, one module per job:

* :mod:`~loopline.tracking.tables` - the tables (migration ``0002_tracking``);
* :mod:`~loopline.tracking.experiments`, :mod:`~loopline.tracking.run_creation`,
  :mod:`~loopline.tracking.run_state`, :mod:`~loopline.tracking.run_data`,
  :mod:`~loopline.tracking.lineage`, :mod:`~loopline.tracking.query` - the store functions
  (engine in, plain records out) that the SDK and the MLflow-compatible server share, with
  :mod:`~loopline.tracking.param_tag_checks` - how they check params and tags;
* :mod:`~loopline.tracking.metrics` and :mod:`~loopline.tracking.ingest` - the metric write
  path: a buffer and a background writer, bulk inserts, the latest value per key;
* :mod:`~loopline.tracking.search` - the MLflow filter grammar, parsed into bound SQL;
* :mod:`~loopline.tracking.validation` - keys and MLflow's value limits;
* :mod:`~loopline.tracking.environment` - command, packages and (through
  :mod:`~loopline.tracking.git_state`, which :mod:`~loopline.tracking.file_events` tells when
  to ask git again) the code's git state, recorded on run start;
* :mod:`~loopline.tracking.backend` - the one interface the SDK talks to, with two
  implementations chosen by ``LOOPLINE_URI``: :mod:`~loopline.tracking.embedded` (the store
  functions above) and :mod:`~loopline.tracking.remote` (HTTP to ``/api/v1`` of a Loopline
  server), whose records are the pydantic models of :mod:`~loopline.tracking.wire` and whose
  metric batches :mod:`~loopline.tracking.batch_codec` encodes;
* :mod:`~loopline.tracking.run_records` - reading whole runs for gets and searches.

Example:
    >>> import loopline as ll  # doctest: +SKIP
    >>> with ll.start_run(experiment="churn") as run:  # doctest: +SKIP
    ...     run.log_metric("auc", 0.91)
"""
