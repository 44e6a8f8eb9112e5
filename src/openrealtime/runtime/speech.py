"""Speak a response while the LLM is still writing it: text is cut at clause ends, each piece
is synthesized as soon as it is complete, and audio leaves in the chunks the synthesizer makes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import aclosing

import numpy as np

from ..audio import formats
from ..audio.formats import AudioFormat
from ..audio.resample import StreamResampler
from ..backends.tts.base import Synthesizer
from ..core.segmenter import SentenceSegmenter
from .telemetry import SessionTelemetry


class SpeechPipeline:
    def __init__(
        self,
        tts: Synthesizer,
        voice: str,
        speed: float,
        out_format: AudioFormat,
        on_audio: Callable[[bytes, float], None],
        on_mark: Callable[[int], None],
        *,
        telemetry: SessionTelemetry | None = None,
    ) -> None:
        self._tts = tts
        self._voice = voice
        self._speed = speed
        self._format = out_format
        self._on_audio = on_audio
        self._on_mark = on_mark
        self._telemetry = telemetry
        self._segmenter = SentenceSegmenter()
        self._pieces: asyncio.Queue[str | None] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._speak())

    def push(self, text: str) -> None:
        for piece in self._segmenter.push(text):
            self._pieces.put_nowait(piece)

    async def finish(self) -> None:
        """Speak what is left and wait until the last audio has been handed on."""
        for piece in self._segmenter.flush():
            self._pieces.put_nowait(piece)
        self._pieces.put_nowait(None)
        await self._task

    async def cancel(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _speak(self) -> None:
        resampler = StreamResampler(self._tts.sample_rate, formats.sample_rate(self._format))
        words = 0
        telemetry = self._telemetry
        first_piece = True
        while (piece := await self._pieces.get()) is not None:
            started = telemetry.now() if telemetry is not None else 0.0
            # aclosing: a cancelled pipeline must stop the synthesizer's stream at once.
            async with aclosing(self._tts.synthesize(piece, self._voice, self._speed)) as audio:
                async for pcm in audio:
                    if first_piece and telemetry is not None:
                        telemetry.tts_first_audio(started)
                    first_piece = False
                    self._emit(resampler.process(np.frombuffer(pcm, "<i2")))
            if telemetry is not None:
                telemetry.backend_done("tts", started)
            words += len(piece.split())
            self._on_mark(words)
        self._emit(resampler.flush())

    def _emit(self, pcm: np.ndarray) -> None:
        if len(pcm):
            encoded = formats.encode(self._format, pcm)
            self._on_audio(encoded, len(pcm) * 1000 / formats.sample_rate(self._format))
