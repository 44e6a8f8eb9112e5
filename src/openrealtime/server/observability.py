"""What `create_app` sets up for operators: the app's metrics (`app.state.metrics`), the
`/metrics` route unless `--no-metrics` (the routes `observe` gives), and the log filter that keeps websockets' frame and
header dumps (audio, `Authorization`) out of debug logs."""

from __future__ import annotations

from starlette.applications import Starlette

from ..config import Settings
from ..logs import install_wire_dump_filter
from ..runtime.metrics import Metrics
from .metrics import metrics_routes
from .routing import Routes


def observe(app: Starlette, settings: Settings) -> Routes:
    metrics = app.state.metrics = Metrics()
    metrics.sessions_limit.set(settings.max_sessions)
    install_wire_dump_filter()
    return metrics_routes(metrics) if settings.metrics else Routes()
