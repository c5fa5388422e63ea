"""The web UI at ``/`` of ``loopline server``: server-rendered pages, no build step.

Pages are Jinja2 templates (autoescaped) in ``templates/``, routes in :mod:`.routes`.
Charts are drawn in the browser by uPlot (MIT, vendored with its licence in
``static/vendor/uplot-<version>/``), so nothing is fetched from elsewhere at run time.
Every page only reads; the one action is the audit log's "verify".

Example:
    >>> # from loopline.server.ui import install_ui; install_ui(app)
"""

from __future__ import annotations

from loopline.server.ui.routes import install_ui

__all__ = ["install_ui"]
