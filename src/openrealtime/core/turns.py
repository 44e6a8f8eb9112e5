"""Turn detection: speech probabilities per VAD frame in, speech start/stop decisions out.

Rules:
- Speech starts on the first frame whose probability reaches `threshold`. The reported start
  (`audio_start_ms`) is the frame's start less `prefix_padding_ms`, as OpenAI reports it: the
  start of the audio that goes to the model.
- Speech ends where the last frame above `threshold - HYSTERESIS` ends, less RELEASE_MS:
  Silero stays above that for a frame or two after the last sound. It stops once the
  silence since then reaches `silence_duration_ms`, to the nearest frame (not the next one,
  which would add up to a frame of delay). The reported end (`audio_end_ms`) is the end of
  speech plus `silence_duration_ms` — OpenAI's definition, the end of the audio committed.
  A frame back above the threshold resets the silence count.
- `semantic_vad` has no end-of-utterance model yet: its eagerness maps to a silence wait
  (SEMANTIC_SILENCE_MS).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..protocol.session import SemanticVad, ServerVad

# Silero's own recommendation: leave speech only well below the entry threshold, so a word's
# quieter tail does not end the turn.
HYSTERESIS = 0.15
# Measured on espeak speech: the last frame above the exit threshold ends 0-120 ms after the
# last sound (median ~54 ms). Taking 48 ms off puts the reported end within two frames either
# way, and keeps speech_stopped within silence_duration_ms + 100 ms of the true end.
RELEASE_MS = 48.0
SEMANTIC_SILENCE_MS = {"low": 1500, "medium": 800, "auto": 800, "high": 400}
SEMANTIC_THRESHOLD = 0.5
SEMANTIC_PREFIX_MS = 300


@dataclass(frozen=True, slots=True)
class TurnParams:
    threshold: float
    prefix_padding_ms: int
    silence_duration_ms: int

    @classmethod
    def of(cls, detection: ServerVad | SemanticVad) -> TurnParams:
        if isinstance(detection, ServerVad):
            return cls(
                detection.threshold, detection.prefix_padding_ms, detection.silence_duration_ms
            )
        return cls(SEMANTIC_THRESHOLD, SEMANTIC_PREFIX_MS, SEMANTIC_SILENCE_MS[detection.eagerness])


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    audio_start_ms: int


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    audio_start_ms: int
    audio_end_ms: int


TurnEvent = SpeechStarted | SpeechStopped


class TurnDetector:
    def __init__(self, params: TurnParams, frame_ms: float) -> None:
        self.params = params
        self.frame_ms = frame_ms
        self.state: Literal["silence", "speech"] = "silence"
        self._start_ms = 0.0
        self._last_speech_end_ms = 0.0

    @property
    def speaking(self) -> bool:
        return self.state == "speech"

    def reset(self) -> None:
        self.state = "silence"

    def frame(self, probability: float, frame_end_ms: float) -> TurnEvent | None:
        """One VAD frame ending at session time `frame_end_ms`."""
        params = self.params
        if self.state == "silence":
            if probability >= params.threshold:
                self.state = "speech"
                frame_start = frame_end_ms - self.frame_ms
                self._start_ms = max(0.0, frame_start - params.prefix_padding_ms)
                self._last_speech_end_ms = frame_end_ms
                return SpeechStarted(round(self._start_ms))
            return None
        if probability >= params.threshold - HYSTERESIS:
            self._last_speech_end_ms = frame_end_ms
            return None
        speech_end = max(self._start_ms, self._last_speech_end_ms - RELEASE_MS)
        if frame_end_ms + self.frame_ms / 2 - speech_end >= params.silence_duration_ms:
            self.state = "silence"
            end = speech_end + params.silence_duration_ms
            return SpeechStopped(round(self._start_ms), round(end))
        return None
