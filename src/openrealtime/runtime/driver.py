"""The asyncio driver of one session: runs the core's effects as tasks against the backends,
feeds their results back, and cancels them on `response.cancel`, barge-in or disconnect."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from ..audio.formats import AudioFormat
from ..backends.errors import BackendError
from ..backends.llm.base import Finished, TextDelta
from ..backends.registry import Backends
from ..backends.stt.base import TranscriptDelta, TranscriptDone
from ..backends.stt.streaming import open_stream
from ..core.effects import (
    CancelResponse,
    ClearOutputAudio,
    DetectSpeech,
    FeedTranscript,
    FinishTranscript,
    GenerateResponse,
    StartTranscript,
    Transcribe,
)
from ..core.session import Session
from ..protocol.errors import ProtocolError
from ..protocol.server_events import ServerEvent
from .speech import SpeechPipeline
from .transcripts import TranscriptFeed

log = logging.getLogger(__name__)


class Player(Protocol):
    """Server-side playback of assistant audio (WebRTC): what `ClearOutputAudio` stops."""

    def clear(self) -> None: ...


class SessionDriver:
    def __init__(self, session: Session, backends: Backends) -> None:
        self.session = session
        self.backends = backends
        # Every connection attached to the session gets every event: the owner, and sideband
        # sockets. A sink only enqueues; it never blocks.
        self._sinks: list[Callable[[ServerEvent], None]] = []
        self.player: Player | None = None
        self._feeds: dict[str, TranscriptFeed] = {}
        self._vad = backends.vad.new_stream()
        self._tasks: dict[str, asyncio.Task[None]] = {}  # by response or item id
        self._closed = False

    # --- from the transports -----------------------------------------------------------------

    def add_sink(self, sink: Callable[[ServerEvent], None]) -> None:
        self._sinks.append(sink)

    def remove_sink(self, sink: Callable[[ServerEvent], None]) -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)

    def emit(self, event: ServerEvent) -> None:
        """Send an event that did not come from the core (the player's output_audio_buffer.*)."""
        for sink in list(self._sinks):
            sink(event)

    def start(self) -> None:
        self.session.open()
        self.flush()

    def receive(self, event: Any) -> None:
        self.session.handle(event)
        self.flush()

    def reject(self, error: ProtocolError) -> None:
        self.session.reject(error)
        self.flush()

    async def close(self) -> None:
        """The client has gone: stop all backend work for it."""
        self._closed = True
        for feed in self._feeds.values():
            feed.close()
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- effects ---------------------------------------------------------------------------

    def flush(self) -> None:
        """Send the core's events and run its effects, until it has nothing more to say."""
        session = self.session
        while outputs := session.drain():
            for out in outputs:
                if isinstance(out, dict):
                    self.emit(out)
                elif isinstance(out, DetectSpeech):
                    # ~0.25 ms per 32 ms frame: cheaper inline than a hop to a thread.
                    session.on_speech_probabilities(self._vad.process(out.pcm16k))
                elif isinstance(out, GenerateResponse):
                    self._spawn(out.response_id, self._respond(out))
                elif isinstance(out, Transcribe):
                    self._spawn(out.item_id, self._transcribe(out))
                elif isinstance(out, StartTranscript):
                    self._start_feed(out)
                elif isinstance(out, FeedTranscript):
                    if (feed := self._feeds.get(out.item_id)) is not None:
                        feed.feed(out.pcm16k)
                elif isinstance(out, FinishTranscript):
                    if (feed := self._feeds.pop(out.item_id, None)) is not None:
                        feed.close() if out.discard else feed.finish()
                elif isinstance(out, CancelResponse):
                    task = self._tasks.pop(out.response_id, None)
                    if task is not None:
                        task.cancel()
                elif isinstance(out, ClearOutputAudio) and self.player is not None:
                    self.player.clear()

    def _spawn(self, key: str, work: Coroutine[Any, Any, None]) -> None:
        if self._closed:
            work.close()
            return
        task = asyncio.get_running_loop().create_task(work)
        self._tasks[key] = task
        task.add_done_callback(
            lambda done: self._tasks.pop(key, None) if self._tasks.get(key) is done else None
        )

    async def _respond(self, effect: GenerateResponse) -> None:
        response_id = effect.response_id
        session = self.session
        speech = self._speech(effect) if effect.voice else None
        try:
            finished = False
            async for event in self.backends.llm.stream(effect.request):
                session.on_llm_event(response_id, event)
                self.flush()
                finished |= isinstance(event, Finished)
                if speech is not None and isinstance(event, TextDelta):
                    speech.push(event.text)
            if not finished:
                session.on_llm_event(response_id, Finished())
                self.flush()
            if speech is not None:
                await speech.finish()
                session.on_response_audio_done(response_id)
        except BackendError as exc:
            log.warning("response %s failed: %s", response_id, exc)
            session.on_response_failed(response_id, exc.code, exc.message)
        except Exception as exc:  # a backend bug must fail one response, not the session
            log.exception("response %s failed unexpectedly", response_id)
            session.on_response_failed(response_id, "server_error", f"internal error: {exc!r}")
        finally:
            if speech is not None:
                await speech.cancel()
        self.flush()

    def _speech(self, effect: GenerateResponse) -> SpeechPipeline:
        response_id = effect.response_id
        tts = self.backends.tts
        voice = tts.resolve_voice(effect.voice or "") or tts.resolve_voice("alloy") or ""
        response = self.session.responses[response_id]

        def on_audio(encoded: bytes, duration_ms: float) -> None:
            self.session.on_response_audio(response_id, encoded, duration_ms)
            self.flush()

        def on_mark(words: int) -> None:
            self.session.on_speech_mark(response_id, words)

        return SpeechPipeline(
            tts,
            voice,
            effect.speed,
            AudioFormat(response.settings.audio_format["type"]),
            on_audio,
            on_mark,
        )

    async def _transcribe(self, effect: Transcribe) -> None:
        session = self.session
        try:
            async for event in self.backends.stt.transcribe(effect.pcm16k, effect.options):
                if isinstance(event, TranscriptDelta):
                    session.on_transcript_delta(effect.item_id, effect.content_index, event.text)
                elif isinstance(event, TranscriptDone):
                    session.on_transcript_done(
                        effect.item_id, effect.content_index, event.text, event.audio_seconds
                    )
                self.flush()
        except BackendError as exc:
            log.warning("transcription of %s failed: %s", effect.item_id, exc)
            session.on_transcript_failed(
                effect.item_id, effect.content_index, exc.code, exc.message
            )
        except Exception as exc:
            log.exception("transcription of %s failed unexpectedly", effect.item_id)
            session.on_transcript_failed(
                effect.item_id, effect.content_index, "server_error", repr(exc)
            )
        self.flush()

    def _start_feed(self, effect: StartTranscript) -> None:
        if self._closed:
            return
        session, item_id, index = self.session, effect.item_id, effect.content_index

        def partial(text: str) -> None:
            session.on_transcript_partial(item_id, index, text)
            self.flush()

        def done(text: str, seconds: float) -> None:
            session.on_transcript_done(item_id, index, text, seconds)
            self.flush()

        def failed(code: str, message: str) -> None:
            session.on_transcript_failed(item_id, index, code, message)
            self.flush()

        stream = open_stream(self.backends.stt, effect.options)
        feed = TranscriptFeed(stream, partial=partial, done=done, failed=failed)
        self._feeds[item_id] = feed
        feed.feed(effect.pcm16k)
