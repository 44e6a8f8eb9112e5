"""Prometheus metrics: one registry per app, so several apps in one process stay apart."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Latency buckets in seconds, fine at the low end where the server's own overhead lives.
_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.sessions_active = Gauge(
            "openrealtime_sessions_active", "Open sessions.", ["transport"], registry=r
        )
        self.sessions_refused = Counter(
            "openrealtime_sessions_refused_total", "Refused connections.", ["reason"], registry=r
        )
        self.events_in = Counter(
            "openrealtime_client_events_total", "Client events received.", ["type"], registry=r
        )
        self.events_out = Counter(
            "openrealtime_server_events_total", "Server events sent.", ["type"], registry=r
        )
        self.errors = Counter(
            "openrealtime_errors_total",
            "Errors: error events and failed responses/transcriptions, by code.",
            ["code"],
            registry=r,
        )
        self.backend_seconds = Histogram(
            "openrealtime_backend_request_seconds",
            "Backend request duration.",
            ["backend"],
            buckets=_LATENCY,
            registry=r,
        )
        self.backend_failures = Counter(
            "openrealtime_backend_failures_total",
            "Backend failures.",
            ["backend", "code"],
            registry=r,
        )
        self.speech_stopped_lag = Histogram(
            "openrealtime_speech_stopped_lag_seconds",
            "End of speech (plus silence_duration_ms) to speech_stopped sent.",
            buckets=_LATENCY,
            registry=r,
        )
        self.llm_first_token = Histogram(
            "openrealtime_llm_first_token_seconds",
            "LLM request to first token.",
            buckets=_LATENCY,
            registry=r,
        )
        self.tts_first_audio = Histogram(
            "openrealtime_tts_first_audio_seconds",
            "Synthesis request to first audio.",
            buckets=_LATENCY,
            registry=r,
        )
        self.speech_to_audio = Histogram(
            "openrealtime_speech_end_to_first_audio_seconds",
            "End of user speech to the first assistant audio sent.",
            buckets=_LATENCY,
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
