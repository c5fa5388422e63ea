"""The options of the model server (``loopline serve``): :class:`ServeSettings`.

Apart from the app (:mod:`loopline.serving.app`): the command builds them from its flags
before any app exists, and each worker process of ``loopline serve --workers N`` reads
them from ``LOOPLINE_SERVE_*``.

Example:
    >>> ServeSettings(max_body_mb=1.0).max_body_mb
    1.0
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from loopline.serving.feedback import LABEL_HORIZON_S


class ServeSettings(BaseSettings):
    """Options of ``loopline serve``, also read from ``LOOPLINE_SERVE_*`` by each worker."""

    model_config = SettingsConfigDict(env_prefix="LOOPLINE_SERVE_", extra="ignore")

    models: list[str] = []
    poll_interval: float = 1.0
    max_body_mb: float = 16.0
    multiprocess: bool = False
    log_predictions: bool = True
    #: Seconds one prediction may take (a deployment's ``timeout_ms`` overrides it); past
    #: it the fallback answers, or 504. None: no limit, predictions run inline (fastest).
    predict_timeout_s: float | None = Field(None, gt=0)
    #: How long a background thread (prediction-log writer, deployment poller) may hold the
    #: GIL while a request waits for it, in ms (``sys.setswitchinterval``; CPython's
    #: default is 5 ms, which a request paid in full whenever it arrived during a flush).
    switch_interval_ms: float = Field(0.5, gt=0, le=100)
    #: Native (OpenMP) threads one prediction may use; 0: the model library's default, a
    #: team as wide as the machine. One by default: many small requests side by side each
    #: on one thread use the cores without the spinning and descheduled-team stalls of
    #: wide teams (see loopline.training.native_threads).
    native_threads: int = Field(1, ge=0, le=1024)
    #: Seconds a ``/feedback`` label for a request this worker does not remember waits for
    #: the worker or replica that answered it (which reads it within a poll or two); then
    #: it expires, counted in ``loopline_feedback_labels_total{outcome="expired"}`` (see
    #: loopline.serving.feedback). Keep it many poll intervals long.
    label_horizon_s: float = Field(LABEL_HORIZON_S, gt=0)
