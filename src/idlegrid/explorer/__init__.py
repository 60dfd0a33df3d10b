"""A web explorer of an idlegrid network, built from its chain by the indexer alone.

    idlegrid explorer --network devnet.json        # http://127.0.0.1:8700

* :func:`create_app` (``_app.py``): the FastAPI app: pages (Jinja2 + htmx 2 + ECharts),
  their JSON at stable URLs with an OpenAPI description, one server-sent event stream;
* :class:`LiveFeed` (``_live.py``): one indexer poll that feeds every viewer;
* ``_views.py``: what each page shows, as JSON-ready dicts read from the index, every
  figure marked observed on chain, derived, or unknown (``_views_network.py``,
  ``_views_disputes.py``, ``_views_models.py``, on the common ground of ``_figures.py``);
* :func:`serve_explorer` (``_serve.py``): the index, the feed and the server together.
"""

from __future__ import annotations

from ._app import create_app, vendor_dir
from ._live import LiveFeed, Update
from ._serve import Explorer, serve_explorer

__all__ = ["Explorer", "LiveFeed", "Update", "create_app", "serve_explorer", "vendor_dir"]
