"""The input audio buffer: what the client appended since the last commit or clear.

Audio is kept in the session's input format, exactly as sent, because a committed item gives
it back on `conversation.item.retrieve`. A 16 kHz copy streams out for voice activity detection,
resampled when the VAD takes it: once per tick for all the chunks appended since, not once per
20 ms chunk (each resampler call costs ~7 µs before it does anything, issue 9).
Positions are counted in samples of the input format since the session began, which is the
clock `audio_start_ms` / `audio_end_ms` are measured on.
"""

from __future__ import annotations

import binascii

import numpy as np
import pybase64

from ..audio import formats
from ..audio.formats import AudioFormat
from ..audio.resample import StreamResampler, resample
from ..protocol import errors
from ..protocol.errors import ProtocolError

VAD_RATE = 16000
MAX_APPEND_BYTES = 15 * 1024 * 1024  # OpenAI's limit on one append's decoded audio


def decode_base64_audio(audio: str, fmt: AudioFormat, param: str = "audio") -> bytes:
    """Base64 → raw bytes in `fmt`, refusing what is not whole samples of that format."""
    try:
        # pybase64 (SIMD) decodes a 20 ms chunk in ~1 µs, binascii in ~6.5 (issue 9); what
        # it refuses, binascii's strict mode judges, so the rules are binascii's either way.
        raw = pybase64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError):
        raw = _strict_b64decode(audio, fmt, param)
    if len(raw) > MAX_APPEND_BYTES:
        raise ProtocolError(
            f"Invalid 'audio': {len(raw)} bytes is more than the 15 MiB one append may carry; "
            "send the audio in smaller chunks.",
            errors.INVALID_AUDIO,
            param,
        )
    if len(raw) % formats.bytes_per_sample(fmt):
        raise ProtocolError(
            f"Invalid 'audio': {fmt.value} needs a whole number of "
            f"{formats.bytes_per_sample(fmt)}-byte samples; got {len(raw)} bytes. The buffer "
            "keeps what it already held.",
            errors.INVALID_AUDIO,
            param,
        )
    return raw


def _strict_b64decode(audio: str, fmt: AudioFormat, param: str) -> bytes:
    try:
        # The same strict rules as b64decode(validate=True), without its copy of the text to
        # bytes (non-ASCII text raises ValueError).
        return binascii.a2b_base64(audio, strict_mode=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(
            "Invalid 'audio': the audio is not valid base64. Send base64-encoded bytes of "
            f"{fmt.value} audio.",
            errors.INVALID_AUDIO,
            param,
        ) from None


def to_vad_rate(fmt: AudioFormat, raw: bytes) -> np.ndarray:
    """One-shot conversion of a whole clip to 16 kHz PCM16 (for transcription)."""
    return resample(formats.decode(fmt, raw), formats.sample_rate(fmt), VAD_RATE)


class InputAudioBuffer:
    def __init__(self, fmt: AudioFormat) -> None:
        self.format = fmt
        self._bytes_per_ms = formats.sample_rate(fmt) * formats.bytes_per_sample(fmt) / 1000
        self._chunks: list[bytes] = []
        self._size = 0
        # Session position (bytes) of the first byte held.
        self._start = 0
        self._for_vad: list[bytes] = []  # appended, not yet taken by the VAD
        # Every ms of filter delay delays turn detection: the low-latency filter here.
        self._to_vad = StreamResampler(formats.sample_rate(fmt), VAD_RATE, quality="LQ")

    @property
    def position_ms(self) -> float:
        """Session time at the end of the audio appended so far."""
        return (self._start + self._size) / self._bytes_per_ms

    @property
    def start_ms(self) -> float:
        return self._start / self._bytes_per_ms

    @property
    def duration_ms(self) -> float:
        return self._size / self._bytes_per_ms

    def set_format(self, fmt: AudioFormat) -> None:
        """A format change empties the buffer: old bytes would be misread in the new format."""
        if fmt != self.format:
            position = self.position_ms
            self.__init__(fmt)  # type: ignore[misc]
            self._start = round(position * self._bytes_per_ms)

    def append(self, raw: bytes, *, for_vad: bool) -> bool:
        """Hold `raw`; with `for_vad`, also keep it for `take_for_vad`. True when it is the
        first audio waiting for the VAD since the VAD last took it."""
        self._chunks.append(raw)
        self._size += len(raw)
        if not for_vad:
            return False
        self._for_vad.append(raw)
        return len(self._for_vad) == 1

    def take_for_vad(self) -> np.ndarray:
        """The audio appended for the VAD since it last took it, at 16 kHz (the resampler's
        delay holds back the last few ms until the next call)."""
        if not self._for_vad:
            return np.zeros(0, np.int16)
        raw = self._for_vad[0] if len(self._for_vad) == 1 else b"".join(self._for_vad)
        self._for_vad = []
        return self._to_vad.process(formats.decode(self.format, raw))

    def peek(self, start_ms: float) -> bytes:
        """The audio held from session time `start_ms` on, up to what the VAD has taken (the
        rest reaches it, and a streaming transcript, when it takes it), left in place."""
        data = b"".join(self._chunks)
        untaken = sum(len(raw) for raw in self._for_vad)  # always the newest audio
        return data[
            self._offset(start_ms, formats.bytes_per_sample(self.format)) : len(data) - untaken
        ]

    def take(self, start_ms: float | None = None, end_ms: float | None = None) -> bytes:
        """Remove and return the audio held, optionally only [start_ms, end_ms) of it; what
        follows `end_ms` stays in the buffer."""
        data = b"".join(self._chunks)
        width = formats.bytes_per_sample(self.format)
        lo = 0 if start_ms is None else self._offset(start_ms, width)
        hi = len(data) if end_ms is None else self._offset(end_ms, width)
        kept = data[hi:]
        self._start += hi
        self._chunks = [kept] if kept else []
        self._size = len(kept)
        return data[lo:hi]

    def clear(self) -> None:
        self._start += self._size
        self._chunks = []
        self._size = 0

    def trim_before(self, ms: float) -> None:
        """Drop the audio before session time `ms` (between turns, only the prefix padding
        before the next speech matters). Trims only once that is half of what is held, so the
        cost is amortised over many appends."""
        drop_ms = ms - self.start_ms
        if drop_ms > 0 and drop_ms >= self.duration_ms / 2:
            self.take(end_ms=ms)

    def _offset(self, ms: float, width: int) -> int:
        """Byte offset in the held audio of session time `ms`, clamped, on a sample boundary."""
        offset = round(ms * self._bytes_per_ms) - self._start
        offset -= offset % width
        return max(0, min(self._size, offset))
