"""The session core: one per connection, sans-I/O.

Client events and backend results go in; server events and effects come out, in order, through
`drain()`. It never awaits, never reads the clock and never touches a socket: the input audio
itself is its clock. Every client mistake becomes an `error` event and the session goes on.

`Session` is the facade: it holds the configuration and the conversation, routes each event to
the part that owns its rules, and joins the parts where a rule spans them:
- `session.update` and the voice rules: `configuration.py`;
- creating, retrieving and deleting items: `item_events.py`;
- user turns, the input buffer and the idle timeout: `input_turns.py`;
- transcription of user audio: `transcription.py`;
- barge-in and truncation: `barge_in.py`;
- the lifecycle of responses (waiting for transcripts, one per conversation, cancel, fail,
  done): `lifecycle.py`, with their output in `responses.py`;
- MCP servers: listing their tools, what the LLM sees of them: `mcp.py`.

Rules that span the parts:
- A response in the default conversation waits until every user audio item has a transcript.
- Speech starting with `interrupt_response` cancels the default conversation's response
  (`turn_detected`) and truncates its audio to what was heard.
- A session's MCP servers are listed after `session.created` / `session.updated`; an
  `mcp_approval_response` item is stored, then answers the response that asked for it.
- A transcription session (`type: "transcription"`) only transcribes: no responses; its turns
  are always transcribed as they are spoken, and its transcripts always reported.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from ..audio.formats import AudioFormat
from ..backends.llm.base import LlmEvent
from ..backends.mcp.base import McpToolInfo
from ..ids import new_id
from ..protocol import client_events as ce
from ..protocol import errors
from ..protocol import server_events as ev
from ..protocol.errors import ProtocolError
from ..protocol.items import McpApprovalResponseItem
from ..protocol.session import OPENAI_VOICES, RealtimeSession, TranscriptionSession
from . import configuration
from .audio_input import decode_base64_audio
from .barge_in import BargeIn
from .conversation import Conversation
from .effects import DetectSpeech, Effect
from .input_turns import InputTurns
from .item_events import ItemEvents
from .lifecycle import ResponseLifecycle
from .mcp import McpServers, check_tools
from .phases import CancelReason
from .response_params import (
    generation,
    in_default_conversation,
    resolve_input,
    response_settings,
)
from .responses import Response
from .transcription import Transcription

log = logging.getLogger(__name__)

Output = dict[str, Any] | Effect


class Session:
    def __init__(
        self,
        config: RealtimeSession | TranscriptionSession | None = None,
        *,
        session_id: str | None = None,
        known_voice: Callable[[str], bool] = lambda voice: voice in OPENAI_VOICES,
        vad_frame_ms: float = 32.0,
        stream_transcripts: bool = False,
        early_transcripts: bool = True,
        playback: bool = False,
        context_window: int | None = None,
        vision: bool = True,
    ) -> None:
        self.id = session_id or new_id("sess")
        self.config: RealtimeSession | TranscriptionSession = config or RealtimeSession()
        self.config.id = self.id
        self.conversation = Conversation(vision=vision)
        self.conversation_id = new_id("conv")
        # Server events and effects not yet drained. The parts append to this very list. They
        # get what they need, never the session: a cycle would keep a closed session alive
        # until a GC pass (what they ask of it, as `TurnHost`, comes with each call).
        self._pending_outputs: list[Output] = []
        emit = self._pending_outputs.append
        self._known_voice = known_voice
        self._context_window = context_window
        self._voice_locked = False  # assistant audio exists: the voice may not change
        self._lifecycle = ResponseLifecycle(emit)
        self.responses: dict[str, Response] = self._lifecycle.active  # active responses only
        self._transcription = Transcription(
            emit,
            self.conversation,
            streams=stream_transcripts or self.transcribes_only,
            always_reports=self.transcribes_only,
            speculates=early_transcripts,
        )
        self._items = ItemEvents(emit, self.conversation)
        self._barge_in = BargeIn(emit, self.conversation, playback=playback)
        self._mcp = McpServers(emit, self.conversation)
        self._turns = InputTurns(
            emit,
            self.conversation,
            AudioFormat(self.config.audio.input.format.type),
            vad_frame_ms=vad_frame_ms,
            responds=not self.transcribes_only,
        )
        self._configure_parts()

    # --- I/O surface ---------------------------------------------------------------------------

    def open(self) -> None:
        self._pending_outputs.append(ev.session_created(self.session_wire()))
        self._configure_mcp()

    def drain(self) -> list[Output]:
        out = self._pending_outputs[:]
        self._pending_outputs.clear()  # the same list: the parts hold its `append`
        return out

    def handle(self, event: Any) -> None:
        """Apply one parsed client event."""
        try:
            _HANDLERS[event.type](self, event)
        except ProtocolError as error:
            error.event_id = error.event_id or event.event_id
            self.reject(error)
        except Exception:  # a bug, or input no rule foresaw: one error, not a lost session
            log.exception("could not apply %s", event.type)
            self.reject(
                ProtocolError(
                    f"The server could not apply this {event.type} event; the session goes on.",
                    errors.INVALID_EVENT,
                    type=errors.SERVER_ERROR,
                    event_id=event.event_id,
                )
            )

    def close(self) -> None:
        """The connection is gone: drop what is in flight."""
        self._lifecycle.close()
        self._pending_outputs.clear()

    def reject(self, error: ProtocolError) -> None:
        """Report a client mistake (including ones found before parsing, by the transport)."""
        self._pending_outputs.append(ev.error(error.as_error()))

    def session_wire(self) -> dict[str, Any]:
        return self.config.model_dump(mode="json")

    @property
    def transcribes_only(self) -> bool:
        return isinstance(self.config, TranscriptionSession)

    @property
    def input_format(self) -> AudioFormat:
        return self._turns.format

    # --- session ---------------------------------------------------------------------------

    def _session_update(self, event: ce.SessionUpdate) -> None:
        config = configuration.updated(
            self.config, event, known_voice=self._known_voice, voice_locked=self._voice_locked
        )
        if isinstance(config, RealtimeSession):
            check_tools(config.tools, "session.tools")
        self.config = config
        self._configure_parts()
        self._pending_outputs.append(ev.session_updated(self.session_wire()))
        self._configure_mcp()

    def _configure_mcp(self) -> None:
        if isinstance(self.config, RealtimeSession):
            self._mcp.configure(self.config.tools)

    def _configure_parts(self) -> None:
        audio_input = self.config.audio.input
        self._turns.configure(audio_input.turn_detection, AudioFormat(audio_input.format.type))
        self._transcription.configure(audio_input.transcription)

    def _check_voice(self, voice: Any, param: str) -> None:
        configuration.check_voice(voice, param, self._known_voice)

    # --- conversation ----------------------------------------------------------------------

    def _item_create(self, event: ce.ConversationItemCreate) -> None:
        audio_index = self._items.create(event, self._turns.format)
        if audio_index is not None:
            self._transcription.transcribe(event.item.id or "", audio_index)
        if isinstance(event.item, McpApprovalResponseItem):
            self._answered(self._lifecycle.approval_answered(event.item))

    def _item_retrieve(self, event: ce.ConversationItemRetrieve) -> None:
        self._items.retrieve(event)

    def _item_delete(self, event: ce.ConversationItemDelete) -> None:
        self._items.delete(event)

    def _item_truncate(self, event: ce.ConversationItemTruncate) -> None:
        self._barge_in.item_truncate(event)

    # --- responses -------------------------------------------------------------------------

    def _response_create(self, event: ce.ResponseCreate) -> None:
        self.create_response(event.response or ce.ResponseParams())

    def create_response(self, params: ce.ResponseParams) -> None:
        config = self.config
        if not isinstance(config, RealtimeSession):
            raise ProtocolError(
                "This is a transcription session: it transcribes audio and creates no "
                "responses. Connect without intent=transcription for a session that answers.",
                errors.NOT_SUPPORTED,
            )
        in_conversation = in_default_conversation(params)
        self._lifecycle.refuse_second(in_conversation)
        if params.tools is not None:
            check_tools(params.tools, "response.tools")
        settings = response_settings(
            config, params, in_conversation=in_conversation, check_voice=self._check_voice
        )
        inputs = None if params.input is None else resolve_input(self.conversation, params.input)
        response = Response(
            new_id("resp"),
            settings,
            emit=self._pending_outputs.append,
            conversation=self.conversation,
            conversation_id=self.conversation_id if in_conversation else None,
        )
        generate = generation(
            response,
            config,
            params,
            conversation=self.conversation,
            inputs=inputs,
            context_window=self._context_window,
            mcp=self._mcp,
        )
        self._lifecycle.add(response, generate, transcribing=self._transcription.busy)

    def _response_cancel(self, event: ce.ResponseCancel) -> None:
        self._lifecycle.cancel_requested(event.response_id)

    def cancel_response(self, response_id: str, reason: CancelReason) -> Response | None:
        """`reason` None: the server ends the session (its `error` event says why); OpenAI's
        reasons name only what the client or the turn detector did."""
        cancelled = self._lifecycle.cancel(response_id, reason)
        self._barge_in.audio_settled()
        return cancelled

    # --- backend results: the LLM and the synthesizer -------------------------------------------

    def on_llm_event(self, response_id: str, event: LlmEvent) -> None:
        self._answered(self._lifecycle.llm_event(response_id, event))

    def on_response_audio(self, response_id: str, encoded: bytes, duration_ms: float) -> None:
        if self._lifecycle.audio(response_id, encoded, duration_ms):
            self._voice_locked = True

    def on_speech_mark(self, response_id: str, words_spoken: int) -> None:
        self._lifecycle.speech_mark(response_id, words_spoken)

    def on_response_audio_done(self, response_id: str) -> None:
        self._answered(self._lifecycle.audio_done(response_id))

    def on_response_failed(self, response_id: str, code: str, message: str) -> None:
        self._lifecycle.fail(response_id, code, message)
        self._barge_in.audio_settled()

    # --- backend results: MCP servers -----------------------------------------------------------

    def on_mcp_tools_listed(self, item_id: str, tools: list[McpToolInfo]) -> None:
        self._mcp.listed(item_id, tools)

    def on_mcp_list_failed(self, item_id: str, message: str) -> None:
        self._mcp.list_failed(item_id, message)

    def on_mcp_call_done(
        self, response_id: str, item_id: str, output: str | None, error: dict[str, Any] | None
    ) -> None:
        """A `RunMcpCall` ended: its output, or its error (`type`, `message`, maybe `code`)."""
        self._answered(self._lifecycle.mcp_call_done(response_id, item_id, output, error))

    def _answered(self, ended: Response | None) -> None:
        """A response ended by itself: the idle timeout counts from its end."""
        self._barge_in.audio_settled()
        if ended is not None and ended.settings.conversation:
            self._turns.answer_played(ended.audio_out_ms)

    # --- input audio -----------------------------------------------------------------------

    def _audio_append(self, event: ce.InputAudioBufferAppend) -> None:
        self.append_input_audio(decode_base64_audio(event.audio, self._turns.format))

    def append_input_audio(self, raw: bytes) -> None:
        """Audio in the session's input format, from an append event or a media track."""
        if self._turns.append(raw):
            self._pending_outputs.append(DetectSpeech())

    def take_vad_audio(self) -> np.ndarray:
        """What a `DetectSpeech` asked the VAD to take: the audio appended since it last took
        some, at 16 kHz (its verdicts come back through `on_speech_probabilities`)."""
        pcm16k = self._turns.take_vad_audio()
        if len(pcm16k):
            self._transcription.feed(pcm16k)
        return pcm16k

    def on_speech_probabilities(self, probabilities: list[float]) -> None:
        """The VAD's verdicts on the next frames of the input stream, in order."""
        self._turns.on_speech_probabilities(probabilities, self)

    def _audio_commit(self, event: ce.InputAudioBufferCommit) -> None:
        self._turns.commit(self)

    def _audio_clear(self, event: ce.InputAudioBufferClear) -> None:
        self._transcription.discard_streaming()
        self._transcription.cancel_speculation()
        self._turns.clear()

    def _output_audio_clear(self, event: ce.OutputAudioBufferClear) -> None:
        """Stops server-side playback (WebRTC); WebSocket sessions have none, so there it is
        accepted as a no-op."""
        self._barge_in.stop_playback()

    def on_timer(self, timer_id: int) -> None:
        """A `WakeAfter` timer fired."""
        self._turns.on_timer(timer_id, self)

    def on_playback(self, item_id: str, played_ms: float, playing: bool) -> None:
        """The player's position in an assistant audio item (server-side playback only)."""
        self._barge_in.on_playback(item_id, played_ms, playing)

    # TurnHost: what turn detection asks of the session.

    def turn_started(self, item_id: str, audio_start_ms: int) -> None:
        if self._transcription.streams:
            self._transcription.start_streaming(item_id, self._turns.held_pcm16k(audio_start_ms))

    def turn_paused(self, item_id: str, pcm16k: np.ndarray) -> None:
        self._transcription.speculate(item_id, pcm16k)

    def turn_resumed(self, item_id: str) -> None:
        self._transcription.cancel_speculation()

    def on_turn_judged(self, item_id: str, speech_end_ms: float, probability: float | None) -> None:
        """The end-of-turn model's answer to a `JudgeTurnEnd` (None: no model to ask)."""
        self._turns.judged(item_id, speech_end_ms, probability, self)

    def barge_in(self) -> None:
        self._barge_in.interrupt(
            self._lifecycle.in_conversation(),
            cancel=lambda response_id: self.cancel_response(response_id, "turn_detected"),
        )

    def turn_committed(self, item_id: str, detected: bool) -> None:
        self._transcription.committed(item_id, detected)

    def answering(self) -> bool:
        return self._lifecycle.in_conversation() is not None

    def respond(self) -> None:
        self.create_response(ce.ResponseParams())

    # --- transcription ---------------------------------------------------------------------

    def on_speculation_done(self, speculation_id: str, text: str, seconds: float) -> None:
        self._transcription.speculation_done(speculation_id, text, seconds)
        self._lifecycle.start_ready(transcribing=self._transcription.busy)

    def on_speculation_failed(self, speculation_id: str) -> None:
        self._transcription.speculation_failed(speculation_id)

    def on_transcript_delta(self, item_id: str, content_index: int, text: str) -> None:
        self._transcription.delta(item_id, content_index, text)

    def on_transcript_partial(self, item_id: str, content_index: int, text: str) -> None:
        self._transcription.partial(item_id, content_index, text)

    def on_transcript_done(
        self, item_id: str, content_index: int, text: str, seconds: float
    ) -> None:
        self._transcription.done(item_id, content_index, text, seconds)
        self._lifecycle.start_ready(transcribing=self._transcription.busy)

    def on_transcript_failed(
        self, item_id: str, content_index: int, code: str, message: str
    ) -> None:
        self._transcription.failed(item_id, content_index, code, message)
        self._lifecycle.fail_waiting(code, message)
        self._lifecycle.start_ready(transcribing=self._transcription.busy)


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
