"""One session's measurements, taken by its driver: the core never reads the clock, so every
wall-clock read behind a metric is here (`runtime/metrics.py` says what is measured where).

Stage latencies, per turn:
- **speech_stopped lag.** The driver notes when each chunk of audio reached the VAD, by its
  end position on the session's audio clock (a small ring, O(1) per chunk). The true end of
  speech is at `audio_end_ms - silence_duration_ms`; the server can say "stopped" once the
  audio up to `audio_end_ms` is in. The lag is the emit time less the arrival of that audio.
  Streamed in real time, that arrival is the arrival of the end of speech plus
  `silence_duration_ms`; measured from the audio at `audio_end_ms` itself, it stays right
  (never negative) when a client sends faster than real time. The detector may decide up to
  half a VAD frame before `audio_end_ms`: then the audio just in is the reference.
- **end of speech → first audio**: from the end of speech on the wall clock (that arrival
  less `silence_duration_ms`: when the user stopped, had the silence been streamed in real
  time) to the first `response.output_audio.delta` of the response the turn created. So it
  is `silence_duration_ms` + the speech_stopped lag + transcription, LLM and TTS time.
- **LLM first token**, **TTS first audio** (a response's first piece of text), and backend
  durations and failures, from the driver and the speech pipeline.

The per-chunk path is a clock read and a ring append; per event, a dict lookup and a counter
increment on a child bound once.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ..core.session import Session
from ..core.turns import TurnParams
from .metrics import Metrics

log = logging.getLogger(__name__)

# Chunk arrivals kept: at 20 ms a chunk, 20 s of audio, far more than any silence_duration_ms.
ARRIVALS = 1024
_fallback: Metrics | None = None


def fallback_metrics() -> Metrics:
    """For a driver made without an app's metrics (embedding, unit tests): counted, never read."""
    global _fallback
    if _fallback is None:
        _fallback = Metrics()
    return _fallback


class SessionTelemetry:
    def __init__(
        self,
        metrics: Metrics,
        session: Session,
        backend_names: dict[str, str],
        transport: str,
        *,
        vad_sample_rate: int = 16000,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.metrics = metrics
        self.now = clock
        self._session = session
        self._transport = transport
        self._opened_at: float | None = None
        self._events_in = metrics.events_in_by_type
        self._events_out = metrics.events_out_by_type
        self._errors = metrics.errors_by_code
        seconds, failures = metrics.backend_seconds, metrics.backend_failures
        self._names = backend_names
        self._seconds = {
            stage: seconds.labels(stage, name) for stage, name in backend_names.items()
        }
        self._failures = failures
        self._llm_first_token = metrics.llm_first_token
        self._tts_first_audio = metrics.tts_first_audio
        self._speech_to_audio = metrics.speech_to_audio
        self._speech_stopped_lag = metrics.speech_stopped_lag
        # Audio clock: (end of a chunk on the VAD's stream, ms; when it arrived).
        self._ms_per_sample = 1000.0 / vad_sample_rate
        self._vad_ms = 0.0
        self._arrivals: deque[tuple[float, float]] = deque(maxlen=ARRIVALS)
        self._turn_end: float | None = None  # the last turn's end of speech, until it answers
        self._turn_of_response: dict[str, float] = {}  # response id -> its turn's end of speech
        self._finishing: dict[str, float] = {}  # streaming transcripts: item id -> turn committed
        self._on_event: dict[str, Callable[[dict[str, Any]], None]] = {
            "error": self._error,
            "response.created": self._response_created,
            "response.done": self._response_done,
            "response.output_audio.delta": self._audio_out,
            "input_audio_buffer.speech_started": self._speech_started,
            "input_audio_buffer.speech_stopped": self._speech_stopped,
            "conversation.item.input_audio_transcription.failed": self._transcription_failed,
        }

    # --- sessions ------------------------------------------------------------------------------

    def opened(self) -> None:
        if self._opened_at is None:
            self._opened_at = self.now()
            self.metrics.active_by_transport(self._transport).inc()
            self.metrics.opened_by_transport(self._transport).inc()
            log.info("session started", extra={"transport": self._transport})

    def closed(self) -> None:
        if self._opened_at is not None:
            seconds = round(self.now() - self._opened_at, 3)
            self._opened_at = None
            self.metrics.active_by_transport(self._transport).dec()
            log.info("session ended", extra={"transport": self._transport, "seconds": seconds})

    # --- events --------------------------------------------------------------------------------

    def client_event(self, event_type: str) -> None:
        self._events_in(event_type).inc()
        self._turn_end = None  # a response created from here on is the client's, not the turn's

    def server_event(self, event: dict[str, Any]) -> None:
        event_type = event["type"]
        self._events_out(event_type).inc()
        handler = self._on_event.get(event_type)
        if handler is not None:
            handler(event)

    def _error(self, event: dict[str, Any]) -> None:
        error = event.get("error") or {}
        self._errors(str(error.get("code") or error.get("type") or "unknown")).inc()

    def _response_done(self, event: dict[str, Any]) -> None:
        response = event.get("response") or {}
        self._turn_of_response.pop(response.get("id", ""), None)
        if response.get("status") == "failed":
            error = (response.get("status_details") or {}).get("error") or {}
            self._errors(str(error.get("code") or "unknown")).inc()

    def _transcription_failed(self, event: dict[str, Any]) -> None:
        error = event.get("error") or {}
        self._errors(str(error.get("code") or "unknown")).inc()

    # --- turns ---------------------------------------------------------------------------------

    def audio_to_vad(self, samples: int) -> None:
        """The next `samples` of the input stream reached the VAD (per chunk: keep it cheap)."""
        self._vad_ms += samples * self._ms_per_sample
        self._arrivals.append((self._vad_ms, self.now()))

    def _arrival(self, position_ms: float) -> float | None:
        """When the audio at `position_ms` arrived; None if it has not, or is no longer kept."""
        found = None
        for end_ms, arrived in reversed(self._arrivals):
            if end_ms < position_ms:
                return found
            found = arrived
        # Every kept chunk ends at or after the position: the first one holds it only if
        # nothing older was dropped.
        return found if len(self._arrivals) < ARRIVALS else None

    def _speech_started(self, event: dict[str, Any]) -> None:
        self._turn_end = None

    def _speech_stopped(self, event: dict[str, Any]) -> None:
        now = self.now()
        detection = self._session.config.audio.input.turn_detection
        if detection is None:
            return
        silence_s = TurnParams.of(detection).silence_duration_ms / 1000
        complete = self._arrival(float(event["audio_end_ms"]))
        if complete is None:  # decided to the nearest frame, a little before audio_end_ms
            if not self._arrivals:
                return
            complete = self._arrivals[-1][1]
        self._speech_stopped_lag.observe(max(0.0, now - complete))
        self._turn_end = complete - silence_s

    def _response_created(self, event: dict[str, Any]) -> None:
        if self._turn_end is not None:
            self._turn_of_response[event["response"]["id"]] = self._turn_end
            self._turn_end = None

    def _audio_out(self, event: dict[str, Any]) -> None:
        if self._turn_of_response:
            turn_end = self._turn_of_response.pop(event["response_id"], None)
            if turn_end is not None:
                self._speech_to_audio.observe(max(0.0, self.now() - turn_end))

    # --- backends ------------------------------------------------------------------------------

    def llm_first_token(self, started: float) -> None:
        self._llm_first_token.observe(self.now() - started)

    def tts_first_audio(self, started: float) -> None:
        self._tts_first_audio.observe(self.now() - started)

    def backend_done(self, stage: str, started: float) -> None:
        self._seconds[stage].observe(self.now() - started)

    def backend_failed(self, stage: str, code: str) -> None:
        self._failures.labels(stage, self._names.get(stage, stage), code).inc()

    def transcript_finishing(self, item_id: str) -> None:
        """A streaming transcription was told its turn ended: its latency counts from here."""
        self._finishing[item_id] = self.now()

    def transcript_done(self, item_id: str) -> None:
        started = self._finishing.pop(item_id, None)
        if started is not None:
            self.backend_done("stt", started)

    def transcript_failed(self, item_id: str, code: str) -> None:
        self._finishing.pop(item_id, None)
        self.backend_failed("stt", code)
