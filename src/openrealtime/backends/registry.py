"""The backends a server runs with: chosen once at start-up by an explicit factory, shared by
every session."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import Settings
from .errors import BackendError
from .llm.base import LanguageModel
from .stt.base import Transcriber
from .tts.base import Synthesizer
from .vad.base import VoiceActivityDetector


@dataclass
class Backends:
    llm: LanguageModel
    stt: Transcriber
    tts: Synthesizer
    vad: VoiceActivityDetector

    def describe(self) -> dict[str, str]:
        return {
            "llm": f"{self.llm.name} {self.llm.model}",
            "stt": self.stt.name,
            "tts": self.tts.name,
            "vad": self.vad.name,
        }

    async def aclose(self) -> None:
        for backend in (self.llm, self.stt, self.tts):
            close = getattr(backend, "aclose", None)
            if close is not None:
                await close()


def create_backends(settings: Settings) -> Backends:
    return Backends(llm=_llm(settings), stt=_stt(settings), tts=_tts(settings), vad=_vad(settings))


def _llm(settings: Settings) -> LanguageModel:
    from .llm.openai_chat import OpenAIChatModel

    return OpenAIChatModel(
        settings.llm_base_url,
        settings.llm_model,
        settings.llm_api_key,
        settings.llm_timeout,
        settings.llm_context_tokens,
    )


def _stt(settings: Settings) -> Any:
    name = settings.stt
    if name == "pocketsphinx":
        from .stt.pocketsphinx import PocketsphinxTranscriber

        return PocketsphinxTranscriber()
    if name == "faster-whisper":
        from .stt.faster_whisper import FasterWhisperTranscriber

        return FasterWhisperTranscriber(settings.stt_model or "base.en")
    if name == "openai":
        from .stt.openai_http import OpenAITranscriber

        return OpenAITranscriber(
            _required(settings.stt_base_url, "--stt-base-url", "stt"),
            settings.stt_api_key,
            settings.stt_model or "whisper-1",
            timeout=settings.stt_timeout,
        )
    raise BackendError(
        "stt", f"unknown --stt '{name}'; choose pocketsphinx, faster-whisper or openai"
    )


def _tts(settings: Settings) -> Any:
    name = settings.tts
    if name == "espeak":
        from .tts.espeak import EspeakSynthesizer

        return EspeakSynthesizer()
    if name == "openai":
        from .tts.openai_http import OpenAISpeechSynthesizer

        return OpenAISpeechSynthesizer(
            _required(settings.tts_base_url, "--tts-base-url", "tts"),
            settings.tts_api_key,
            settings.tts_model or "tts-1",
            timeout=settings.tts_timeout,
        )
    raise BackendError("tts", f"unknown --tts '{name}'; choose espeak or openai")


def _vad(settings: Settings) -> Any:
    from .vad.silero import SileroVad

    return SileroVad()


def _required(value: str | None, flag: str, backend: str) -> str:
    if not value:
        raise BackendError(backend, f"{flag} is required for this backend")
    return value
