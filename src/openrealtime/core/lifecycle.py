"""The lifecycle of responses, from `response.created` to `response.done`.

Everything that moves a response from one phase to the next lives here and in `phases.py`
(the transition table): `ResponseLifecycle` is the one place that fires its triggers.
(`responses.py` only builds the output items and events of a response, in whatever phase
this module has put it.)

Rules:
- One active response per conversation: `response.create` in the default conversation while
  one is active there is refused (`conversation_already_has_active_response`). Out-of-band
  responses (`conversation: "none"`) run alongside it and each other.
- A response starts `waiting`: `response.created` goes out at once. A response in the
  default conversation waits there while any user audio item is being transcribed, because
  the LLM reads the user's words; then `generate` asks for generation (`GenerateResponse`,
  built only then, so the request holds the transcripts). Out-of-band responses never wait.
- A failed transcription fails the conversation's waiting responses: the model would answer
  without the user's words.
- While `generating`, the LLM's text and tool calls and the synthesizer's audio are output.
  When the LLM finishes, a spoken message whose audio is still being synthesized moves the
  response to `speaking`, where only audio is output; otherwise the response ends.
- When the LLM finishes with MCP calls (`responses.py`, `mcp.py`), the response moves to
  `calling_tools`: the calls run (`RunMcpCall`), approval requests wait for the client's
  answer. Once every call has its result, every request its answer, and the audio of the text
  before them has played out, the LLM is called again in the same response (`resume`: a new
  `GenerateResponse` for the same response id, whose request holds the results), at most
  `mcp.MAX_TOOL_ROUNDS` times; after that the LLM is offered no MCP tools. If the LLM also
  called the client's functions in that turn, the response ends there instead (`completed`):
  their outputs are the client's to give.
- When the response's output reaches `max_output_tokens` (counted as usage counts it,
  `responses.py`) while the LLM still streams, the LLM is stopped (`StopGenerating`) and the
  response goes on as if the LLM had stopped at the limit: a backend that ignores
  `max_tokens` cannot run past it. The rest of that stream is dropped.
- It ends `completed`, or `incomplete` when the LLM stopped at `max_output_tokens`; `cancelled` by
  `response.cancel` (the named response, or else the default conversation's: out-of-band
  ones go on), barge-in, or the server ending the session; `failed` when a backend fails.
  Cancelling also stops the backends' work (`CancelResponse`).
  Ending sends `response.done` and removes the response from `active`: later backend events
  for it are dropped.
- A default-conversation response that ends by itself (completed or incomplete) is returned
  to the session, which starts the idle timeout from it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..backends.llm.base import Finished, LlmEvent, TextDelta, ToolCallDelta
from ..protocol import errors
from ..protocol.errors import ProtocolError
from ..protocol.items import McpApprovalResponseItem
from .effects import CancelResponse, Effect, GenerateResponse, StopGenerating
from .phases import CancelReason, Trigger, advance
from .responses import Response


class ResponseLifecycle:
    """The active responses of one session, and every trigger that moves them."""

    def __init__(self, emit: Callable[[dict[str, Any] | Effect], None]) -> None:
        self._emit = emit
        self.active: dict[str, Response] = {}  # by id, until `response.done`
        # Responses in WAITING, with what builds their request once they may generate.
        self._waiting: dict[str, Callable[[], GenerateResponse]] = {}
        # What builds each active response's request, for calling the LLM again after tools.
        self._generations: dict[str, Callable[[], GenerateResponse]] = {}

    def in_conversation(self) -> Response | None:
        """The default conversation's active response (there is at most one)."""
        return next((r for r in self.active.values() if r.settings.conversation), None)

    def refuse_second(self, in_conversation: bool) -> None:
        """The one-active-response rule, checked before a response is made."""
        if in_conversation and (active := self.in_conversation()) is not None:
            raise ProtocolError(
                f"Conversation already has an active response in progress: {active.id}. "
                "Wait until the response is finished before creating a new one.",
                errors.ACTIVE_RESPONSE,
            )

    def add(
        self,
        response: Response,
        generation: Callable[[], GenerateResponse],
        *,
        transcribing: bool,
    ) -> None:
        self.refuse_second(response.settings.conversation)  # the session checked it earlier, too
        self.active[response.id] = response
        response.start()
        self._waiting[response.id] = generation
        self._generations[response.id] = generation
        self.start_ready(transcribing=transcribing)

    def start_ready(self, *, transcribing: bool) -> None:
        """GENERATE each waiting response that need not wait for a transcript."""
        for response_id in list(self._waiting):
            response = self.active[response_id]
            if response.settings.conversation and transcribing:
                continue
            advance(response, "generate")
            self._emit(self._waiting.pop(response_id)())

    # --- backend results ---------------------------------------------------------------------

    def llm_event(self, response_id: str, event: LlmEvent) -> Response | None:
        """Returns the response if this event ended it by itself."""
        response = self.active.get(response_id)
        if response is None or response.llm_stopped:
            return None  # cancelled, finished or stopped at the limit: late events are dropped
        if isinstance(event, TextDelta):
            advance(response, "output_text")
            response.text_delta(event.text)
        elif isinstance(event, ToolCallDelta):
            advance(response, "output_text")
            response.tool_call_delta(event.index, event.call_id, event.name, event.arguments)
        if not isinstance(event, Finished) and response.reached_token_limit:
            self._emit(StopGenerating(response.id))
            response.llm_stopped = True
            event = Finished("length")
        if isinstance(event, Finished):
            runs = response.llm_finished(event.finish_reason, event.usage)
            if response.calling_tools:
                advance(response, "call_tools")
                for run in runs:
                    self._emit(run)
                return None
            if response.awaiting_audio:
                advance(response, "llm_finished")
        return self._end_if_done(response)

    # --- MCP calls -----------------------------------------------------------------------------

    def mcp_call_done(
        self, response_id: str, item_id: str, output: str | None, error: dict[str, Any] | None
    ) -> Response | None:
        """Returns the response if this ended it."""
        response = self.active.get(response_id)
        if response is None:
            return None
        response.mcp_call_done(item_id, output, error)
        return self._resume_if_ready(response)

    def approval_answered(self, answer: McpApprovalResponseItem) -> Response | None:
        """An `mcp_approval_response` item: the response that asked goes on. Returns the
        response if this ended it."""
        for response in list(self.active.values()):
            if response.awaits_approval(answer.approval_request_id):
                run = response.approval_answered(answer)
                if run is not None:
                    self._emit(run)
                return self._resume_if_ready(response)
        return None

    def _resume_if_ready(self, response: Response) -> Response | None:
        """Returns the response if it ended instead: the LLM also called the client's
        functions, whose outputs only the client can give (then `response.create`)."""
        if response.phase != "calling_tools" or response.calling_tools or response.awaiting_audio:
            return None
        if response.called_functions:
            self._end(response, "complete", None)
            return response
        response.resume()
        advance(response, "resume")
        self._emit(self._generations[response.id]())
        return None

    def audio(self, response_id: str, encoded: bytes, duration_ms: float) -> bool:
        """Returns whether the audio was taken (the response is still active)."""
        response = self.active.get(response_id)
        if response is None or not encoded:
            return False
        advance(response, "output_audio")
        response.audio_delta(encoded, duration_ms)
        return True

    def speech_mark(self, response_id: str, words_spoken: int) -> None:
        response = self.active.get(response_id)
        if response is not None:
            response.speech_mark(words_spoken)

    def audio_done(self, response_id: str) -> Response | None:
        """Returns the response if this ended it by itself."""
        response = self.active.get(response_id)
        if response is None:
            return None
        response.audio_finished()
        if response.phase == "calling_tools":
            return self._resume_if_ready(response)
        return self._end_if_done(response)

    def _end_if_done(self, response: Response) -> Response | None:
        if not response.llm_done or response.awaiting_audio:
            return None
        if response.finish_reason == "length":
            self._end(
                response,
                "stop_at_limit",
                {"type": "incomplete", "reason": "max_output_tokens"},
            )
        else:
            self._end(response, "complete", None)
        return response

    # --- ending early ------------------------------------------------------------------------

    def cancel(self, response_id: str, reason: CancelReason) -> Response | None:
        response = self.active.get(response_id)
        if response is None:
            return None
        self._emit(CancelResponse(response_id))
        self._end(response, "cancel", {"type": "cancelled", "reason": reason})
        return response

    def cancel_requested(self, response_id: str | None) -> None:
        """`response.cancel`: the named response, or else the default conversation's (then
        out-of-band responses go on)."""
        if response_id is not None:
            if response_id not in self.active:
                raise ProtocolError(
                    f"Response '{response_id}' is not in progress; nothing to cancel.",
                    errors.NO_ACTIVE_RESPONSE,
                    "response_id",
                )
        elif (response := self.in_conversation()) is not None:
            response_id = response.id
        else:
            raise ProtocolError(
                "Cancellation failed: no active response found.", errors.NO_ACTIVE_RESPONSE
            )
        self.cancel(response_id, "client_cancelled")

    def fail(self, response_id: str, code: str, message: str) -> None:
        response = self.active.get(response_id)
        if response is None:
            return
        error = {"type": errors.SERVER_ERROR, "code": code, "message": message}
        self._end(response, "fail", {"type": "failed", "error": error})

    def fail_waiting(self, code: str, message: str) -> None:
        """A transcript failed: fail the conversation's responses that were waiting for it."""
        for response_id in list(self._waiting):
            if self.active[response_id].settings.conversation:
                self.fail(response_id, code, f"transcription failed: {message}")

    def _end(self, response: Response, trigger: Trigger, details: dict[str, Any] | None) -> None:
        advance(response, trigger)
        del self.active[response.id]
        self._waiting.pop(response.id, None)
        self._generations.pop(response.id, None)
        response.finish(details)

    def close(self) -> None:
        """The connection is gone: drop what is in flight, ending nothing."""
        self.active.clear()
        self._waiting.clear()
        self._generations.clear()
