"""The session core: one per connection, sans-I/O.

Client events and backend results go in; server events and effects come out, in order, through
`drain()`. It never awaits, never reads the clock and never touches a socket. Every client
mistake becomes an `error` event and the session goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..backends.llm.base import Finished, LlmEvent, TextDelta, ToolCallDelta
from ..ids import new_id
from ..protocol import client_events as ce
from ..protocol import errors
from ..protocol import server_events as ev
from ..protocol.errors import ProtocolError
from ..protocol.items import ItemReference, dump_item
from ..protocol.session import (
    READ_ONLY_FIELDS,
    RealtimeSession,
    VoiceId,
    merge_session_update,
)
from .context import build_request, estimate_input
from .conversation import Conversation
from .effects import CancelResponse, Effect, GenerateResponse
from .responses import Response, ResponseSettings

log = logging.getLogger(__name__)

Output = dict[str, Any] | Effect


class Session:
    def __init__(self, config: RealtimeSession | None = None, *, session_id: str | None = None) -> None:
        self.id = session_id or new_id("sess")
        self.config = config or RealtimeSession()
        self.config.id = self.id
        self.conversation = Conversation()
        self.conversation_id = new_id("conv")
        self.outbox: list[Output] = []
        self.responses: dict[str, Response] = {}  # active responses only
        self._output_audio: dict[str, bytes] = {}
        self._voice_locked = False
        self._handlers: dict[str, Callable[[Any], None]] = {
            "session.update": self._session_update,
            "conversation.item.create": self._item_create,
            "conversation.item.retrieve": self._item_retrieve,
            "conversation.item.delete": self._item_delete,
            "conversation.item.truncate": self._item_truncate,
            "response.create": self._response_create,
            "response.cancel": self._response_cancel,
            "input_audio_buffer.append": self._audio_append,
            "input_audio_buffer.commit": self._audio_commit,
            "input_audio_buffer.clear": self._audio_clear,
            "output_audio_buffer.clear": self._output_audio_clear,
        }

    # --- I/O surface ---------------------------------------------------------------------------

    def open(self) -> None:
        self.outbox.append(ev.session_created(self.session_wire()))

    def drain(self) -> list[Output]:
        out, self.outbox = self.outbox, []
        return out

    def handle(self, event: Any) -> None:
        """Apply one parsed client event."""
        try:
            self._handlers[event.type](event)
        except ProtocolError as error:
            error.event_id = error.event_id or event.event_id
            self.reject(error)

    def reject(self, error: ProtocolError) -> None:
        """Report a client mistake (including ones found before parsing, by the transport)."""
        self.outbox.append(ev.error(error.as_error()))

    def session_wire(self) -> dict[str, Any]:
        return self.config.model_dump(mode="json")

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
        new_voice = update.get("audio", {}).get("output", {}).get("voice")
        if self._voice_locked and new_voice is not None and new_voice != self._voice_value():
            raise ProtocolError(
                "Cannot update a conversation's voice if assistant audio is present.",
                errors.VOICE_LOCKED,
                "session.audio.output.voice",
            )
        merged = merge_session_update(self.session_wire(), update)
        self.config = RealtimeSession.model_validate(merged)
        self.outbox.append(ev.session_updated(self.session_wire()))

    def _voice_value(self) -> Any:
        voice = self.config.audio.output.voice
        return voice.model_dump() if isinstance(voice, VoiceId) else voice

    # --- conversation ----------------------------------------------------------------------

    def _item_create(self, event: ce.ConversationItemCreate) -> None:
        item = event.item
        item.id = item.id or new_id("item")
        item.object = "realtime.item"
        if hasattr(item, "status"):
            item.status = "completed"
        previous_id = self.conversation.insert(item, event.previous_item_id)
        wire = dump_item(item)
        self.outbox.append(ev.conversation_item_added(wire, previous_id))
        self.outbox.append(ev.conversation_item_done(wire, previous_id))

    def _item_retrieve(self, event: ce.ConversationItemRetrieve) -> None:
        item = self.conversation.get(event.item_id)
        self.outbox.append(ev.conversation_item_retrieved(dump_item(item)))

    def _item_delete(self, event: ce.ConversationItemDelete) -> None:
        self.conversation.delete(event.item_id)
        self._output_audio.pop(event.item_id, None)
        self.outbox.append(ev.conversation_item_deleted(event.item_id))

    def _item_truncate(self, event: ce.ConversationItemTruncate) -> None:
        raise ProtocolError(
            "Only assistant audio can be truncated, and this session has produced none yet.",
            errors.INVALID_VALUE,
            "item_id",
        )

    # --- responses -------------------------------------------------------------------------

    def _response_create(self, event: ce.ResponseCreate) -> None:
        params = event.response or ce.ResponseParams()
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
        items = self.conversation.items() if params.input is None else self._resolve_input(params.input)
        request = build_request(
            instructions=config.instructions if params.instructions is None else params.instructions,
            items=items,
            tools=config.tools if params.tools is None else params.tools,
            tool_choice=params.tool_choice or config.tool_choice,
            temperature=params.temperature if params.temperature is not None else config.temperature,
            max_output_tokens=params.max_output_tokens or config.max_output_tokens,
            parallel_tool_calls=params.parallel_tool_calls
            if params.parallel_tool_calls is not None
            else config.parallel_tool_calls,
        )
        audio_out = params.audio.output if params.audio and params.audio.output else None
        voice = (audio_out.voice if audio_out and audio_out.voice else None) or config.audio.output.voice
        audio_format = (audio_out.format if audio_out and audio_out.format else None) or config.audio.output.format
        settings = ResponseSettings(
            output_modalities=list(params.output_modalities or config.output_modalities),
            voice=voice.id if isinstance(voice, VoiceId) else voice,
            audio_format=audio_format.model_dump(),
            max_output_tokens=params.max_output_tokens or config.max_output_tokens,
            metadata=params.metadata,
            conversation=in_conversation,
        )
        response = Response(
            new_id("resp"),
            settings,
            host=self,
            conversation_id=self.conversation_id if in_conversation else None,
            input_estimate=estimate_input(request, 0.0),
        )
        self.responses[response.id] = response
        response.start()
        self.outbox.append(
            GenerateResponse(
                response.id,
                request,
                voice=settings.voice if response.speaks else None,
                speed=config.audio.output.speed,
            )
        )

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
            response = self._conversation_response() or next(iter(self.responses.values()), None)
            if response is None:
                raise ProtocolError(
                    "Cancellation failed: no active response found.", errors.NO_ACTIVE_RESPONSE
                )
        self.cancel_response(response.id, "client_cancelled")

    def cancel_response(self, response_id: str, reason: str) -> None:
        response = self.responses.pop(response_id, None)
        if response is None:
            return
        self.outbox.append(CancelResponse(response_id))
        response.finish("cancelled", {"type": "cancelled", "reason": reason})
        self._voice_locked |= response.audio_out_ms > 0

    # --- backend results -------------------------------------------------------------------

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
        self._forget_if_done(response)

    def on_response_audio(self, response_id: str, encoded: bytes, duration_ms: float) -> None:
        response = self.responses.get(response_id)
        if response is not None and encoded:
            self._voice_locked = True
            response.audio_delta(encoded, duration_ms)

    def on_response_audio_done(self, response_id: str) -> None:
        response = self.responses.get(response_id)
        if response is not None:
            response.audio_finished()
            self._forget_if_done(response)

    def on_response_failed(self, response_id: str, code: str, message: str) -> None:
        response = self.responses.pop(response_id, None)
        if response is None:
            return
        response.finish(
            "failed",
            {"type": "failed", "error": {"type": errors.SERVER_ERROR, "code": code, "message": message}},
        )

    def _forget_if_done(self, response: Response) -> None:
        if not response.active:
            self.responses.pop(response.id, None)

    # ResponseHost
    def add_output_item(self, item: Any) -> str | None:
        return self.conversation.insert(item)

    def keep_output_audio(self, item_id: str, encoded: bytes) -> None:
        self._output_audio[item_id] = encoded

    # --- input audio (issue: voice) ----------------------------------------------------------

    def _audio_append(self, event: ce.InputAudioBufferAppend) -> None:
        raise ProtocolError("Audio input is not available yet.", errors.NOT_SUPPORTED)

    def _audio_commit(self, event: ce.InputAudioBufferCommit) -> None:
        raise ProtocolError("Audio input is not available yet.", errors.NOT_SUPPORTED)

    def _audio_clear(self, event: ce.InputAudioBufferClear) -> None:
        raise ProtocolError("Audio input is not available yet.", errors.NOT_SUPPORTED)

    def _output_audio_clear(self, event: ce.OutputAudioBufferClear) -> None:
        """WebSocket sessions have no server-side playback buffer: accepted as a no-op."""
