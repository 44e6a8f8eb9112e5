"""The backends a server runs with: chosen once at start-up by an explicit factory, shared by
every session.

Each kind has a table of the names it accepts. `check_settings` validates a configuration
against it — the name, the options that name needs, the packages it imports — without loading
any model, so the command line can refuse a bad one before the server starts.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ..config import Settings
from .errors import BackendError, MissingDependencyError
from .llm.base import LanguageModel
from .mcp.base import McpConnector
from .mcp.client import SdkConnector
from .stt.base import Transcriber
from .tts.base import Synthesizer
from .vad.base import VoiceActivityDetector

B = TypeVar("B")
log = logging.getLogger(__name__)

# The packaged Whisper model (stt/whisper_weights.py): pinned, checked, never downloaded.
DEFAULT_WHISPER_MODEL = "tiny.en"
# The packaged multilingual model, for translation sessions (`_translation_transcriber`).
DEFAULT_TRANSLATION_WHISPER_MODEL = "base"


@dataclass
class Backends:
    llm: LanguageModel
    stt: Transcriber
    tts: Synthesizer
    vad: VoiceActivityDetector
    mcp: McpConnector = field(default_factory=SdkConnector)  # no hosts beyond public ones
    # The recognizer of translation sessions when `stt` will not do (English-only); lazy.
    translation_stt: Transcriber | None = None

    @property
    def translation_recognizer(self) -> Transcriber:
        return self.translation_stt or self.stt

    def describe(self) -> dict[str, str]:
        return {
            "llm": f"{self.llm.name} {self.llm.model}",
            "stt": self.stt.name,
            "tts": self.tts.name,
            "vad": self.vad.name,
        }

    def load(self) -> None:
        """Load and warm what loads lazily (decoders, local models); blocking. The server does
        this in the background instead, once it listens (`ModelWarmup`, server/lifecycle.py).

        The recognizer and the voice load side by side: both spend most of it in native code
        that releases the GIL, so the server is ready in about the longer of the two."""
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="load") as pool:
            for loaded in [pool.submit(self.stt.load), pool.submit(self.tts.load)]:
                loaded.result()

    async def aclose(self) -> None:
        await self.llm.aclose()
        await self.stt.aclose()
        if self.translation_stt is not None:
            await self.translation_stt.aclose()
        await self.tts.aclose()


@dataclass(frozen=True, slots=True)
class Package:
    """An optional package a backend imports: its module, and what installs it."""

    module: str
    name: str
    extra: str | None = None  # openrealtime's extra that brings it, if any


def _no_options(settings: Settings) -> dict[str, str | None]:
    return {}


@dataclass(frozen=True, slots=True)
class Choice(Generic[B]):
    build: Callable[[Settings], B]
    packages: tuple[Package, ...] = ()
    # The flags this backend cannot do without, with their values in `settings`.
    options: Callable[[Settings], dict[str, str | None]] = _no_options


def create_backends(settings: Settings) -> Backends:
    stt = _transcriber(settings)
    return Backends(
        llm=_chosen("llm", settings.llm, LLMS).build(settings),
        stt=stt,
        tts=_chosen("tts", settings.tts, SYNTHESIZERS).build(settings),
        vad=_chosen("vad", settings.vad, DETECTORS).build(settings),
        mcp=SdkConnector(settings.mcp_allow_hosts, call_timeout=settings.mcp_timeout),
        translation_stt=_translation_transcriber(settings, stt),
    )


def check_settings(settings: Settings) -> None:
    """Raise BackendError, whose message says what to change, if a backend cannot be built
    as configured. Loads no model; imports the packages the chosen backends need."""
    _check("llm", settings.llm, LLMS, settings)
    _check("stt", settings.stt, TRANSCRIBERS, settings)
    if settings.stt == "faster-whisper":  # a packaged model's packages, before loading it
        from .stt.whisper_weights import check_installed

        check_installed(settings.stt_model or DEFAULT_WHISPER_MODEL)
    if settings.translation_stt_model:
        from .stt.whisper_weights import check_installed

        check_installed(settings.translation_stt_model)
    _check("tts", settings.tts, SYNTHESIZERS, settings)
    _check("vad", settings.vad, DETECTORS, settings)


def _check(kind: str, name: str, table: Mapping[str, Choice[B]], settings: Settings) -> None:
    choice = _chosen(kind, name, table)
    for flag, value in choice.options(settings).items():
        if not value:
            raise BackendError(kind, f"{flag} is required for --{kind} {name}")
    for package in choice.packages:
        # Found, not imported: the import (onnxruntime, ctranslate2: ~0.3 s) is the model
        # load's, after the server listens (issue 9: start ≤ 1 s).
        try:
            found = importlib.util.find_spec(package.module) is not None
        except ImportError:
            found = False
        if not found:
            missing = MissingDependencyError(kind, package.name, package.extra)
            raise BackendError(
                kind, f"--{kind} {name}: {missing.message}", code=missing.code
            ) from None


def _chosen(kind: str, name: str, table: Mapping[str, Choice[B]]) -> Choice[B]:
    if name not in table:
        names = ", ".join(table)
        raise BackendError(kind, f"unknown --{kind} '{name}'; choose one of: {names}")
    return table[name]


def _transcriber(settings: Settings) -> Transcriber:
    """The chosen recognizer; with --stt-workers N, built in N worker processes instead."""
    build = _chosen("stt", settings.stt, TRANSCRIBERS).build
    if settings.stt_workers <= 0:
        return build(settings)
    from .stt.pooled import PooledTranscriber

    build = IN_WORKER.get(settings.stt, build)
    return PooledTranscriber(functools.partial(build, settings), settings.stt_workers)


def _translation_transcriber(settings: Settings, stt: Transcriber) -> Transcriber | None:
    """Whisper for translation sessions, unless `stt` serves them: a source language must be
    recognized, so an English-only `stt` gets multilingual base beside it. It loads on the
    first translation session, so voice-only servers start and weigh as before."""
    model = settings.translation_stt_model
    if model is None and stt.capabilities.languages is None:
        return None  # the recognizer is multilingual already
    from .stt.faster_whisper import FasterWhisperTranscriber

    model = model or DEFAULT_TRANSLATION_WHISPER_MODEL
    log.info("translation sessions recognize speech with Whisper %s, loaded on first use", model)
    return FasterWhisperTranscriber(model, short_window=settings.stt_short_window)


def _pocketsphinx_in_worker(settings: Settings) -> Transcriber:
    from .stt.pocketsphinx import PocketsphinxTranscriber

    # A worker decodes one utterance at a time: one decoder (~90 MiB), not one per thread.
    return PocketsphinxTranscriber(workers=1)


def _openai_chat(settings: Settings) -> LanguageModel:
    from .llm.openai_chat import OpenAIChatModel

    return OpenAIChatModel(
        settings.llm_base_url,
        settings.llm_model,
        settings.llm_api_key,
        settings.llm_timeout,
        settings.llm_context_tokens,
        vision=settings.llm_vision,
    )


def _pocketsphinx(settings: Settings) -> Transcriber:
    from .stt.pocketsphinx import PocketsphinxTranscriber

    return PocketsphinxTranscriber()


def _faster_whisper(settings: Settings) -> Transcriber:
    from .stt.faster_whisper import FasterWhisperTranscriber

    return FasterWhisperTranscriber(
        settings.stt_model or DEFAULT_WHISPER_MODEL,
        short_window=settings.stt_short_window,
        beam_size=settings.stt_beam_size,
    )


def _openai_stt(settings: Settings) -> Transcriber:
    from .stt.openai_http import OpenAITranscriber

    return OpenAITranscriber(
        _required(settings.stt_base_url, "--stt-base-url", "stt"),
        settings.stt_api_key,
        settings.stt_model or "whisper-1",
        timeout=settings.stt_timeout,
    )


def _espeak(settings: Settings) -> Synthesizer:
    from .tts.espeak import EspeakSynthesizer

    return EspeakSynthesizer()


def _hibari(settings: Settings) -> Synthesizer:
    from .tts.hibari import HibariSynthesizer

    return HibariSynthesizer()


def _openai_tts(settings: Settings) -> Synthesizer:
    from .tts.openai_http import OpenAISpeechSynthesizer

    return OpenAISpeechSynthesizer(
        _required(settings.tts_base_url, "--tts-base-url", "tts"),
        settings.tts_api_key,
        settings.tts_model or "tts-1",
        timeout=settings.tts_timeout,
    )


def _silero(settings: Settings) -> VoiceActivityDetector:
    from .vad.silero import SileroVad

    return SileroVad()


def _required(value: str | None, flag: str, backend: str) -> str:
    if not value:
        raise BackendError(backend, f"{flag} is required for this backend")
    return value


# The names each flag accepts (--llm, --stt, --tts, --vad), in the order the help lists them.
LLMS: dict[str, Choice[LanguageModel]] = {"openai": Choice(_openai_chat)}
TRANSCRIBERS: dict[str, Choice[Transcriber]] = {
    "faster-whisper": Choice(_faster_whisper, (Package("faster_whisper", "faster-whisper"),)),
    "pocketsphinx": Choice(_pocketsphinx, (Package("pocketsphinx", "pocketsphinx"),)),
    "openai": Choice(_openai_stt, options=lambda s: {"--stt-base-url": s.stt_base_url}),
}
SYNTHESIZERS: dict[str, Choice[Synthesizer]] = {
    "hibari": Choice(_hibari, (Package("hibari", "hibari-tts"),)),
    "espeak": Choice(_espeak, (Package("espeakng_loader", "espeakng-loader"),)),
    "openai": Choice(_openai_tts, options=lambda s: {"--tts-base-url": s.tts_base_url}),
}
DETECTORS: dict[str, Choice[VoiceActivityDetector]] = {
    "silero": Choice(_silero, (Package("onnxruntime", "onnxruntime"),)),
}
# How a recognizer is built inside a model worker, where it differs from TRANSCRIBERS'.
IN_WORKER: dict[str, Callable[[Settings], Transcriber]] = {
    "pocketsphinx": _pocketsphinx_in_worker,
}
