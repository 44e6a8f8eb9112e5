"""Speech-to-text with faster-whisper (Whisper on CTranslate2), the optional local backend.

`model` is a local directory holding a converted model (`model.bin`, `config.json`,
`tokenizer.json`, …) or a name that is fetched from the Hugging Face Hub on first use: a size
(`tiny`, `base.en`, …) or a repository id (`Systran/faster-whisper-small`). The model loads once,
lazily or through `load()`, and is shared: faster-whisper allows concurrent `transcribe` calls
from several threads.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import BackendError, MissingDependencyError
from .base import (
    SAMPLE_RATE,
    TranscriptDelta,
    TranscriptDone,
    TranscriptEvent,
    TranscriptionOptions,
)
from .streaming import BatchTranscriber

log = logging.getLogger(__name__)

_FIX = (
    "set --stt-model (env OPENREALTIME_STT_MODEL) to a CTranslate2 Whisper model directory or "
    "a model name such as 'base.en'"
)
_REQUIRED_FILES = ("model.bin", "config.json")
# The files faster-whisper itself fetches from a model repository.
_ALLOW_PATTERNS = [
    "config.json",
    "preprocessor_config.json",
    "model.bin",
    "tokenizer.json",
    "vocabulary.*",
]


class WhisperLike(Protocol):
    """The part of `faster_whisper.WhisperModel` used here; the seam for tests."""

    def transcribe(self, audio: np.ndarray, **kwargs: Any) -> tuple[Iterable[Any], Any]: ...


@dataclass(frozen=True, slots=True)
class _Segment:
    text: str


@dataclass(frozen=True, slots=True)
class _Finished:
    language: str | None


@dataclass(frozen=True, slots=True)
class _Failed:
    error: BaseException


class FasterWhisperTranscriber(BatchTranscriber):
    """A `Transcriber`; share one instance across sessions."""

    name = "faster-whisper"

    def __init__(
        self,
        model: str,
        device: str = "cpu",
        compute_type: str = "int8",
        download_root: str | None = None,
        *,
        _model: WhisperLike | None = None,
    ) -> None:
        self.model = model
        self.device = device
        self.compute_type = compute_type
        self.download_root = download_root
        self._model = _model
        self._load_lock = threading.Lock()

    def load(self) -> None:
        """Load the model (blocking; downloads it first if needed). Safe to call repeatedly."""
        with self._load_lock:
            if self._model is None:
                self._model = self._load()

    async def transcribe(
        self, pcm16k: bytes, options: TranscriptionOptions
    ) -> AsyncIterator[TranscriptEvent]:
        samples = np.frombuffer(pcm16k[: len(pcm16k) // 2 * 2], dtype="<i2")
        audio_seconds = len(samples) / SAMPLE_RATE
        if len(samples) == 0:
            yield TranscriptDone("", 0.0)
            return
        if self._model is None:
            await asyncio.to_thread(self.load)
        model = self._model
        assert model is not None
        audio = samples.astype(np.float32) / 32768.0

        # Segments are decoded lazily as the generator is consumed, so iterate it in a worker
        # thread and hand each one over as it comes.
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[_Segment | _Finished | _Failed] = asyncio.Queue()
        stop = threading.Event()

        def put(item: _Segment | _Finished | _Failed) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop closed under us; nobody is listening
                stop.set()

        def work() -> None:
            try:
                segments, info = model.transcribe(
                    audio,
                    language=options.language,
                    initial_prompt=options.prompt,
                    beam_size=1,
                    vad_filter=False,
                )
                for segment in segments:
                    if stop.is_set():
                        return
                    put(_Segment(segment.text))
                put(_Finished(getattr(info, "language", None)))
            except BaseException as exc:
                put(_Failed(exc))

        worker = loop.run_in_executor(None, work)
        parts: list[str] = []
        try:
            while True:
                item = await queue.get()
                if isinstance(item, _Failed):
                    raise BackendError(
                        "stt", f"faster-whisper failed to transcribe: {item.error}"
                    ) from item.error
                if isinstance(item, _Finished):
                    finished = item
                    break
                text = item.text.strip()
                if text:
                    # Deltas concatenate to the final text.
                    yield TranscriptDelta(text if not parts else " " + text)
                    parts.append(text)
        finally:
            # On cancellation the worker stops after its current segment; it cannot be killed.
            stop.set()
        await worker
        extra: dict[str, object] = {"language": finished.language} if finished.language else {}
        yield TranscriptDone(" ".join(parts), audio_seconds, extra)

    # Loading ------------------------------------------------------------------------------

    def _load(self) -> WhisperLike:
        try:
            import faster_whisper
        except ImportError as exc:
            raise MissingDependencyError("stt", "faster-whisper", extra="whisper") from exc
        path = self._model_dir()
        try:
            model: WhisperLike = faster_whisper.WhisperModel(
                path, device=self.device, compute_type=self.compute_type
            )
        except Exception as exc:
            raise _not_found(
                f"could not load the faster-whisper model in {path} ({_one_line(exc)})"
            ) from exc
        log.info("faster-whisper model loaded", extra={"model": self.model, "path": path})
        return model

    def _model_dir(self) -> str:
        """A local directory holding the model, downloading it if `model` is a name."""
        spec = os.path.expanduser(self.model)
        if os.path.isdir(spec):
            missing = [f for f in _REQUIRED_FILES if not os.path.isfile(os.path.join(spec, f))]
            if missing:
                raise _not_found(
                    f"{spec} is not a faster-whisper model directory (missing {', '.join(missing)})"
                )
            return spec
        if _looks_like_path(spec):
            raise _not_found(f"faster-whisper model directory {spec} does not exist")
        return self._download(_repo_id(spec))

    def _download(self, repo_id: str) -> str:
        import huggingface_hub

        where = self.download_root or huggingface_hub.constants.HF_HUB_CACHE
        named = f"'{self.model}'" if repo_id == self.model else f"'{self.model}' ({repo_id})"

        def fetch(local_only: bool) -> str:
            # No tqdm_class: faster-whisper's own download_model() passes a disabled one, which
            # would hide the progress of a download that can take minutes.
            return huggingface_hub.snapshot_download(
                repo_id,
                allow_patterns=_ALLOW_PATTERNS,
                cache_dir=self.download_root,
                local_files_only=local_only,
            )

        try:
            return fetch(local_only=True)
        except Exception:
            pass  # not cached yet
        if _hub_offline():
            raise _not_found(
                f"faster-whisper model {named} is not in the cache at {where} and "
                "HF_HUB_OFFLINE is set (unset it to download the model once)"
            )
        log.info(
            "downloading faster-whisper model %s from the Hugging Face Hub to %s",
            repo_id,
            where,
            extra={"model": self.model, "repo_id": repo_id, "cache_dir": where},
        )
        try:
            return fetch(local_only=False)
        except Exception as exc:
            raise _not_found(
                f"could not download faster-whisper model {named} to {where} ({_one_line(exc)})"
            ) from exc


def _looks_like_path(spec: str) -> bool:
    # A hub id is "name" or "owner/name"; anything else is meant as a directory.
    return os.path.isabs(spec) or spec.startswith(".") or len(Path(spec).parts) > 2


def _repo_id(spec: str) -> str:
    if "/" in spec:
        return spec
    from faster_whisper import utils

    # faster-whisper keeps its size → repository table private; it has been stable for years.
    sizes: dict[str, str] = getattr(utils, "_MODELS", {})
    if spec in sizes:
        return sizes[spec]
    known = ", ".join(sizes) or "tiny, base, small, medium, large-v3"
    raise _not_found(
        f"unknown faster-whisper model '{spec}' (known sizes: {known}; or a Hugging Face "
        "repository id such as 'Systran/faster-whisper-small')"
    )


def _hub_offline() -> bool:
    # Read at call time: huggingface_hub reads HF_HUB_OFFLINE once, when it is first imported.
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _not_found(what: str) -> BackendError:
    return BackendError("stt", f"{what}; {_FIX}", code="model_not_found")
