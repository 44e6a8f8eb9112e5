"""A faster Whisper decode for short utterances: a 10 s encoder window instead of 30 s.

faster-whisper pads every input to Whisper's 30 s window, and the encoder's cost is that
window's, whatever the utterance: ~0.7 s of one core for tiny.en, most of a short turn's decode.
Whisper's encoder accepts a shorter window (CTranslate2 slices the positional embeddings), and
a third of it costs ~0.22 s. Shorter windows drift from what Whisper was trained on (at 6 s
tiny.en starts repeating itself), so:
- only utterances up to SHORT_AUDIO_S are decoded this way, leaving ≥ 2 s of padding;
- the caller's beam (greedy by default), without timestamps, and at most TOKENS_PER_S tokens per second of audio;
- the decode is kept only when faster-whisper's own checks would keep it at temperature 0
  (compression ratio ≤ 2.4, average log-probability ≥ -1, length limit not reached) and no run
  of three words occurs twice in it (a short window's way of going astray: it says the
  utterance again, seen on espeak's "Turn on the lights in the kitchen."); otherwise
  the caller decodes the whole 30 s window the usual way (`decode` returns None). A segment that
  faster-whisper would drop as silence (no-speech probability > 0.6 with a low log-probability)
  is "" here too, as is punctuation alone.

A multilingual model told no language detects it from the same 10 s encoding (~0.04 s more),
where faster-whisper would encode a 30 s window once more just for that (~1.7 s of one core
for base); the caller reuses the language when it falls back to the usual decode.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from .base import SAMPLE_RATE

WINDOW_FRAMES = 1000  # 10 s of 10 ms mel frames
SHORT_AUDIO_S = 8.0
TOKENS_PER_S = 12  # a fast speaker says ~6 tokens a second; more is a decode going astray
_COMPRESSION_RATIO_MAX = 2.4
_LOG_PROB_MIN = -1.0
_NO_SPEECH_MIN = 0.6


@dataclass(frozen=True, slots=True)
class Heard:
    """What the short window made of an utterance: its `text`, or None when the caller should
    decode it the usual way, in `language` (what the caller gave, or what was detected)."""

    text: str | None
    language: str | None


class ShortWindow:
    """Decodes with `model` (a `faster_whisper.WhisperModel`), sharing its weights."""

    @classmethod
    def of(cls, model: object) -> ShortWindow | None:
        """The short window of a real faster-whisper model; None for anything else (a fake)."""
        from faster_whisper import WhisperModel

        real = isinstance(WhisperModel, type) and isinstance(model, WhisperModel)
        return cls(model) if real else None

    def __init__(self, model: Any) -> None:
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        self._model = model
        self._multilingual = bool(model.model.is_multilingual)
        self._tokenizer_class = Tokenizer
        self._suppressed = get_suppressed_tokens

    def decode(
        self, audio: np.ndarray, language: str | None, prompt: str | None, beam_size: int = 1
    ) -> str | None:
        """The transcript of `audio` (float32, 16 kHz), or None: decode it the usual way."""
        heard = self.hear(audio, language, prompt, beam_size)
        return heard.text if heard is not None else None

    def hear(
        self, audio: np.ndarray, language: str | None, prompt: str | None, beam_size: int = 1
    ) -> Heard | None:
        """`decode`, with the language it was decoded in; None: too long for the window."""
        import ctranslate2

        if len(audio) / SAMPLE_RATE > SHORT_AUDIO_S:
            return None
        model = self._model
        features = model.feature_extractor(audio)[:, :WINDOW_FRAMES]
        features = np.pad(features, ((0, 0), (0, WINDOW_FRAMES - features.shape[1])))
        encoded = model.model.encode(
            ctranslate2.StorageView.from_array(np.ascontiguousarray(features[None])),
            to_cpu=False,
        )
        if not self._multilingual:
            language = "en"
        elif language is None:  # the likeliest language token, "<|es|>"
            language = model.model.detect_language(encoded)[0][0][0][2:-2]
        seconds = len(audio) / SAMPLE_RATE
        return Heard(self._text(encoded, seconds, language, prompt, beam_size), language)

    def _text(
        self, encoded: Any, seconds: float, language: str, prompt: str | None, beam_size: int
    ) -> str | None:
        from faster_whisper.transcribe import get_compression_ratio

        model = self._model
        tokenizer = self._tokenizer_class(
            model.hf_tokenizer, self._multilingual, task="transcribe", language=language
        )
        previous = tokenizer.encode(" " + prompt.strip()) if prompt and prompt.strip() else []
        tokens_in = model.get_prompt(tokenizer, previous, without_timestamps=True)
        limit = int(seconds * TOKENS_PER_S) + 8
        result = model.model.generate(
            encoded,
            [tokens_in],
            beam_size=beam_size,
            max_length=len(tokens_in) + limit,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=self._suppressed(tokenizer, (-1,)),
        )[0]
        tokens = result.sequences_ids[0]
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        if result.no_speech_prob > _NO_SPEECH_MIN and avg_logprob < _LOG_PROB_MIN:
            return ""  # silence, as faster-whisper would drop it
        text: str = tokenizer.decode(tokens).strip()
        if not any(c.isalnum() for c in text):
            return ""  # punctuation alone ("." on silence) is no words
        if (
            len(tokens) >= limit
            or (avg_logprob < _LOG_PROB_MIN and not self._multilingual)
            or get_compression_ratio(text) > _COMPRESSION_RATIO_MAX
            or _repeats(text)
        ):
            return None
        return text


def _repeats(text: str, n: int = 3) -> bool:
    """Some run of `n` words occurs twice: how a shortened window's decode goes astray (it says
    the utterance again), too short a text for the compression ratio to show it."""
    words = re.findall(r"[\w']+", text.lower())
    runs = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return len(set(runs)) < len(runs)
