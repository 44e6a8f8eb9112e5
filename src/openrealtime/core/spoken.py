"""Assistant audio kept per item, so `conversation.item.truncate` can cut it and its
transcript at the point the user actually heard."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..audio import formats
from ..audio.formats import AudioFormat


@dataclass(slots=True)
class SpokenAudio:
    format: AudioFormat
    encoded: bytearray = field(default_factory=bytearray)
    # After each synthesized piece: (audio ms so far, words spoken so far).
    marks: list[tuple[float, int]] = field(default_factory=list)

    @property
    def duration_ms(self) -> float:
        return formats.duration_ms(self.format, len(self.encoded))

    def words_heard(self, audio_end_ms: float) -> int:
        """Words of the transcript spoken by `audio_end_ms`, interpolating inside a piece."""
        previous_ms, previous_words = 0.0, 0
        for mark_ms, mark_words in self.marks:
            # Within a millisecond of a piece's end, the whole piece was heard.
            if audio_end_ms + 1 < mark_ms:
                share = (audio_end_ms - previous_ms) / max(mark_ms - previous_ms, 1e-9)
                return previous_words + int(share * (mark_words - previous_words))
            previous_ms, previous_words = mark_ms, mark_words
        return previous_words

    def cut(self, audio_end_ms: float) -> None:
        width = formats.bytes_per_sample(self.format)
        keep = int(audio_end_ms * formats.sample_rate(self.format) / 1000) * width
        del self.encoded[keep:]


def first_words(text: str, count: int) -> str:
    return " ".join(text.split()[:count])
