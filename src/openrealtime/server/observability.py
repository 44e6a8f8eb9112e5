"""What `create_app` sets up for operators: the app's metrics (`app.state.metrics`), the
`/metrics` route unless `--no-metrics`, and the log filter that keeps websockets' frame and
header dumps (audio, `Authorization`) out of debug logs."""

from __future__ import annotations

from fastapi import FastAPI

from ..config import Settings
from ..logs import install_wire_dump_filter
from ..runtime.metrics import Metrics
from .metrics import metrics_router


def observe(app: FastAPI, settings: Settings) -> Metrics:
    metrics = app.state.metrics = Metrics()
    metrics.sessions_limit.set(settings.max_sessions)
    if settings.metrics:
        app.include_router(metrics_router(metrics))
    install_wire_dump_filter()
    return metrics
