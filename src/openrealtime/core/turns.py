"""Turn detection: speech probabilities per VAD frame in, speech start/stop decisions out.

Rules:
- Speech starts on the first frame whose probability reaches `threshold`. The reported start
  (`audio_start_ms`) is the frame's start less `prefix_padding_ms`, as OpenAI reports it: the
  start of the audio that goes to the model.
- Speech ends where the last frame above `threshold - HYSTERESIS` ends, less RELEASE_MS:
  Silero stays above that for a frame or two after the last sound. A *pause* begins on the
  first frame below that exit threshold; a frame back above it ends the pause and resets the
  silence count. Once a pause has lasted EARLY_DECODE_AFTER_MS it is reported
  (`PauseStarted`, with its end of speech), and so is its end (`SpeechResumed`): shorter
  gaps are between words, and an early decode started in each would mostly be wasted.
- `server_vad` stops once the silence since the end of speech reaches `silence_duration_ms`,
  to the nearest frame (not the next one, which would add up to a frame of delay). The
  reported end (`audio_end_ms`) is the end of speech plus `silence_duration_ms` — OpenAI's
  definition, the end of the audio committed.
- `semantic_vad` asks an end-of-turn model once per pause, as soon as JUDGE_PAUSE_MS of it
  have passed (`JudgeTurn`), about the turn up to that frame: the model weighs the sound of
  the speech, and the longer the silence it hears, the more it leans to "finished" whatever
  was said; the silence itself is the timeouts' business. An answer that reaches the
  eagerness's threshold ends the turn once FINISHED_SILENCE_MS of silence have passed (at
  once if they already have: `audio_end_ms` is then the last frame analysed). An answer
  about a pause that has ended (speech resumed) is stale and ignored. Below the threshold,
  the turn goes on until the eagerness's longest wait (OpenAI: 8/4/2 s for low/medium/high)
  passes in silence. With no model to ask (the answer is None), the pause falls back to a
  plain silence wait (SEMANTIC_SILENCE_MS).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..protocol.session import SemanticVad, ServerVad

# Silero's own recommendation: leave speech only well below the entry threshold, so a word's
# quieter tail does not end the turn.
HYSTERESIS = 0.15
# Measured on the benchmarks' sentences (espeak and hibari voices, 10 each, at 4 alignments to
# the frame grid, after the 24 -> 16 kHz resampler): the last frame above the exit threshold
# ends -2 to 136 ms after the last sound, median 73 ms. Taking 72 ms off centres the reported
# end on the true end (median +1 ms) and decides one frame sooner than 48 ms did: the silence
# heard when `speech_stopped` is sent is silence_duration_ms -86/+52 ms, median -11 ms.
RELEASE_MS = 72.0
# semantic_vad without an end-of-turn model: eagerness maps to a silence wait.
SEMANTIC_SILENCE_MS = {"low": 1500, "medium": 800, "auto": 800, "high": 400}
# With the model: the probability of "finished" that ends the turn, and the longest wait.
SEMANTIC_COMPLETE = {"low": 0.7, "medium": 0.5, "auto": 0.5, "high": 0.3}
SEMANTIC_MAX_WAIT_MS = {"low": 8000, "medium": 4000, "auto": 4000, "high": 2000}
# Silence before a pause is reported (and an early decode of the turn starts): three silent VAD
# frames after the release.
EARLY_DECODE_AFTER_MS = 160
# Silence before the model is asked: two silent VAD frames after the release, so a pause is
# judged while it is still short (the gaps between words mostly stay above the exit threshold).
JUDGE_PAUSE_MS = 128
# The wait after a "finished" answer: shorter than any server_vad setting in use, long enough
# that a speaker drawing breath between two sentences is not cut.
FINISHED_SILENCE_MS = 200
SEMANTIC_THRESHOLD = 0.5
SEMANTIC_PREFIX_MS = 300


@dataclass(frozen=True, slots=True)
class Judging:
    """semantic_vad's use of the end-of-turn model."""

    complete_threshold: float
    fallback_silence_ms: int  # the silence wait when no model answers
    pause_ms: int = JUDGE_PAUSE_MS
    finished_silence_ms: int = FINISHED_SILENCE_MS


@dataclass(frozen=True, slots=True)
class TurnParams:
    threshold: float
    prefix_padding_ms: int
    silence_duration_ms: int  # with `judging`, the longest wait
    judging: Judging | None = None

    @classmethod
    def of(cls, detection: ServerVad | SemanticVad) -> TurnParams:
        if isinstance(detection, ServerVad):
            return cls(
                detection.threshold, detection.prefix_padding_ms, detection.silence_duration_ms
            )
        eagerness = detection.eagerness
        judging = Judging(SEMANTIC_COMPLETE[eagerness], SEMANTIC_SILENCE_MS[eagerness])
        return cls(SEMANTIC_THRESHOLD, SEMANTIC_PREFIX_MS, SEMANTIC_MAX_WAIT_MS[eagerness], judging)


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    audio_start_ms: int


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    audio_start_ms: int
    audio_end_ms: int


@dataclass(frozen=True, slots=True)
class PauseStarted:
    """The first frame below the exit threshold: speech may have ended at `speech_end_ms`
    (which identifies the pause); `frame_end_ms` is how far the audio has been analysed."""

    audio_start_ms: int
    speech_end_ms: float
    frame_end_ms: float


@dataclass(frozen=True, slots=True)
class SpeechResumed:
    """The pause that began at `speech_end_ms` ended: the speaker went on."""

    speech_end_ms: float


@dataclass(frozen=True, slots=True)
class JudgeTurn:
    """Ask the end-of-turn model about the turn from `audio_start_ms` to `frame_end_ms`; the
    answer goes back to `TurnDetector.judged` with `speech_end_ms`."""

    audio_start_ms: int
    speech_end_ms: float
    frame_end_ms: float


TurnEvent = SpeechStarted | SpeechStopped | PauseStarted | SpeechResumed | JudgeTurn


class TurnDetector:
    def __init__(self, params: TurnParams, frame_ms: float) -> None:
        self.params = params
        self.frame_ms = frame_ms
        self.state: Literal["silence", "speech"] = "silence"
        self._start_ms = 0.0
        self._last_speech_end_ms = 0.0
        self._pause_end_ms: float | None = None  # the end of speech of the pause under way
        self._reported = False  # PauseStarted was sent for this pause
        self._asked = False  # the model was asked about this pause
        self._fallback = False  # no model answered: a plain silence wait
        self._finished = False  # the model said this pause ends the turn
        self._frame_end_ms = 0.0

    @property
    def speaking(self) -> bool:
        return self.state == "speech"

    def reset(self) -> None:
        self.state = "silence"
        self._pause_end_ms = None

    def _wait_ms(self) -> int:
        judging = self.params.judging
        if judging is not None and self._fallback:
            return judging.fallback_silence_ms
        return self.params.silence_duration_ms

    def frame(self, probability: float, frame_end_ms: float) -> TurnEvent | None:
        """One VAD frame ending at session time `frame_end_ms`."""
        params = self.params
        self._frame_end_ms = frame_end_ms
        if self.state == "silence":
            if probability >= params.threshold:
                self.state = "speech"
                frame_start = frame_end_ms - self.frame_ms
                self._start_ms = max(0.0, frame_start - params.prefix_padding_ms)
                self._last_speech_end_ms = frame_end_ms
                self._pause_end_ms = None
                return SpeechStarted(round(self._start_ms))
            return None
        if probability >= params.threshold - HYSTERESIS:
            self._last_speech_end_ms = frame_end_ms
            pause, self._pause_end_ms = self._pause_end_ms, None
            return SpeechResumed(pause) if pause is not None and self._reported else None
        speech_end = max(self._start_ms, self._last_speech_end_ms - RELEASE_MS)
        silence = frame_end_ms + self.frame_ms / 2 - speech_end
        if silence >= self._wait_ms():
            return self._stop(speech_end + self._wait_ms())
        if self._pause_end_ms is None:
            self._pause_end_ms = speech_end
            self._reported = self._asked = self._fallback = self._finished = False
        judging = params.judging
        if judging is not None:
            if self._finished and silence >= judging.finished_silence_ms:
                return self._stop(speech_end + judging.finished_silence_ms)
            if not self._asked and silence >= judging.pause_ms:
                self._asked = True
                return JudgeTurn(round(self._start_ms), speech_end, frame_end_ms)
        if not self._reported and silence >= EARLY_DECODE_AFTER_MS:
            self._reported = True
            return PauseStarted(round(self._start_ms), speech_end, frame_end_ms)
        return None

    def judged(self, speech_end_ms: float, probability: float | None) -> SpeechStopped | None:
        """The end-of-turn model's answer (None: no model) about the pause at `speech_end_ms`."""
        judging = self.params.judging
        if judging is None or self.state != "speech" or self._pause_end_ms != speech_end_ms:
            return None  # stale: speech resumed, or the turn already ended
        if probability is None:
            self._fallback = True
            if self._frame_end_ms + self.frame_ms / 2 - speech_end_ms >= self._wait_ms():
                return self._stop(speech_end_ms + self._wait_ms())
            return None
        if probability < judging.complete_threshold:
            return None
        self._finished = True
        if self._frame_end_ms + self.frame_ms / 2 - speech_end_ms >= judging.finished_silence_ms:
            return self._stop(self._frame_end_ms)
        return None  # `frame` ends the turn when the short wait is up

    def _stop(self, end_ms: float) -> SpeechStopped:
        self.state = "silence"
        self._pause_end_ms = None
        return SpeechStopped(round(self._start_ms), round(end_ms))
