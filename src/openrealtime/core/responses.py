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
- A tool call whose name maps to an MCP tool (`mcp.py`) opens an `mcp_call` item instead,
  whose arguments stream as `response.mcp_call_arguments.delta`; or, when the tool needs
  approval, an `mcp_approval_request` item, which closes when the LLM finishes. When the LLM
  finishes, each `mcp_call` gets `response.mcp_call_arguments.done` and
  `response.mcp_call.in_progress`, and stays open until its result: then its `output` or
  `error`, `response.mcp_call.completed` or `.failed`, and the item is done. An approved
  request opens its `mcp_call` then (with `approval_request_id`); a declined one opens none.
- The output counts toward `max_output_tokens` as usage estimates it (message text and
  function-call arguments, 4 characters per token, over every round of the response), so
  the limit holds even with an LLM backend that ignores `max_tokens` (`lifecycle.py`).
- `finish` closes every open item (as `incomplete` unless the response completed) and emits
  `response.done` with the status of the phase it ended in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pybase64

from ..audio.formats import AudioFormat
from ..ids import new_id
from ..protocol import mcp as mev
from ..protocol import server_events as ev
from ..protocol.items import (
    ContentPart,
    FunctionCallItem,
    ItemStatus,
    McpApprovalResponseItem,
    MessageItem,
    dump_item,
)
from ..protocol.mcp import McpApprovalRequestItem, McpCallItem
from ..protocol.server_events import ServerEvent
from .conversation import Conversation
from .effects import RunMcpCall
from .mcp import McpTarget
from .phases import STATUS, Phase, ResponseStatus
from .spoken import SpokenAudio
from .usage import response_usage, tokens_for_chars


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
    item: FunctionCallItem | McpCallItem | McpApprovalRequestItem
    output_index: int
    arguments: list[str] = field(default_factory=list)
    mcp: McpTarget | None = None


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
        # MCP: function names the LLM may call that are MCP tools (set with each request),
        # calls running, approval requests awaiting an answer (by item id), answers received.
        self.mcp_targets: dict[str, McpTarget] = {}
        self._mcp_running: dict[str, _OpenCall] = {}
        self._approvals: dict[str, _OpenCall] = {}
        self.approval_answers: list[McpApprovalResponseItem] = []
        self.rounds = 0  # times the LLM was called again with tool results
        self.called_functions = False  # the LLM called the client's functions this round
        self._previous_ids: dict[str, str | None] = {}
        self.llm_done = False
        self.llm_stopped = False  # at max_output_tokens, by StopGenerating: its stream is dropped
        self.finish_reason = "stop"
        self._usage: Any = None
        self.audio_out_ms = 0.0
        self._output_chars = 0  # what usage estimates output text tokens from

    @property
    def reached_token_limit(self) -> bool:
        limit = self.settings.max_output_tokens
        return limit != "inf" and tokens_for_chars(self._output_chars) >= int(limit)

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
        self._output_chars += len(text)
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
                pybase64.b64encode_as_string(encoded),  # ~10x binascii's speed
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
            call = self._calls[index] = self._open_call(call_id, name or "")
        elif name and not call.item.name:
            call.item.name = name
        if arguments:
            call.arguments.append(arguments)
            if isinstance(call.item, FunctionCallItem):
                self._output_chars += len(arguments)
                self._emit(
                    ev.response_function_call_arguments_delta(
                        self.id, call.id, call.output_index, call.call_id, arguments
                    )
                )
            elif isinstance(call.item, McpCallItem):
                self._emit(
                    mev.response_mcp_call_arguments_delta(
                        self.id, call.id, call.output_index, arguments
                    )
                )

    def _open_call(self, call_id: str | None, name: str) -> _OpenCall:
        target = self.mcp_targets.get(name)
        item_id, call_id = new_id("item"), call_id or new_id("call")
        item: FunctionCallItem | McpCallItem | McpApprovalRequestItem
        if target is None:
            self.called_functions = True
            item = FunctionCallItem(
                id=item_id,
                object="realtime.item",
                status="in_progress",
                call_id=call_id,
                name=name,
                arguments="",
            )
        elif target.needs_approval:
            item_id = new_id("mcpr")
            item = McpApprovalRequestItem(
                id=item_id, server_label=target.server.label, name=target.tool, arguments=""
            )
        else:
            item_id = new_id("mcp")
            item = McpCallItem(
                id=item_id, server_label=target.server.label, name=target.tool, arguments=""
            )
        call = _OpenCall(item_id, call_id, item, len(self.output), mcp=target)
        self._open_item(item)
        return call

    def llm_finished(self, finish_reason: str, usage: Any) -> list[RunMcpCall]:
        """Closes the tool calls; returns the MCP calls to run now."""
        self.llm_done = True
        self.finish_reason = finish_reason
        self._usage = usage
        # Arguments cut off by the token limit must not look runnable.
        call_status: ItemStatus = "incomplete" if finish_reason == "length" else "completed"
        runs: list[RunMcpCall] = []
        for index in sorted(self._calls):
            call = self._calls.pop(index)
            if call.mcp is None or finish_reason == "length":
                self._close_call(call, call_status)
            elif isinstance(call.item, McpApprovalRequestItem):
                call.item.arguments = "".join(call.arguments)
                self._approvals[call.id] = call
                self._close_item(call.item, call.output_index, "completed")
            else:
                runs.append(self._run(call))
        return runs

    # --- MCP calls ---------------------------------------------------------------------------

    @property
    def calling_tools(self) -> bool:
        """MCP calls are running or approval requests are unanswered."""
        return bool(self._mcp_running or self._approvals)

    def _run(self, call: _OpenCall) -> RunMcpCall:
        assert call.mcp is not None and isinstance(call.item, McpCallItem)
        item = call.item
        item.arguments = "".join(call.arguments)
        self._emit(
            mev.response_mcp_call_arguments_done(
                self.id, call.id, call.output_index, item.arguments
            )
        )
        self._emit(mev.response_mcp_call("in_progress", call.id, call.output_index))
        self._mcp_running[call.id] = call
        return RunMcpCall(self.id, call.id, call.mcp.server, call.mcp.tool, item.arguments)

    def approval_answered(self, answer: McpApprovalResponseItem) -> RunMcpCall | None:
        """The client's answer to one of this response's approval requests: approved, the
        call runs now (returned); declined, the LLM reads that from the answer item."""
        request = self._approvals.pop(answer.approval_request_id, None)
        if request is None:
            return None
        self.approval_answers.append(answer)
        if not answer.approve:
            return None
        assert request.mcp is not None
        item = McpCallItem(
            id=new_id("mcp"),
            server_label=request.mcp.server.label,
            name=request.mcp.tool,
            arguments="",
            approval_request_id=request.id,
        )
        call = _OpenCall(item.id, item.id, item, len(self.output), request.arguments, request.mcp)
        self._open_item(item)
        arguments = "".join(request.arguments)
        if arguments:
            self._emit(
                mev.response_mcp_call_arguments_delta(
                    self.id, item.id, call.output_index, arguments
                )
            )
        return self._run(call)

    def awaits_approval(self, request_id: str) -> bool:
        return request_id in self._approvals

    def mcp_call_done(self, item_id: str, output: str | None, error: dict[str, Any] | None) -> None:
        call = self._mcp_running.pop(item_id, None)
        if call is None:
            return
        item = call.item
        assert isinstance(item, McpCallItem)
        item.output, item.error = output, error
        if error is not None:
            self._emit(mev.response_mcp_call("failed", call.id, call.output_index))
        else:
            self._emit(mev.response_mcp_call("completed", call.id, call.output_index))
        self._close_item(item, call.output_index, "completed")

    def resume(self) -> None:
        """The tool results are in: the LLM is called again, in this same response."""
        self._close_message("completed")
        self.llm_done = False
        self.finish_reason = "stop"
        self.rounds += 1
        self.called_functions = False

    # --- ending ----------------------------------------------------------------------------

    def finish(self, details: dict[str, Any] | None = None) -> None:
        """Close what is open and send `response.done`, once the phase has ended."""
        item_status: ItemStatus = "completed" if self.status == "completed" else "incomplete"
        self._close_message(item_status)
        for index in sorted(self._calls):
            self._close_call(self._calls.pop(index), item_status)
        for call in self._mcp_running.values():  # cut short: no output
            self._close_item(call.item, call.output_index, item_status)
        self._mcp_running.clear()
        self._approvals.clear()
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
        if "status" in type(item).model_fields:  # MCP items have none
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
        if isinstance(item, McpCallItem):
            self._emit(
                mev.response_mcp_call_arguments_done(
                    self.id, call.id, call.output_index, item.arguments
                )
            )
            self._close_item(item, call.output_index, status)
            return
        if isinstance(item, McpApprovalRequestItem):
            self._close_item(item, call.output_index, status)
            return
        self._emit(
            ev.response_function_call_arguments_done(
                self.id, call.id, call.output_index, call.call_id, item.name, item.arguments
            )
        )
        self._close_item(item, call.output_index, status)
