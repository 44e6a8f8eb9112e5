"""Prometheus metrics: one registry per app, so several apps in one process stay apart.

What is measured where (the core never reads the clock, so every timing is taken outside it):
- sessions: the driver (`runtime/telemetry.py`) counts a session from `start()` to `close()`,
  labelled by its transport; a sideband connection counts while attached. Refusals are counted
  by whoever refuses (`Metrics.refused`).
- events: the driver, once per event — client events in `receive`, server events in its
  fan-out (not per connection attached).
- errors: `error` events, failed responses (`response.done` with `status: failed`, by
  `status_details.error.code`) and failed transcriptions, from the events the driver sends.
- backends and stage latencies: the driver, the speech pipeline and the transcript feeds.
- MCP tool listings and calls, by outcome: the session's MCP connections (`runtime/mcp.py`).

They live here, below the transports and the server, because the driver counts them;
`server/metrics.py` serves them (`GET /metrics`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric

# Latency buckets in seconds, fine at the low end where the server's own overhead lives.
_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

# How an MCP listing or call ended: `completed`, an McpError kind, `cancelled` (its response
# was), or `server_error` (a bug of ours). Fixed, so the label stays bounded.
MCP_OUTCOMES = (
    "completed",
    "tool_execution_error",
    "protocol_error",
    "http_error",
    "cancelled",
    "server_error",
)

# Why a session was refused (`Metrics.refused`): a small fixed set, so the label stays bounded.
REFUSED_REASONS = (
    "max_sessions",  # the process holds --max-sessions
    "max_sessions_per_key",  # the key holds --max-sessions-per-key
    "shutting_down",  # SIGTERM received: no new sessions
    "unauthorized",  # no valid key or client secret
)

_M = TypeVar("_M", bound=MetricWrapperBase)


class Children(Generic[_M]):
    """A metric's children by label value, bound once: `.labels()` takes a lock and checks
    its arguments on every call, too slow for a path taken per event."""

    __slots__ = ("_children", "_metric")

    def __init__(self, metric: _M) -> None:
        self._metric = metric
        self._children: dict[str, _M] = {}

    def __call__(self, label: str) -> _M:
        child = self._children.get(label)
        if child is None:
            child = self._children[label] = self._metric.labels(label)
        return child


# Event types counted per chunk of audio (in, out): tallied, see Tally.
HOT_EVENTS = frozenset({"input_audio_buffer.append", "response.output_audio.delta"})
# A tally hands its count over at least this often, so a process whose registry is not the one
# collected (e.g. one of several sharing a metrics directory) lags by at most so many events.
TALLY_BATCH = 64


class Tally:
    """A counter child's increments added up in a plain int and handed over every TALLY_BATCH
    events and when the registry is collected (`Tallies.collect`): `Counter.inc` takes a lock
    per call, a cost paid per 20 ms chunk of every session. Only the event loop's thread counts
    and collects."""

    __slots__ = ("_child", "pending")

    def __init__(self, child: Counter) -> None:
        self._child = child
        self.pending = 0

    def inc(self, amount: int = 1) -> None:
        self.pending += amount
        if self.pending >= TALLY_BATCH:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self._child.inc(self.pending)
            self.pending = 0


class Tallies:
    """A counter's children by label value, a `Tally` for the HOT_EVENTS (the rest count at
    once); registered before the counters, so a collection (`/metrics`) hands every tally over
    before the counters are read. Yields no metric itself."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._tallies: list[Tally] = []
        registry.register(self)

    def of(self, counter: Counter) -> Callable[[str], Tally | Counter]:
        children = Children(counter)
        tallies: dict[str, Tally] = {}

        def child(label: str) -> Tally | Counter:
            if label not in HOT_EVENTS:
                return children(label)
            found = tallies.get(label)
            if found is None:
                found = tallies[label] = Tally(children(label))
                self._tallies.append(found)
            return found

        return child

    def collect(self) -> Iterator[Metric]:
        for tally in self._tallies:
            tally.flush()
        return iter(())


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        tallies = Tallies(r)  # first: see Tallies
        self.sessions_active = Gauge(
            "openrealtime_sessions_active",
            "Open sessions (websocket, webrtc) and attached sideband connections.",
            ["transport"],
            registry=r,
        )
        self.sessions_opened = Counter(
            "openrealtime_sessions_opened_total", "Sessions opened.", ["transport"], registry=r
        )
        self.sessions_limit = Gauge(
            "openrealtime_sessions_limit",
            "The most concurrent sessions this process accepts (--max-sessions).",
            registry=r,
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
            "Backend request duration, completed requests: llm (request to end of stream), "
            "stt (end of the turn to the transcript), tts (one piece of text to its last audio).",
            ["stage", "backend"],
            buckets=_LATENCY,
            registry=r,
        )
        self.backend_failures = Counter(
            "openrealtime_backend_failures_total",
            "Backend failures, by stage (llm, stt, tts), backend and error code.",
            ["stage", "backend", "code"],
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
            "Synthesis request to first audio (a response's first piece of text).",
            buckets=_LATENCY,
            registry=r,
        )
        self.speech_to_audio = Histogram(
            "openrealtime_speech_end_to_first_audio_seconds",
            "End of user speech to the first assistant audio sent.",
            buckets=_LATENCY,
            registry=r,
        )
        self.mcp_list_tools = Counter(
            "openrealtime_mcp_list_tools_total",
            "MCP servers' tool listings, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.mcp_calls = Counter(
            "openrealtime_mcp_calls_total", "MCP tool calls, by outcome.", ["outcome"], registry=r
        )
        # Bound once per label value, shared by every session of the app.
        self.events_in_by_type = tallies.of(self.events_in)
        self.events_out_by_type = tallies.of(self.events_out)
        self.errors_by_code = Children(self.errors)
        self.active_by_transport = Children(self.sessions_active)
        self.opened_by_transport = Children(self.sessions_opened)
        self.mcp_lists_by_outcome = Children(self.mcp_list_tools)
        self.mcp_calls_by_outcome = Children(self.mcp_calls)

    def refused(self, reason: str) -> None:
        """Count a refused session: the hook for whatever refuses one (limits, shutdown,
        authentication). `reason` is one of REFUSED_REASONS."""
        self.sessions_refused.labels(reason).inc()

    @contextmanager
    def active(self, transport: str) -> Iterator[None]:
        """Count a connection as active while inside (sideband connections)."""
        gauge = self.active_by_transport(transport)
        gauge.inc()
        try:
            yield
        finally:
            gauge.dec()

    def render(self) -> bytes:
        return generate_latest(self.registry)
