"""`GET /metrics`: the app's metrics (`runtime/metrics.py`) in the Prometheus text format.

Served without authentication (a scraper rarely holds an API key, and nothing there is
secret: no ids, keys or content, only counts and durations by bounded labels). `--no-metrics`
removes the route; behind a proxy, keep it off the public internet (docs/operations.md).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..runtime.metrics import Metrics
from .routing import Routes

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def metrics_routes(metrics: Metrics) -> Routes:
    routes = Routes()

    @routes.get("/metrics")
    async def scrape(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return routes
