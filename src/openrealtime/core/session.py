"""The session core: one per connection, sans-I/O.

Client events and backend results go in; server events and effects come out, in order, through
`drain()`. It never awaits, never reads the clock and never touches a socket: the input audio
itself is its clock. Every client mistake becomes an `error` event and the session goes on.

Rules that span the parts:
- A response waits (after `response.created`) until every user audio item in its context has
  a transcript, because the LLM reads the user's words; then it asks for generation.
- Speech starting with `interrupt_response` cancels the default conversation's response
  (`turn_detected`) and truncates its audio to what had been sent.
- Speech stopping commits the buffer as a user item and, with `create_response`, responds.
- Transcription always runs (the LLM needs the words); its events are sent only when
  `audio.input.transcription` is configured (always, in a transcription session). A failure
  is always reported. With `stream_transcripts`, a turn is transcribed while it is spoken and
  partial transcripts go out as deltas.
- A transcription session (`type: "transcription"`) only transcribes: no responses.
- With server-side playback (WebRTC), interrupting stops the player and truncates the audio
  to what was played; without it (WebSocket), to what was sent.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from typing import Any

from ..audio import formats
from ..audio.formats import AudioFormat
from ..backends.llm.base import Finished, LlmEvent, TextDelta, ToolCallDelta
from ..backends.stt.base import TranscriptionOptions
from ..ids import new_id
from ..protocol import client_events as ce
from ..protocol import errors
from ..protocol import server_events as ev
from ..protocol.errors import ProtocolError
from ..protocol.items import (
    ContentPart,
    ItemReference,
    McpApprovalResponseItem,
    MessageItem,
    dump_item,
)
from ..protocol.session import (
    OPENAI_VOICES,
    READ_ONLY_FIELDS,
    RealtimeSession,
    TranscriptionSession,
    VoiceId,
    merge_session_update,
)
from .audio_input import InputAudioBuffer, decode_base64_audio, to_vad_rate
from .context import build_request, estimate_input
from .conversation import Conversation
from .effects import (
    CancelResponse,
    ClearOutputAudio,
    DetectSpeech,
    Effect,
    FeedTranscript,
    FinishTranscript,
    GenerateResponse,
    StartTranscript,
    Transcribe,
)
from .responses import Response, ResponseSettings
from .spoken import SpokenAudio, first_words
from .turns import SpeechStarted, SpeechStopped, TurnDetector, TurnParams

log = logging.getLogger(__name__)

Output = dict[str, Any] | Effect
MIN_COMMIT_MS = 100


class Session:
    def __init__(
        self,
        config: RealtimeSession | TranscriptionSession | None = None,
        *,
        session_id: str | None = None,
        known_voice: Callable[[str], bool] = lambda voice: voice in OPENAI_VOICES,
        vad_frame_ms: float = 32.0,
        stream_transcripts: bool = False,
        playback: bool = False,
        context_window: int | None = None,
    ) -> None:
        self.id = session_id or new_id("sess")
        self.config: RealtimeSession | TranscriptionSession = config or RealtimeSession()
        self.config.id = self.id
        self._stream_transcripts = stream_transcripts or self.transcribes_only
        self._playback = playback
        self._context_window = context_window
        self._streaming_item: str | None = None  # the turn being transcribed as it is spoken
        self._partials: dict[str, str] = {}  # item id -> transcript text already sent as deltas
        self._playing: tuple[str, float] | None = None  # (item id, ms played) while playing
        self.conversation = Conversation()
        self.conversation_id = new_id("conv")
        self.outbox: list[Output] = []
        self.responses: dict[str, Response] = {}  # active responses only
        self._known_voice = known_voice
        self._vad_frame_ms = vad_frame_ms
        self._voice_locked = False
        self._spoken: dict[str, SpokenAudio] = {}  # assistant audio by item id
        self._input_audio: dict[str, tuple[AudioFormat, bytes]] = {}  # user audio by item id
        self._transcribing: set[str] = set()
        self._waiting: dict[str, Callable[[], GenerateResponse]] = {}  # response id -> request
        self._input = InputAudioBuffer(AudioFormat(self.config.audio.input.format.type))
        self._detector: TurnDetector | None = None
        self._vad_frames = 0
        self._speech_item_id: str | None = None
        self._idle_deadline_ms: float | None = None
        self._configure_turns()

    # --- I/O surface ---------------------------------------------------------------------------

    def open(self) -> None:
        self.outbox.append(ev.session_created(self.session_wire()))

    def drain(self) -> list[Output]:
        out, self.outbox = self.outbox, []
        return out

    def handle(self, event: Any) -> None:
        """Apply one parsed client event."""
        try:
            _HANDLERS[event.type](self, event)
        except ProtocolError as error:
            error.event_id = error.event_id or event.event_id
            self.reject(error)
        except Exception as exc:  # a bug, or input no rule foresaw: one error, not a lost session
            log.exception("could not apply %s", event.type)
            self.reject(
                ProtocolError(
                    f"The event could not be applied: {exc}.",
                    errors.INVALID_EVENT,
                    type=errors.SERVER_ERROR,
                    event_id=event.event_id,
                )
            )

    def close(self) -> None:
        """The connection is gone: drop what is in flight. (Responses point back at their
        session; clearing them lets a closed session be freed at once, not by a GC pass.)"""
        self.responses.clear()
        self._waiting.clear()
        self.outbox.clear()

    def reject(self, error: ProtocolError) -> None:
        """Report a client mistake (including ones found before parsing, by the transport)."""
        self.outbox.append(ev.error(error.as_error()))

    def session_wire(self) -> dict[str, Any]:
        return self.config.model_dump(mode="json")

    @property
    def transcribes_only(self) -> bool:
        return isinstance(self.config, TranscriptionSession)

    # --- session ---------------------------------------------------------------------------

    def _session_update(self, event: ce.SessionUpdate) -> None:
        update = event.session.model_dump(mode="json", exclude_unset=True)
        if update.get("type") != self.config.type:
            raise ProtocolError(
                f"This is a '{self.config.type}' session; session.type cannot change to "
                f"'{update.get('type')}'. Open a new connection for a {update.get('type')} session.",
                errors.INVALID_VALUE,
                "session.type",
            )
        for field in READ_ONLY_FIELDS:
            update.pop(field, None)
        new_voice = (update.get("audio") or {}).get("output", {}).get("voice")
        if new_voice is not None:
            self._check_voice(new_voice, "session.audio.output.voice")
            if self._voice_locked and new_voice != self._voice_value():
                raise ProtocolError(
                    "Cannot update a conversation's voice if assistant audio is present.",
                    errors.VOICE_LOCKED,
                    "session.audio.output.voice",
                )
        merged = merge_session_update(self.session_wire(), update)
        self.config = type(self.config).model_validate(merged)
        self._input.set_format(AudioFormat(self.config.audio.input.format.type))
        self._configure_turns()
        self.outbox.append(ev.session_updated(self.session_wire()))

    def _check_voice(self, voice: Any, param: str) -> None:
        if isinstance(voice, str) and not self._known_voice(voice):
            raise errors.unknown_voice(voice, param)

    def _voice_value(self) -> Any:
        assert isinstance(self.config, RealtimeSession)
        voice = self.config.audio.output.voice
        return voice.model_dump() if isinstance(voice, VoiceId) else voice

    def _configure_turns(self) -> None:
        detection = self.config.audio.input.turn_detection
        if detection is None:
            self._detector = None
            return
        params = TurnParams.of(detection)
        if self._detector is None:
            self._detector = TurnDetector(params, self._vad_frame_ms)
        else:
            self._detector.params = params  # keep whether speech is under way

    # --- conversation ----------------------------------------------------------------------

    def _item_create(self, event: ce.ConversationItemCreate) -> None:
        item = event.item
        item.id = item.id or new_id("item")
        if not isinstance(item, McpApprovalResponseItem):  # the one item type without it
            item.object = "realtime.item"
        if hasattr(item, "status"):
            item.status = "completed"
        audio = self._decode_item_audio(item)
        previous_id = self.conversation.insert(item, event.previous_item_id)
        audio_index = self._keep_item_audio(item, audio)
        wire = dump_item(item)
        self.outbox.append(ev.conversation_item_added(wire, previous_id))
        self.outbox.append(ev.conversation_item_done(wire, previous_id))
        if audio_index is not None:
            self._transcribe(item.id, audio_index)

    def _decode_item_audio(self, item: Any) -> tuple[int, bytes] | None:
        """A created item's input audio, decoded (refused before anything is stored)."""
        if not isinstance(item, MessageItem):
            return None
        for index, part in enumerate(item.content):
            if part.type == "input_audio" and part.audio:
                param = f"item.content[{index}].audio"
                return index, decode_base64_audio(part.audio, self._input.format, param)
        return None

    def _keep_item_audio(self, item: Any, audio: tuple[int, bytes] | None) -> int | None:
        """Move the audio out of the item: events don't echo it; retrieve does."""
        if audio is None:
            return None
        index, raw = audio
        self._input_audio[item.id] = (self._input.format, raw)
        item.content[index].audio = None
        return index

    def _item_retrieve(self, event: ce.ConversationItemRetrieve) -> None:
        item = self.conversation.get(event.item_id)
        wire = dump_item(item)
        audio = self._input_audio.get(item.id)
        spoken = self._spoken.get(item.id)
        for part in wire.get("content", ()):
            if part["type"] == "input_audio" and audio is not None:
                part["audio"] = base64.b64encode(audio[1]).decode()
            elif part["type"] == "output_audio" and spoken is not None:
                part["audio"] = base64.b64encode(spoken.encoded).decode()
        self.outbox.append(ev.conversation_item_retrieved(wire))

    def _item_delete(self, event: ce.ConversationItemDelete) -> None:
        self.conversation.delete(event.item_id)
        self._spoken.pop(event.item_id, None)
        self._input_audio.pop(event.item_id, None)
        self.outbox.append(ev.conversation_item_deleted(event.item_id))

    def _item_truncate(self, event: ce.ConversationItemTruncate) -> None:
        item = self.conversation.get(event.item_id)
        spoken = self._spoken.get(item.id)
        if spoken is None or not isinstance(item, MessageItem) or item.role != "assistant":
            raise ProtocolError(
                f"Item '{item.id}' has no assistant audio to truncate; only assistant messages "
                "with audio can be truncated.",
                errors.INVALID_VALUE,
                "item_id",
            )
        if (
            event.content_index >= len(item.content)
            or item.content[event.content_index].type != "output_audio"
        ):
            raise ProtocolError(
                f"content_index {event.content_index} of item '{item.id}' is not its audio; use 0.",
                errors.INVALID_VALUE,
                "content_index",
            )
        if event.audio_end_ms > spoken.duration_ms + 1:
            raise ProtocolError(
                f"audio_end_ms {event.audio_end_ms} is past the end of the audio "
                f"({spoken.duration_ms:.0f} ms).",
                errors.INVALID_VALUE,
                "audio_end_ms",
            )
        self._truncate(item, spoken, event.content_index, event.audio_end_ms)

    def _truncate(
        self, item: MessageItem, spoken: SpokenAudio, content_index: int, end_ms: int
    ) -> None:
        """Cut assistant audio and its transcript to what was heard: the LLM then sees only that."""
        part = item.content[content_index]
        part.transcript = first_words(part.transcript or "", spoken.words_heard(end_ms))
        spoken.cut(end_ms)
        self.outbox.append(ev.conversation_item_truncated(item.id or "", content_index, end_ms))

    # --- responses -------------------------------------------------------------------------

    def _response_create(self, event: ce.ResponseCreate) -> None:
        self.create_response(event.response or ce.ResponseParams())

    def create_response(self, params: ce.ResponseParams) -> None:
        if not isinstance(self.config, RealtimeSession):
            raise ProtocolError(
                "This is a transcription session: it transcribes audio and creates no "
                "responses. Connect without intent=transcription for a session that answers.",
                errors.NOT_SUPPORTED,
            )
        conversation = params.conversation or "auto"
        if conversation not in ("auto", "none"):
            raise ProtocolError(
                f"Invalid value: '{conversation}'. Supported values are: 'auto' and 'none'.",
                errors.INVALID_VALUE,
                "response.conversation",
            )
        in_conversation = conversation == "auto"
        if in_conversation and (active := self._conversation_response()) is not None:
            raise ProtocolError(
                f"Conversation already has an active response in progress: {active.id}. "
                "Wait until the response is finished before creating a new one.",
                errors.ACTIVE_RESPONSE,
            )
        config = self.config
        audio_out = params.audio.output if params.audio and params.audio.output else None
        if audio_out and audio_out.voice is not None:
            self._check_voice(audio_out.voice, "response.audio.output.voice")
        voice = (
            audio_out.voice if audio_out and audio_out.voice else None
        ) or config.audio.output.voice
        audio_format = (
            audio_out.format if audio_out and audio_out.format else None
        ) or config.audio.output.format
        inputs = None if params.input is None else self._resolve_input(params.input)
        settings = ResponseSettings(
            output_modalities=list(params.output_modalities or config.output_modalities),
            voice=voice.id if isinstance(voice, VoiceId) else voice,
            audio_format=audio_format.model_dump(),
            max_output_tokens=params.max_output_tokens or config.max_output_tokens,
            metadata=params.metadata,
            conversation=in_conversation,
        )
        response_id = new_id("resp")
        speed = config.audio.output.speed

        def generation() -> GenerateResponse:
            # Built when generation starts, so it sees the transcripts it waited for.
            items = self.conversation.items() if inputs is None else inputs
            request = build_request(
                instructions=config.instructions
                if params.instructions is None
                else params.instructions,
                items=items,
                tools=config.tools if params.tools is None else params.tools,
                tool_choice=params.tool_choice or config.tool_choice,
                temperature=params.temperature
                if params.temperature is not None
                else config.temperature,
                max_output_tokens=settings.max_output_tokens,
                parallel_tool_calls=params.parallel_tool_calls
                if params.parallel_tool_calls is not None
                else config.parallel_tool_calls,
                truncation=config.truncation,
                context_window=self._context_window,
            )
            response.set_input_estimate(estimate_input(request, self._audio_ms(items)))
            return GenerateResponse(
                response_id, request, voice=settings.voice if response.speaks else None, speed=speed
            )

        response = Response(
            response_id,
            settings,
            host=self,
            conversation_id=self.conversation_id if in_conversation else None,
        )
        self.responses[response.id] = response
        response.start()
        self._waiting[response.id] = generation
        self._start_ready_responses()

    def _start_ready_responses(self) -> None:
        """Ask for generation for each waiting response whose context is fully transcribed."""
        for response_id in list(self._waiting):
            response = self.responses.get(response_id)
            if response is None:
                del self._waiting[response_id]
                continue
            if response.settings.conversation and self._transcribing:
                continue
            self.outbox.append(self._waiting.pop(response_id)())

    def _audio_ms(self, items: list[Any]) -> float:
        stored = [self._input_audio.get(getattr(item, "id", None) or "") for item in items]
        return sum(formats.duration_ms(fmt, len(raw)) for fmt, raw in filter(None, stored))

    def _resolve_input(self, entries: list[Any]) -> list[Any]:
        return [
            self.conversation.get(entry.id, param="response.input")
            if isinstance(entry, ItemReference)
            else entry
            for entry in entries
        ]

    def _conversation_response(self) -> Response | None:
        return next((r for r in self.responses.values() if r.settings.conversation), None)

    def _response_cancel(self, event: ce.ResponseCancel) -> None:
        if event.response_id is not None:
            response = self.responses.get(event.response_id)
            if response is None:
                raise ProtocolError(
                    f"Response '{event.response_id}' is not in progress; nothing to cancel.",
                    errors.NO_ACTIVE_RESPONSE,
                    "response_id",
                )
        else:
            # Without an id, only the default conversation's response: out-of-band jobs stay.
            response = self._conversation_response()
            if response is None:
                raise ProtocolError(
                    "Cancellation failed: no active response found.", errors.NO_ACTIVE_RESPONSE
                )
        self.cancel_response(response.id, "client_cancelled")

    def cancel_response(self, response_id: str, reason: str | None) -> Response | None:
        """`reason` None: the server ends the session (its `error` event says why); OpenAI's
        reasons name only what the client or the turn detector did."""
        response = self.responses.pop(response_id, None)
        if response is None:
            return None
        self._waiting.pop(response_id, None)
        self.outbox.append(CancelResponse(response_id))
        response.finish("cancelled", {"type": "cancelled", "reason": reason})
        return response

    # --- backend results: the LLM and the synthesizer -------------------------------------------

    def on_llm_event(self, response_id: str, event: LlmEvent) -> None:
        response = self.responses.get(response_id)
        if response is None:
            return  # cancelled or finished: late events are dropped
        if isinstance(event, TextDelta):
            response.text_delta(event.text)
        elif isinstance(event, ToolCallDelta):
            response.tool_call_delta(event.index, event.call_id, event.name, event.arguments)
        elif isinstance(event, Finished):
            response.llm_finished(event.finish_reason, event.usage)
        self._after(response)

    def on_response_audio(self, response_id: str, encoded: bytes, duration_ms: float) -> None:
        response = self.responses.get(response_id)
        if response is not None and encoded:
            self._voice_locked = True
            response.audio_delta(encoded, duration_ms)

    def on_speech_mark(self, response_id: str, words_spoken: int) -> None:
        response = self.responses.get(response_id)
        if response is not None:
            response.speech_mark(words_spoken)

    def on_response_audio_done(self, response_id: str) -> None:
        response = self.responses.get(response_id)
        if response is not None:
            response.audio_finished()
            self._after(response)

    def on_response_failed(self, response_id: str, code: str, message: str) -> None:
        response = self.responses.pop(response_id, None)
        if response is None:
            return
        self._waiting.pop(response_id, None)
        response.finish(
            "failed",
            {
                "type": "failed",
                "error": {"type": errors.SERVER_ERROR, "code": code, "message": message},
            },
        )

    def _after(self, response: Response) -> None:
        if response.active:
            return
        self.responses.pop(response.id, None)
        idle = self._idle_timeout_ms()
        if idle is not None and response.settings.conversation:
            # The timeout counts from when the client will have played the answer.
            self._idle_deadline_ms = self._input.position_ms + response.audio_out_ms + idle

    # ResponseHost
    def add_output_item(self, item: Any) -> str | None:
        return self.conversation.insert(item)

    def keep_output_audio(self, item_id: str, spoken: SpokenAudio) -> None:
        self._spoken[item_id] = spoken

    # --- input audio -----------------------------------------------------------------------

    def _audio_append(self, event: ce.InputAudioBufferAppend) -> None:
        self.append_input_audio(decode_base64_audio(event.audio, self._input.format))

    @property
    def input_format(self) -> AudioFormat:
        return self._input.format

    def append_input_audio(self, raw: bytes) -> None:
        """Audio in the session's input format, from an append event or a media track."""
        pcm16k = self._input.append(raw, for_vad=self._detector is not None)
        if pcm16k is None or not len(pcm16k):
            return
        if self._streaming_item is not None:
            self.outbox.append(FeedTranscript(self._streaming_item, pcm16k.tobytes()))
        self.outbox.append(DetectSpeech(pcm16k))

    def on_speech_probabilities(self, probabilities: list[float]) -> None:
        """The VAD's verdicts on the next frames of the input stream, in order."""
        detector = self._detector
        if detector is None:
            return
        for probability in probabilities:
            self._vad_frames += 1
            frame_end_ms = self._vad_frames * self._vad_frame_ms
            turn = detector.frame(probability, frame_end_ms)
            if isinstance(turn, SpeechStarted):
                self._speech_started(turn)
            elif isinstance(turn, SpeechStopped):
                self._speech_stopped(turn)
            elif not detector.speaking:
                self._check_idle(frame_end_ms)
        if not detector.speaking:
            # Relative to what the VAD has seen, which may trail what has arrived.
            analysed_ms = self._vad_frames * self._vad_frame_ms
            self._input.trim_before(analysed_ms - detector.params.prefix_padding_ms)

    def _speech_started(self, turn: SpeechStarted) -> None:
        self._idle_deadline_ms = None
        item_id = self._speech_item_id = new_id("item")
        self.outbox.append(ev.input_audio_buffer_speech_started(turn.audio_start_ms, item_id))
        if self._stream_transcripts:
            held = to_vad_rate(self._input.format, self._input.peek(turn.audio_start_ms))
            self._streaming_item = item_id
            options = self._transcription_options()
            self.outbox.append(StartTranscript(item_id, 0, held.tobytes(), options))
        detection = self.config.audio.input.turn_detection
        if detection is not None and detection.interrupt_response:
            self._interrupt()

    def _interrupt(self) -> None:
        """Barge-in: cancel the answer first, then stop playback and truncate the audio to
        what the user heard (what was played, or else what was sent)."""
        active = self._conversation_response()
        if active is not None:
            item, sent_ms = active.spoken_item(), int(active.audio_out_ms)
            self.cancel_response(active.id, "turn_detected")
            if item is not None and not self._playback:
                self._truncate_heard(item.id or "", sent_ms)
        self._stop_playback()

    def _stop_playback(self) -> None:
        if self._playing is None:
            return
        item_id, played_ms = self._playing
        self._playing = None
        self.outbox.append(ClearOutputAudio())
        self._truncate_heard(item_id, int(played_ms))

    def _truncate_heard(self, item_id: str, end_ms: int) -> None:
        """Even at the end of its audio, the transcript may run ahead of what was spoken
        (the LLM writes faster than speech), so the cut is always made."""
        spoken = self._spoken.get(item_id)
        if spoken is None or item_id not in self.conversation:
            return
        end_ms = min(end_ms, int(spoken.duration_ms))
        self._truncate(self.conversation.get(item_id), spoken, 0, end_ms)

    def on_playback(self, item_id: str, played_ms: float, playing: bool) -> None:
        """The player's position in an assistant audio item (server-side playback only)."""
        self._playing = (item_id, played_ms) if playing else None

    def _speech_stopped(self, turn: SpeechStopped) -> None:
        item_id = self._speech_item_id or new_id("item")
        self._speech_item_id = None
        self.outbox.append(ev.input_audio_buffer_speech_stopped(turn.audio_end_ms, item_id))
        self._commit(item_id, start_ms=turn.audio_start_ms, end_ms=turn.audio_end_ms)
        detection = self.config.audio.input.turn_detection
        if (
            detection is not None
            and detection.create_response
            and not self.transcribes_only
            and self._conversation_response() is None
        ):
            self.create_response(ce.ResponseParams())

    def _check_idle(self, now_ms: float) -> None:
        deadline = self._idle_deadline_ms
        if deadline is None or now_ms < deadline or self._conversation_response() is not None:
            return
        if self.transcribes_only:
            return
        self._idle_deadline_ms = None
        item_id = new_id("item")
        # The span since the answer finished playing (as OpenAI reports it), not the buffer's.
        start_ms = deadline - (self._idle_timeout_ms() or 0)
        self.outbox.append(
            ev.input_audio_buffer_timeout_triggered(round(start_ms), round(now_ms), item_id)
        )
        if self._input.duration_ms >= MIN_COMMIT_MS:
            self._commit(item_id)
        self.create_response(ce.ResponseParams())

    def _idle_timeout_ms(self) -> int | None:
        detection = self.config.audio.input.turn_detection
        return getattr(detection, "idle_timeout_ms", None)

    def _audio_commit(self, event: ce.InputAudioBufferCommit) -> None:
        if self._input.duration_ms < MIN_COMMIT_MS:
            raise ProtocolError(
                f"Error committing input audio buffer: buffer too small. Expected at least "
                f"{MIN_COMMIT_MS}ms of audio, but buffer only has "
                f"{self._input.duration_ms:.2f}ms of audio.",
                errors.COMMIT_EMPTY,
            )
        item_id = self._speech_item_id or new_id("item")
        self._speech_item_id = None
        if self._detector is not None:
            self._detector.reset()
        self._commit(item_id)

    def _commit(
        self, item_id: str, start_ms: float | None = None, end_ms: float | None = None
    ) -> None:
        audio = self._input.take(start_ms, end_ms)
        item = MessageItem(
            id=item_id,
            object="realtime.item",
            status="completed",
            role="user",
            content=[ContentPart(type="input_audio", transcript=None)],
        )
        self._input_audio[item_id] = (self._input.format, audio)
        previous_id = self.conversation.insert(item)
        self.outbox.append(ev.input_audio_buffer_committed(item_id, previous_id))
        wire = dump_item(item)
        self.outbox.append(ev.conversation_item_added(wire, previous_id))
        self.outbox.append(ev.conversation_item_done(wire, previous_id))
        if item_id == self._streaming_item:
            self._streaming_item = None
            self._transcribing.add(item_id)
            self.outbox.append(FinishTranscript(item_id))
        else:
            self._transcribe(item_id, 0)

    def _audio_clear(self, event: ce.InputAudioBufferClear) -> None:
        self._input.clear()
        self._speech_item_id = None
        if self._streaming_item is not None:
            self.outbox.append(FinishTranscript(self._streaming_item, discard=True))
            self._streaming_item = None
        if self._detector is not None:
            self._detector.reset()
        self.outbox.append(ev.input_audio_buffer_cleared())

    def _output_audio_clear(self, event: ce.OutputAudioBufferClear) -> None:
        """Stops server-side playback (WebRTC); WebSocket sessions have none, so there it is
        accepted as a no-op."""
        self._stop_playback()

    # --- transcription ---------------------------------------------------------------------

    def _transcription_options(self) -> TranscriptionOptions:
        transcription = self.config.audio.input.transcription
        return TranscriptionOptions(
            model=transcription.model if transcription else None,
            language=transcription.language if transcription else None,
            prompt=transcription.prompt if transcription else None,
        )

    def _transcribe(self, item_id: str, content_index: int) -> None:
        pcm16k = to_vad_rate(*self._input_audio[item_id])
        self._transcribing.add(item_id)
        options = self._transcription_options()
        self.outbox.append(Transcribe(item_id, content_index, pcm16k.tobytes(), options))

    @property
    def _reports_transcripts(self) -> bool:
        return self.transcribes_only or self.config.audio.input.transcription is not None

    def on_transcript_delta(self, item_id: str, content_index: int, text: str) -> None:
        if self._reports_transcripts and text:
            self._partials[item_id] = self._partials.get(item_id, "") + text
            self.outbox.append(ev.transcription_delta(item_id, content_index, text))

    def on_transcript_partial(self, item_id: str, content_index: int, text: str) -> None:
        """The whole transcript so far, from a streaming transcription. Deltas may only
        append, so a revision of words already sent waits for `completed`."""
        sent = self._partials.get(item_id, "")
        if text.startswith(sent) and len(text) > len(sent):
            self.on_transcript_delta(item_id, content_index, text[len(sent) :])

    def on_transcript_done(
        self, item_id: str, content_index: int, text: str, seconds: float
    ) -> None:
        self._transcribing.discard(item_id)
        self._partials.pop(item_id, None)
        if item_id in self.conversation:
            item = self.conversation.get(item_id)
            item.content[content_index].transcript = text
            if self._reports_transcripts:
                usage = {"type": "duration", "seconds": round(seconds, 3)}
                self.outbox.append(ev.transcription_completed(item_id, content_index, text, usage))
        self._start_ready_responses()

    def on_transcript_failed(
        self, item_id: str, content_index: int, code: str, message: str
    ) -> None:
        self._transcribing.discard(item_id)
        self._partials.pop(item_id, None)
        error = {"type": errors.SERVER_ERROR, "code": code, "message": message}
        self.outbox.append(ev.transcription_failed(item_id, content_index, error))
        # The model would answer without the user's words: fail waiting responses instead.
        for response_id in list(self._waiting):
            response = self.responses.get(response_id)
            if response is not None and response.settings.conversation:
                self.on_response_failed(response_id, code, f"transcription failed: {message}")
        self._start_ready_responses()


# By event type. A class-level table, not bound methods on each session: those would form a
# reference cycle, and a closed session would wait for the garbage collector to be freed.
_HANDLERS: dict[str, Callable[[Session, Any], None]] = {
    "session.update": Session._session_update,
    "conversation.item.create": Session._item_create,
    "conversation.item.retrieve": Session._item_retrieve,
    "conversation.item.delete": Session._item_delete,
    "conversation.item.truncate": Session._item_truncate,
    "response.create": Session._response_create,
    "response.cancel": Session._response_cancel,
    "input_audio_buffer.append": Session._audio_append,
    "input_audio_buffer.commit": Session._audio_commit,
    "input_audio_buffer.clear": Session._audio_clear,
    "output_audio_buffer.clear": Session._output_audio_clear,
}
