"""The asyncio driver of one session: runs the core's effects as tasks against the backends,
feeds their results back, and cancels them on `response.cancel`, barge-in or disconnect."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from ..audio.formats import AudioFormat
from ..backends.errors import BackendError
from ..backends.llm.base import Finished, TextDelta, ToolCallDelta
from ..backends.mcp.base import McpError
from ..backends.registry import Backends
from ..backends.stt.base import TranscriptDelta, TranscriptDone
from ..core.effects import (
    CancelResponse,
    CancelSpeculation,
    ClearOutputAudio,
    DetectSpeech,
    FeedTranscript,
    FinishTranscript,
    GenerateResponse,
    JudgeTurnEnd,
    ListMcpTools,
    RunMcpCall,
    SpeculateTranscript,
    StartTranscript,
    StopGenerating,
    Transcribe,
    WakeAfter,
)
from ..core.session import Session
from ..logs import bind_ids
from ..protocol import server_events as ev
from ..protocol.errors import SERVER_ERROR, ProtocolError
from ..protocol.server_events import ServerEvent
from . import turn_judge
from .mcp import McpConnections
from .metrics import Metrics
from .speech import SpeechPipeline
from .telemetry import SessionTelemetry, fallback_metrics
from .transcripts import TRANSCRIPTION_FAILED, TranscriptFeed
from .vad_scheduler import VadResult, VadScheduler, scheduler_for

log = logging.getLogger(__name__)

# What a client is told when a backend fails in a way no `BackendError` describes (a bug): a
# code and what to do. The exception goes to the log, with the session id.
RESPONSE_FAILED = "The server had an error while generating this response. Try again."
VAD_FAILED = ProtocolError(
    "Speech detection failed for a piece of the input audio, so turn detection skipped it. "
    "The session goes on: keep sending audio, or commit the buffer yourself.",
    "vad_failed",
    type=SERVER_ERROR,
)


class Player(Protocol):
    """Server-side playback of assistant audio (WebRTC): what `ClearOutputAudio` stops."""

    def clear(self) -> None: ...


class SessionDriver:
    """The one way into a session for every transport (WebSocket, WebRTC, sideband): client
    events, media audio and playback positions come in through its methods, in order, and its
    events go out to the sinks. Nothing outside runtime/ changes `session` directly."""

    def __init__(
        self,
        session: Session,
        backends: Backends,
        *,
        metrics: Metrics | None = None,
        transport: str = "websocket",
    ) -> None:
        """`transport` labels the session in the metrics: websocket or webrtc."""
        self.session = session
        self.backends = backends
        self.metrics = metrics or fallback_metrics()
        self.telemetry = SessionTelemetry(
            self.metrics,
            session,
            {"llm": backends.llm.name, "stt": backends.stt.name, "tts": backends.tts.name},
            transport,
            vad_sample_rate=backends.vad.sample_rate,
        )
        # Every connection attached to the session gets every event: the owner, and sideband
        # sockets. A sink only enqueues; it never blocks.
        self._sinks: list[Callable[[ServerEvent], None]] = []
        self.player: Player | None = None
        self._feeds: dict[str, TranscriptFeed] = {}
        self._vad = backends.vad.new_stream()
        self._vad_scheduler: VadScheduler | None = None
        self._awaiting_vad = 0  # VAD requests not answered yet
        # Input waiting for the VAD's verdicts on the audio before it: (method, argument,
        # whether it is only more audio).
        self._backlog: deque[tuple[Callable[[Any], None], Any, bool]] = deque()
        self._tasks: dict[str, asyncio.Task[None]] = {}  # by response or item id
        self._stop_llm: set[str] = set()  # responses whose LLM stream must end (StopGenerating)
        self._speculating: asyncio.Task[None] | None = None  # the latest early decode
        self._judging: asyncio.Task[None] | None = None  # the latest end-of-turn question
        self._timers: dict[int, asyncio.TimerHandle] = {}  # the core's WakeAfter, by id
        self._mcp = McpConnections(backends.mcp, self.metrics)
        self._closed = False
        # The tasks it starts log under this session's id, whichever task's callback (the
        # VAD scheduler's, shared by every session) started them.
        self._log_context = contextvars.copy_context()
        self._log_context.run(bind_ids, session_id=session.id)

    # --- from the transports -----------------------------------------------------------------

    @property
    def session_id(self) -> str:
        return self.session.id

    def session_wire(self) -> dict[str, Any]:
        """The session's configuration, as `session.created` and `session.updated` carry it."""
        return self.session.session_wire()

    @property
    def input_format(self) -> AudioFormat:
        """What `append_audio` takes (a `session.update` may change it mid-call)."""
        return self.session.input_format

    @property
    def responding(self) -> bool:
        """A response is in progress (or waits to start)."""
        return bool(self.session.responses)

    def add_sink(self, sink: Callable[[ServerEvent], None]) -> None:
        self._sinks.append(sink)

    def remove_sink(self, sink: Callable[[ServerEvent], None]) -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)

    def emit(self, event: ServerEvent) -> None:
        """Send an event that did not come from the core (the player's output_audio_buffer.*)."""
        self.telemetry.server_event(event)
        for sink in list(self._sinks):
            sink(event)

    def start(self) -> None:
        self.telemetry.opened()
        self.session.open()
        self.flush()

    def receive(self, event: Any) -> None:
        event_type = event.type
        self.telemetry.client_event(event_type)
        self._apply(self.session.handle, event, event_type == "input_audio_buffer.append")

    def reject(self, error: ProtocolError) -> None:
        self._apply(self.session.reject, error)

    def append_audio(self, raw: bytes) -> None:
        """Audio from a media track, in `input_format`: ordered with the client's events, as
        an `input_audio_buffer.append` would be."""
        self._apply(self.session.append_input_audio, raw, True)

    def playback(self, item_id: str, played_ms: float, playing: bool) -> None:
        """The player's position in an assistant audio item (server-side playback). Applied at
        once, not queued behind client input: a barge-in truncates at what was heard by then."""
        self.session.on_playback(item_id, played_ms, playing)

    def cancel_responses(self) -> None:
        """The server ends the session: every response is cancelled (`response.done`) and its
        backend work stops."""
        for response_id in list(self.session.responses):
            self.session.cancel_response(response_id, None)
        self.flush()

    def _apply(self, method: Callable[[Any], None], argument: Any, audio: bool = False) -> None:
        """Client input is applied in order, and speech detection on appended audio counts as
        part of its append: while the VAD has audio of this session, later input other than
        more audio waits, so a `clear` or `commit` lands after the turns in the audio before
        it. More audio only joins what the VAD will take next, so it need not wait (unless
        other input already does)."""
        if self._backlog or (self._awaiting_vad and not audio):
            self._backlog.append((method, argument, audio))
            return
        method(argument)
        self.flush()

    async def close(self) -> None:
        """The client has gone: stop all backend work for it."""
        self._closed = True
        self.telemetry.closed()
        if self._vad_scheduler is not None:
            self._vad_scheduler.forget(self._vad)
        for feed in self._feeds.values():
            feed.close()
        for timer in self._timers.values():
            timer.cancel()
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._mcp.aclose()
        self.session.close()

    # --- effects ---------------------------------------------------------------------------

    def flush(self) -> None:
        """Send the core's events and run its effects, until it has nothing more to say."""
        session = self.session
        while outputs := session.drain():
            for out in outputs:
                if isinstance(out, dict):
                    self.emit(out)
                elif isinstance(out, DetectSpeech):
                    self._detect_speech()
                elif isinstance(out, GenerateResponse):
                    self._spawn(out.response_id, self._respond(out))
                elif isinstance(out, Transcribe):
                    self._spawn(out.item_id, self._transcribe(out))
                elif isinstance(out, SpeculateTranscript):
                    previous = self._speculating
                    self._speculating = self._spawn(
                        out.speculation_id, self._speculate(out, previous)
                    )
                elif isinstance(out, CancelSpeculation):
                    if (task := self._tasks.pop(out.speculation_id, None)) is not None:
                        task.cancel()
                elif isinstance(out, JudgeTurnEnd):
                    # A new pause means the last one ended: its answer would be ignored, so
                    # it leaves the model's queue rather than delay every session's next one.
                    if self._judging is not None:
                        self._judging.cancel()
                    key = f"judge/{out.item_id}/{out.speech_end_ms}"
                    self._judging = self._spawn(key, self._judge(out))
                elif isinstance(out, StartTranscript):
                    self._start_feed(out)
                elif isinstance(out, FeedTranscript):
                    if (feed := self._feeds.get(out.item_id)) is not None:
                        feed.feed(out.pcm16k)
                elif isinstance(out, FinishTranscript):
                    if (feed := self._feeds.pop(out.item_id, None)) is not None:
                        if out.discard:
                            feed.close()
                        else:
                            self.telemetry.transcript_finishing(out.item_id)
                            feed.finish()
                elif isinstance(out, CancelResponse):
                    task = self._tasks.pop(out.response_id, None)
                    if task is not None:
                        task.cancel()
                    calls = f"{out.response_id}/mcp/"
                    for key in [key for key in self._tasks if key.startswith(calls)]:
                        self._tasks.pop(key).cancel()
                elif isinstance(out, StopGenerating):
                    self._stop_llm.add(out.response_id)
                elif isinstance(out, ListMcpTools):
                    self._spawn(f"mcp-list/{out.item_id}", self._list_mcp_tools(out))
                elif isinstance(out, RunMcpCall):
                    key = f"{out.response_id}/mcp/{out.item_id}"
                    self._spawn(key, self._run_mcp_call(out))
                elif isinstance(out, ClearOutputAudio) and self.player is not None:
                    self.player.clear()
                elif isinstance(out, WakeAfter):
                    self._wake_after(out)

    def _wake_after(self, wake: WakeAfter) -> None:
        def woken() -> None:
            self._timers.pop(wake.timer_id, None)
            if not self._closed:
                self._apply(self.session.on_timer, wake.timer_id)

        loop = asyncio.get_running_loop()
        self._timers[wake.timer_id] = loop.call_later(wake.delay_ms / 1000, woken)

    def _detect_speech(self) -> None:
        """Batched with every other session's frames on the VAD thread (see vad_scheduler),
        which takes the audio when its next tick starts."""
        if self._vad_scheduler is None:
            self._vad_scheduler = scheduler_for(self.backends.vad)
        self._vad_scheduler.request(self._vad, self._vad_audio, self._speech_detected)
        self._awaiting_vad += 1

    def _vad_audio(self) -> Any:
        """What the scheduler pulls when its tick starts: the audio appended since the last."""
        pcm16k = self.session.take_vad_audio()
        self.telemetry.audio_to_vad(len(pcm16k))
        self.flush()  # the turn's transcript, if one streams, is fed the same audio
        return pcm16k

    def _speech_detected(self, result: VadResult) -> None:
        self._awaiting_vad -= 1
        if self._closed:
            return
        try:
            if isinstance(result, Exception):
                self.emit(ev.error(VAD_FAILED.as_error()))
            else:
                self.session.on_speech_probabilities(result)
                self.flush()
        finally:  # whatever became of this audio, the input queued behind it goes on
            backlog = self._backlog
            while backlog and (not self._awaiting_vad or backlog[0][2]):
                method, argument, _ = backlog.popleft()
                method(argument)
                self.flush()

    def _spawn(self, key: str, work: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
        if self._closed:
            work.close()
            return None
        task = asyncio.get_running_loop().create_task(work, context=self._log_context.copy())
        self._tasks[key] = task
        task.add_done_callback(
            lambda done: self._tasks.pop(key, None) if self._tasks.get(key) is done else None
        )
        return task

    async def _respond(self, effect: GenerateResponse) -> None:
        response_id = effect.response_id
        session, telemetry = self.session, self.telemetry
        speech = self._speech(effect) if effect.voice else None
        stage = "llm"  # then "tts": whose failure it is, if one is not a BackendError
        try:
            finished = False
            started = telemetry.now()
            first_token = True
            stream = self.backends.llm.stream(effect.request)
            async for event in stream:
                if first_token and isinstance(event, TextDelta | ToolCallDelta):
                    first_token = False
                    telemetry.llm_first_token(started)
                session.on_llm_event(response_id, event)
                self.flush()
                finished |= isinstance(event, Finished)
                if speech is not None and isinstance(event, TextDelta):
                    speech.push(event.text)
                if response_id in self._stop_llm:  # reached max_output_tokens
                    self._stop_llm.discard(response_id)
                    finished = True
                    if (aclose := getattr(stream, "aclose", None)) is not None:
                        await aclose()  # the HTTP stream ends now, not when collected
                    break
            telemetry.backend_done("llm", started)
            if not finished:
                session.on_llm_event(response_id, Finished())
                self.flush()
            if speech is not None:
                stage = "tts"
                await speech.finish()
                # After MCP calls a new task goes on with the response: this one's speech
                # ending is not the response's audio ending.
                if self._tasks.get(response_id) is asyncio.current_task():
                    session.on_response_audio_done(response_id)
        except BackendError as exc:
            log.warning("response %s failed: %s", response_id, exc)
            telemetry.backend_failed(
                exc.backend if exc.backend in ("llm", "tts") else stage, exc.code
            )
            session.on_response_failed(response_id, exc.code, exc.message)
        except Exception:  # a backend bug must fail one response, not the session
            log.exception(
                "response %s failed unexpectedly", response_id, extra={"session_id": session.id}
            )
            telemetry.backend_failed(stage, "server_error")
            session.on_response_failed(response_id, "server_error", RESPONSE_FAILED)
        finally:
            if speech is not None:
                await speech.cancel()
        self.flush()

    async def _list_mcp_tools(self, effect: ListMcpTools) -> None:
        try:
            tools = await self._mcp.list_tools(effect.server)
        except McpError as exc:
            log.warning("MCP listing of %s failed: %s %s", effect.server.label, exc, exc.detail)
            self.session.on_mcp_list_failed(effect.item_id, exc.message)
        except Exception:
            log.exception("MCP listing of %s failed unexpectedly", effect.server.label)
            self.session.on_mcp_list_failed(effect.item_id, "the server had an error.")
        else:
            self.session.on_mcp_tools_listed(effect.item_id, tools)
        self.flush()

    async def _run_mcp_call(self, effect: RunMcpCall) -> None:
        output: str | None = None
        error: dict[str, Any] | None = None
        try:
            output = await self._mcp.call(effect.server, effect.tool, effect.arguments)
        except McpError as exc:
            log.info(
                "MCP call %s on %s failed: %s %s", effect.tool, effect.server.label, exc, exc.detail
            )
            error = exc.to_wire()
        except Exception:
            log.exception("MCP call %s failed unexpectedly", effect.tool)
            error = {"type": "protocol_error", "code": -32603, "message": "The call failed."}
        self.session.on_mcp_call_done(effect.response_id, effect.item_id, output, error)
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
            telemetry=self.telemetry,
        )

    async def _transcribe(self, effect: Transcribe) -> None:
        session, telemetry = self.session, self.telemetry
        try:
            started = telemetry.now()
            async for event in self.backends.stt.transcribe(effect.pcm16k, effect.options):
                if isinstance(event, TranscriptDelta):
                    session.on_transcript_delta(effect.item_id, effect.content_index, event.text)
                elif isinstance(event, TranscriptDone):
                    telemetry.backend_done("stt", started)
                    session.on_transcript_done(
                        effect.item_id, effect.content_index, event.text, event.audio_seconds
                    )
                self.flush()
        except BackendError as exc:
            log.warning("transcription of %s failed: %s", effect.item_id, exc)
            telemetry.backend_failed("stt", exc.code)
            session.on_transcript_failed(
                effect.item_id, effect.content_index, exc.code, exc.message
            )
        except Exception:
            log.exception(
                "transcription of %s failed unexpectedly",
                effect.item_id,
                extra={"session_id": session.id},
            )
            telemetry.backend_failed("stt", "server_error")
            session.on_transcript_failed(
                effect.item_id, effect.content_index, "server_error", TRANSCRIPTION_FAILED
            )
        self.flush()

    async def _speculate(
        self, effect: SpeculateTranscript, previous: asyncio.Task[None] | None
    ) -> None:
        """An early decode of a turn (core/transcription.py): failures go back to the core,
        which retries an adopted one whole and reports only that. One at a time per session:
        a cancelled decode runs on in its thread until its segment ends, so the next waits
        for it rather than decoding beside it."""
        try:
            if previous is not None and not previous.done():
                await asyncio.wait([previous])
            done: TranscriptDone | None = None
            started = self.telemetry.now()
            async for event in self.backends.stt.transcribe(effect.pcm16k, effect.options):
                if isinstance(event, TranscriptDone):
                    done = event
            if done is None:
                raise BackendError("stt", "the transcriber gave no result")
            self.telemetry.backend_done("stt", started)  # a real request, adopted or not
            self.session.on_speculation_done(effect.speculation_id, done.text, done.audio_seconds)
        except Exception as exc:
            if isinstance(exc, BackendError):
                self.telemetry.backend_failed("stt", exc.code)
            else:
                log.exception("early transcription failed unexpectedly")
            self.session.on_speculation_failed(effect.speculation_id)
        self.flush()

    async def _judge(self, effect: JudgeTurnEnd) -> None:
        try:
            probability = await turn_judge.probability_complete(effect.pcm16k)
        except Exception:  # a model fault: this pause falls back to the silence wait
            log.exception("end-of-turn model failed")
            probability = None
        if not self._closed:
            self.session.on_turn_judged(effect.item_id, effect.speech_end_ms, probability)
            self.flush()

    def _start_feed(self, effect: StartTranscript) -> None:
        if self._closed:
            return
        session, item_id, index = self.session, effect.item_id, effect.content_index

        def partial(text: str) -> None:
            session.on_transcript_partial(item_id, index, text)
            self.flush()

        def done(text: str, seconds: float) -> None:
            self.telemetry.transcript_done(item_id)
            session.on_transcript_done(item_id, index, text, seconds)
            self.flush()

        def failed(code: str, message: str) -> None:
            self.telemetry.transcript_failed(item_id, code)
            session.on_transcript_failed(item_id, index, code, message)
            self.flush()

        stream = self.backends.stt.open_stream(effect.options)
        feed = TranscriptFeed(stream, partial=partial, done=done, failed=failed)
        self._feeds[item_id] = feed
        feed.feed(effect.pcm16k)
