"""The output of one response: its items, content parts and deltas, and `response.done`.

When a response moves from phase to phase is decided in `lifecycle.py`; this module builds
what each step sends. Rules:
- Output items open lazily: the first text delta opens an assistant message (one content part,
  `output_text`, or `output_audio` with its transcript); the first piece of a tool call opens
  a `function_call` item. Opening a tool call closes an open text message first; a spoken one
  stays open until its audio is done.
- Each item opens with `response.output_item.added`, then (in the default conversation)
  `conversation.item.added`; a message then gets `response.content_part.added`.
- An audio message finishes only when both its transcript (the LLM) and its audio (the
  synthesizer) have finished.
- Closing emits, in order: `*.done` for the text/transcript/audio, `response.content_part.done`,
  `response.output_item.done`, `conversation.item.done`.
- `finish` closes every open item (as `incomplete` unless the response completed) and emits
  `response.done` with the status of the phase it ended in.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..audio.formats import AudioFormat
from ..ids import new_id
from ..protocol import server_events as ev
from ..protocol.items import ContentPart, FunctionCallItem, ItemStatus, MessageItem, dump_item
from ..protocol.server_events import ServerEvent
from .conversation import Conversation
from .phases import STATUS, Phase, ResponseStatus
from .spoken import SpokenAudio
from .usage import response_usage


@dataclass(slots=True)
class ResponseSettings:
    """The session settings as overridden by this `response.create`."""

    output_modalities: list[str]
    voice: str
    audio_format: dict[str, Any]
    max_output_tokens: int | str
    metadata: dict[str, str] | None
    conversation: bool  # False for an out-of-band response (`conversation: "none"`)


@dataclass(slots=True)
class _OpenMessage:
    id: str
    item: MessageItem
    output_index: int
    text: list[str] = field(default_factory=list)
    spoken: SpokenAudio | None = None
    audio_done: bool = False


@dataclass(slots=True)
class _OpenCall:
    id: str
    call_id: str
    item: FunctionCallItem
    output_index: int
    arguments: list[str] = field(default_factory=list)


class Response:
    def __init__(
        self,
        response_id: str,
        settings: ResponseSettings,
        *,
        emit: Callable[[ServerEvent], None],
        conversation: Conversation,
        conversation_id: str | None,
    ) -> None:
        """`conversation` receives the output items when `settings.conversation` is set."""
        self.id = response_id
        self.settings = settings
        self.phase: Phase = "waiting"  # moved on only by lifecycle.advance
        self._emit = emit
        self._conversation = conversation
        self._conversation_id = conversation_id
        self._input_estimate: dict[str, int] = {}
        self.output: list[Any] = []
        self._message: _OpenMessage | None = None
        self._calls: dict[int, _OpenCall] = {}
        self._previous_ids: dict[str, str | None] = {}
        self.llm_done = False
        self.finish_reason = "stop"
        self._usage: Any = None
        self.audio_out_ms = 0.0

    @property
    def speaks(self) -> bool:
        return self.settings.output_modalities == ["audio"]

    @property
    def status(self) -> ResponseStatus:
        return STATUS[self.phase]

    @property
    def awaiting_audio(self) -> bool:
        """A spoken message is open whose audio the synthesizer has not finished."""
        message = self._message
        return message is not None and self.speaks and not message.audio_done

    # --- the response object -----------------------------------------------------------------

    def to_wire(
        self, *, usage: dict[str, Any] | None = None, details: Any = None
    ) -> dict[str, Any]:
        return {
            "object": "realtime.response",
            "id": self.id,
            "status": self.status,
            "status_details": details,
            "output": [dump_item(item) for item in self.output],
            "conversation_id": self._conversation_id,
            "output_modalities": self.settings.output_modalities,
            "max_output_tokens": self.settings.max_output_tokens,
            "audio": {
                "output": {"format": self.settings.audio_format, "voice": self.settings.voice}
            },
            "usage": usage,
            "metadata": self.settings.metadata,
        }

    def start(self) -> None:
        self._emit(ev.response_created(self.to_wire()))

    def set_input_estimate(self, estimate: dict[str, int]) -> None:
        """Token estimate of the request, for usage when the backend reports none."""
        self._input_estimate = estimate

    def spoken_item(self) -> MessageItem | None:
        """The message whose audio is being produced, if any."""
        message = self._message
        return message.item if message is not None and message.spoken is not None else None

    # --- backend events --------------------------------------------------------------------

    def text_delta(self, text: str) -> None:
        if not text:
            return
        message = self._message or self._open_message()
        message.text.append(text)
        builder = (
            ev.response_output_audio_transcript_delta
            if self.speaks
            else ev.response_output_text_delta
        )
        self._emit(builder(self.id, message.id, message.output_index, 0, text))

    def audio_delta(self, encoded: bytes, duration_ms: float) -> None:
        """Output audio for the open message, already encoded in the session's format."""
        message = self._message or self._open_message()
        assert message.spoken is not None
        message.spoken.encoded += encoded
        self.audio_out_ms += duration_ms
        self._emit(
            ev.response_output_audio_delta(
                self.id,
                message.id,
                message.output_index,
                0,
                base64.b64encode(encoded).decode(),
            )
        )

    def speech_mark(self, words_spoken: int) -> None:
        """The synthesizer finished a piece: so many words of the transcript are now audio."""
        if self._message is not None and self._message.spoken is not None:
            spoken = self._message.spoken
            spoken.marks.append((spoken.duration_ms, words_spoken))

    def audio_finished(self) -> None:
        if self._message is not None:
            self._message.audio_done = True

    def tool_call_delta(
        self, index: int, call_id: str | None, name: str | None, arguments: str
    ) -> None:
        call = self._calls.get(index)
        if call is None:
            if not self.speaks:  # spoken text may still be synthesizing; it closes at the end
                self._close_message("completed")
            item_id, call_id = new_id("item"), call_id or new_id("call")
            item = FunctionCallItem(
                id=item_id,
                object="realtime.item",
                status="in_progress",
                call_id=call_id,
                name=name or "",
                arguments="",
            )
            call = self._calls[index] = _OpenCall(item_id, call_id, item, len(self.output))
            self._open_item(item)
        elif name and not call.item.name:
            call.item.name = name
        if arguments:
            call.arguments.append(arguments)
            self._emit(
                ev.response_function_call_arguments_delta(
                    self.id, call.id, call.output_index, call.call_id, arguments
                )
            )

    def llm_finished(self, finish_reason: str, usage: Any) -> None:
        self.llm_done = True
        self.finish_reason = finish_reason
        self._usage = usage
        # Arguments cut off by the token limit must not look runnable.
        call_status: ItemStatus = "incomplete" if finish_reason == "length" else "completed"
        for index in sorted(self._calls):
            self._close_call(self._calls.pop(index), call_status)

    # --- ending ----------------------------------------------------------------------------

    def finish(self, details: dict[str, Any] | None = None) -> None:
        """Close what is open and send `response.done`, once the phase has ended."""
        item_status: ItemStatus = "completed" if self.status == "completed" else "incomplete"
        self._close_message(item_status)
        for index in sorted(self._calls):
            self._close_call(self._calls.pop(index), item_status)
        usage = response_usage(
            self._usage,
            output_text="".join(
                part.text or part.transcript or ""
                for item in self.output
                if isinstance(item, MessageItem)
                for part in item.content
            )
            + "".join(item.arguments for item in self.output if isinstance(item, FunctionCallItem)),
            output_audio_ms=self.audio_out_ms,
            input_estimate=self._input_estimate,
        )
        self._emit(ev.response_done(self.to_wire(usage=usage, details=details)))

    # --- items -----------------------------------------------------------------------------

    def _open_message(self) -> _OpenMessage:
        item_id = new_id("item")
        item = MessageItem(
            id=item_id,
            object="realtime.item",
            status="in_progress",
            role="assistant",
            content=[],
        )
        spoken = (
            SpokenAudio(AudioFormat(self.settings.audio_format["type"])) if self.speaks else None
        )
        self._message = _OpenMessage(item_id, item, len(self.output), spoken=spoken)
        self._open_item(item)
        # Content-part events name the part "audio" / "text"; the item itself says output_*.
        part = {"type": "audio", "transcript": ""} if self.speaks else {"type": "text", "text": ""}
        self._emit(
            ev.response_content_part_added(self.id, item_id, self._message.output_index, 0, part)
        )
        return self._message

    def _open_item(self, item: Any) -> None:
        self.output.append(item)
        self._emit(ev.response_output_item_added(self.id, len(self.output) - 1, dump_item(item)))
        if self.settings.conversation:
            previous_id = self._conversation.insert(item)
            self._previous_ids[item.id] = previous_id
            self._emit(ev.conversation_item_added(dump_item(item), previous_id))

    def _close_item(self, item: Any, output_index: int, status: ItemStatus) -> None:
        item.status = status
        wire = dump_item(item)
        self._emit(ev.response_output_item_done(self.id, output_index, wire))
        if self.settings.conversation:
            self._emit(ev.conversation_item_done(wire, self._previous_ids.get(item.id)))

    def _close_message(self, status: ItemStatus) -> None:
        message, self._message = self._message, None
        if message is None:
            return
        item, item_id, index = message.item, message.id, message.output_index
        text = "".join(message.text)
        if self.speaks:
            part = ContentPart(type="output_audio", transcript=text)
            assert message.spoken is not None
            if item_id in self._conversation:  # kept for retrieve and truncate
                self._conversation.output_audio[item_id] = message.spoken
            self._emit(ev.response_output_audio_done(self.id, item_id, index, 0))
            self._emit(ev.response_output_audio_transcript_done(self.id, item_id, index, 0, text))
        else:
            part = ContentPart(type="output_text", text=text)
            self._emit(ev.response_output_text_done(self.id, item_id, index, 0, text))
        item.content = [part]
        event_part = (
            {"type": "audio", "transcript": text} if self.speaks else {"type": "text", "text": text}
        )
        self._emit(ev.response_content_part_done(self.id, item_id, index, 0, event_part))
        self._close_item(item, index, status)

    def _close_call(self, call: _OpenCall, status: ItemStatus) -> None:
        item = call.item
        item.arguments = "".join(call.arguments)
        self._emit(
            ev.response_function_call_arguments_done(
                self.id, call.id, call.output_index, call.call_id, item.name, item.arguments
            )
        )
        self._close_item(item, call.output_index, status)
