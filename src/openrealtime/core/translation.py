"""A translation session, sans-I/O: its settings, its phrases and their context.

Input audio (16 kHz PCM16, as the recognizer takes it) is kept from where a phrase may start;
the VAD's probabilities drive the same turn detector voice sessions use, and each turn it ends
becomes a `Phrase`, handed out in order. A monologue is cut every MAX_PHRASE_MS so that
translation starts before the speaker stops. Every time is on the input audio's timeline
(what `elapsed_ms` reports), rounded up to the 200 ms frames OpenAI's timing uses.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass

from ..backends.llm.base import ChatTurn, LlmRequest
from ..protocol.session import ServerVad
from ..protocol.translation import (
    DEFAULT_LANGUAGE,
    FRAME_MS,
    LANGUAGES,
    SessionCreateRequest,
    SessionUpdateRequest,
    check_languages,
)
from .turns import SpeechStarted, SpeechStopped, TurnDetector, TurnParams

RATE = 16_000
BYTES_PER_MS = RATE * 2 // 1000
# A phrase longer than this is translated in pieces, so a monologue is heard while it goes on;
# with its padding a piece stays under Whisper's short window (8 s, whisper_window.py).
MAX_PHRASE_MS = 7_500
# Previous phrases (source, translation) the LLM sees, for names, pronouns and tense.
CONTEXT_PHRASES = 4
# Interpreters pause less than conversational turns: 400 ms of silence ends a phrase.
PHRASE_VAD = ServerVad(silence_duration_ms=400, prefix_padding_ms=200)
INSTRUCTIONS = (
    "You are a simultaneous interpreter. Translate the user's text into {language}. "
    "Answer with the translation only: no notes, no quotes, no explanations. "
    "Earlier phrases are given for context; translate only the last one."
)


@dataclass(frozen=True, slots=True)
class Phrase:
    pcm16k: bytes
    start_ms: int
    end_ms: int

    @property
    def elapsed_ms(self) -> int:
        """The end of the phrase on the input timeline, in whole 200 ms frames."""
        return math.ceil(self.end_ms / FRAME_MS) * FRAME_MS


class TranslationSession:
    def __init__(self, session_id: str, model: str, expires_at: int) -> None:
        self.id = session_id
        self.model = model
        self.expires_at = expires_at
        self.language = DEFAULT_LANGUAGE
        self.transcription: dict[str, object] | None = None
        self.noise_reduction: dict[str, object] | None = None
        self._context: deque[tuple[str, str]] = deque(maxlen=CONTEXT_PHRASES)
        self._heard_in: Counter[str] = Counter()  # phrases per detected source language
        self._turns: TurnDetector | None = None
        self._buffer = bytearray()  # input audio from `_buffer_start_ms` on
        self._buffer_start_ms = 0
        self._received_ms = 0.0  # input audio received so far
        self._phrase_start_ms: int | None = None

    # -- settings ---------------------------------------------------------------------------

    def snapshot(self) -> dict[str, object]:
        """The session object, in the shape of the SDK's `RealtimeTranslationSession`."""
        return {
            "id": self.id,
            "type": "translation",
            "model": self.model,
            "expires_at": self.expires_at,
            "audio": {
                "input": {
                    "transcription": self.transcription,
                    "noise_reduction": self.noise_reduction,
                },
                "output": {"language": self.language},
            },
        }

    def update(self, request: SessionUpdateRequest | SessionCreateRequest) -> None:
        """Apply a validated `session.update`: fields it sets replace, fields it omits stay."""
        audio = request.audio
        if audio is None:
            return
        check_languages(audio)
        if audio.output is not None and audio.output.language is not None:
            self.language = audio.output.language.lower()
        if audio.input is None:
            return
        given = audio.input.model_fields_set
        if "transcription" in given:
            transcription = audio.input.transcription
            self.transcription = (
                transcription.model_dump(exclude_none=True) if transcription else None
            )
        if "noise_reduction" in given:
            reduction = audio.input.noise_reduction
            if reduction is None:
                self.noise_reduction = None
            else:
                previous = (self.noise_reduction or {}).get("strength", 1.0)
                strength = reduction.strength if reduction.strength is not None else previous
                self.noise_reduction = {"type": reduction.type, "strength": strength}

    @property
    def source_language(self) -> str | None:
        """The language to recognize the next phrase in: the one the client named
        (`transcription.language`), else the one most phrases were heard in once two were, else
        None (the recognizer detects it). Detection on one short phrase errs (Whisper base took
        a padded espeak Spanish phrase for Thai), and a speaker seldom changes language."""
        language = (self.transcription or {}).get("language")
        if isinstance(language, str):
            return language.lower()
        if not self._heard_in:
            return None
        (likeliest, count), total = self._heard_in.most_common(1)[0], self._heard_in.total()
        return likeliest if count >= 2 and count * 2 > total else None

    def heard_in(self, language: str) -> None:
        """The recognizer detected `language` in a phrase it was not told the language of."""
        self._heard_in[language] += 1

    # -- segmentation -----------------------------------------------------------------------

    def audio(self, pcm16k: bytes) -> None:
        """Input audio, in order (its VAD probabilities come later, through `frames`)."""
        self._buffer += pcm16k
        self._received_ms += len(pcm16k) / BYTES_PER_MS

    @property
    def received_ms(self) -> int:
        return round(self._received_ms)

    def frames(self, probabilities: list[float], frame_ms: float, end_ms: float) -> list[Phrase]:
        """The VAD's probabilities for consecutive frames ending at `end_ms`: the phrases
        they end, in order."""
        if self._turns is None:
            self._turns = TurnDetector(TurnParams.of(PHRASE_VAD), frame_ms)
        phrases: list[Phrase] = []
        first_end = end_ms - frame_ms * (len(probabilities) - 1)
        for i, probability in enumerate(probabilities):
            frame_end = first_end + i * frame_ms
            event = self._turns.frame(probability, frame_end)
            if isinstance(event, SpeechStarted):
                self._phrase_start_ms = event.audio_start_ms
            elif isinstance(event, SpeechStopped):
                phrases.append(self._cut(event.audio_end_ms))
                self._phrase_start_ms = None
            elif (
                self._phrase_start_ms is not None
                and frame_end - self._phrase_start_ms >= MAX_PHRASE_MS
            ):
                phrases.append(self._cut(round(frame_end)))
                self._phrase_start_ms = round(frame_end)
        if self._phrase_start_ms is None:  # idle: keep only what a next phrase may start with
            self._trim(round(end_ms) - PHRASE_VAD.prefix_padding_ms - 2 * round(frame_ms))
        return phrases

    def flush(self) -> Phrase | None:
        """The phrase under way when the input ends (`session.close`), if any."""
        if self._phrase_start_ms is None:
            return None
        phrase = self._cut(self.received_ms)
        self._phrase_start_ms = None
        if self._turns is not None:
            self._turns.reset()
        return phrase

    def _cut(self, end_ms: int) -> Phrase:
        # A stop rounded to the nearest frame may fall a few ms past the audio received: the
        # phrase ends with that audio, and the next begins where it ends, on the same clock.
        end_ms = min(end_ms, self.received_ms)
        start = self._phrase_start_ms or 0
        lo = max(0, (start - self._buffer_start_ms) * BYTES_PER_MS)
        hi = max(lo, (end_ms - self._buffer_start_ms) * BYTES_PER_MS)
        phrase = Phrase(bytes(self._buffer[lo:hi]), start, end_ms)
        self._trim(end_ms)
        return phrase

    def _trim(self, keep_from_ms: int) -> None:
        drop_ms = keep_from_ms - self._buffer_start_ms
        if drop_ms > 0:
            del self._buffer[: drop_ms * BYTES_PER_MS]
            self._buffer_start_ms += drop_ms

    # -- translation ------------------------------------------------------------------------

    def translation_request(self, source: str) -> LlmRequest:
        """The LLM request that translates `source`, with the previous phrases as context."""
        context: list[ChatTurn] = []
        for before, after in self._context:
            context += [ChatTurn("user", before), ChatTurn("assistant", after)]
        context.append(ChatTurn("user", source))
        language = LANGUAGES[self.language]
        return LlmRequest(
            INSTRUCTIONS.format(language=language), tuple(context), tool_choice="none"
        )

    def translated(self, source: str, translation: str) -> None:
        self._context.append((source, translation))
