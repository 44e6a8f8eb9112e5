"""The lifecycle of responses, from `response.created` to `response.done`.

Everything that moves a response from one phase to the next lives here: the transition table,
and `ResponseLifecycle`, the one place that fires its triggers. (`responses.py` only builds the
output items and events of a response, in whatever phase this module has put it.)

    WAITING ──GENERATE──> GENERATING ──LLM_FINISHED──> SPEAKING
                              │                            │
                              └──COMPLETE / STOP_AT_LIMIT──┴──> COMPLETED / INCOMPLETE
    any live phase ──CANCEL / FAIL──> CANCELLED / FAILED

Rules:
- One active response per conversation: `response.create` in the default conversation while
  one is active there is refused (`conversation_already_has_active_response`). Out-of-band
  responses (`conversation: "none"`) run alongside it and each other.
- A response starts in WAITING: `response.created` goes out at once. A response in the
  default conversation waits there while any user audio item is being transcribed, because
  the LLM reads the user's words; then GENERATE asks for generation (`GenerateResponse`,
  built only then, so the request holds the transcripts). Out-of-band responses never wait.
- A failed transcription fails the conversation's waiting responses: the model would answer
  without the user's words.
- While GENERATING, the LLM's text and tool calls and the synthesizer's audio are output.
  When the LLM finishes, a spoken message whose audio is still being synthesized moves the
  response to SPEAKING, where only audio is output; otherwise the response ends.
- It ends COMPLETED, or INCOMPLETE when the LLM stopped at `max_output_tokens`; CANCELLED by
  `response.cancel` (the named response, or else the default conversation's: out-of-band
  ones go on), barge-in, or the server ending the session; FAILED when a backend fails.
  Cancelling also stops the backends' work (`CancelResponse`).
  Ending sends `response.done` and removes the response from `active`: later backend events
  for it are dropped.
- A default-conversation response that ends by itself (completed or incomplete) is returned
  to the session, which starts the idle timeout from it.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, Any, Literal

from ..backends.llm.base import Finished, LlmEvent, TextDelta, ToolCallDelta
from ..protocol import errors
from ..protocol.errors import ProtocolError
from .effects import CancelResponse, Effect, GenerateResponse

if TYPE_CHECKING:
    from .responses import Response

# The `status` of a response on the wire; `in_progress` until it ends.
ResponseStatus = Literal["in_progress", "completed", "cancelled", "failed", "incomplete"]
# Why a response was cancelled (`status_details.reason`); None when the server ends the session.
CancelReason = Literal["turn_detected", "client_cancelled"] | None


class Phase(Enum):
    WAITING = "waiting"  # created; its context is still being transcribed
    GENERATING = "generating"  # the LLM (and the synthesizer) at work
    SPEAKING = "speaking"  # the LLM has finished; the synthesizer has not
    COMPLETED = "completed"
    INCOMPLETE = "incomplete"
    CANCELLED = "cancelled"
    FAILED = "failed"

    @property
    def status(self) -> ResponseStatus:
        return _STATUS[self]


class Trigger(Enum):
    GENERATE = "generate"
    OUTPUT_TEXT = "output_text"  # an LLM text or tool-call delta
    OUTPUT_AUDIO = "output_audio"  # synthesized audio
    LLM_FINISHED = "llm_finished"  # ... while the synthesizer is still speaking
    COMPLETE = "complete"
    STOP_AT_LIMIT = "stop_at_limit"  # the LLM stopped at max_output_tokens
    CANCEL = "cancel"
    FAIL = "fail"


_ENDINGS = {
    Trigger.COMPLETE: Phase.COMPLETED,
    Trigger.STOP_AT_LIMIT: Phase.INCOMPLETE,
    Trigger.CANCEL: Phase.CANCELLED,
    Trigger.FAIL: Phase.FAILED,
}

TRANSITIONS: dict[Phase, dict[Trigger, Phase]] = {
    Phase.WAITING: {
        Trigger.GENERATE: Phase.GENERATING,
        Trigger.CANCEL: Phase.CANCELLED,
        Trigger.FAIL: Phase.FAILED,
    },
    Phase.GENERATING: {
        Trigger.OUTPUT_TEXT: Phase.GENERATING,
        Trigger.OUTPUT_AUDIO: Phase.GENERATING,
        Trigger.LLM_FINISHED: Phase.SPEAKING,
        **_ENDINGS,
    },
    Phase.SPEAKING: {Trigger.OUTPUT_AUDIO: Phase.SPEAKING, **_ENDINGS},
    Phase.COMPLETED: {},
    Phase.INCOMPLETE: {},
    Phase.CANCELLED: {},
    Phase.FAILED: {},
}

_STATUS: dict[Phase, ResponseStatus] = {
    Phase.WAITING: "in_progress",
    Phase.GENERATING: "in_progress",
    Phase.SPEAKING: "in_progress",
    Phase.COMPLETED: "completed",
    Phase.INCOMPLETE: "incomplete",
    Phase.CANCELLED: "cancelled",
    Phase.FAILED: "failed",
}


class LifecycleError(RuntimeError):
    """A trigger the response's phase does not allow: a bug in the core or the driver."""


def advance(response: Response, trigger: Trigger) -> None:
    """Move `response` on by `trigger`, as the table allows."""
    next_phase = TRANSITIONS[response.phase].get(trigger)
    if next_phase is None:
        raise LifecycleError(
            f"response {response.id}: {trigger.value} is not allowed in phase "
            f"{response.phase.value}"
        )
    response.phase = next_phase


class ResponseLifecycle:
    """The active responses of one session, and every trigger that moves them."""

    def __init__(self, emit: Callable[[dict[str, Any] | Effect], None]) -> None:
        self._emit = emit
        self.active: dict[str, Response] = {}  # by id, until `response.done`
        # Responses in WAITING, with what builds their request once they may generate.
        self._waiting: dict[str, Callable[[], GenerateResponse]] = {}

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
        self.start_ready(transcribing=transcribing)

    def start_ready(self, *, transcribing: bool) -> None:
        """GENERATE each waiting response that need not wait for a transcript."""
        for response_id in list(self._waiting):
            response = self.active[response_id]
            if response.settings.conversation and transcribing:
                continue
            advance(response, Trigger.GENERATE)
            self._emit(self._waiting.pop(response_id)())

    # --- backend results ---------------------------------------------------------------------

    def llm_event(self, response_id: str, event: LlmEvent) -> Response | None:
        """Returns the response if this event ended it by itself."""
        response = self.active.get(response_id)
        if response is None:
            return None  # cancelled or finished: late events are dropped
        if isinstance(event, TextDelta):
            advance(response, Trigger.OUTPUT_TEXT)
            response.text_delta(event.text)
        elif isinstance(event, ToolCallDelta):
            advance(response, Trigger.OUTPUT_TEXT)
            response.tool_call_delta(event.index, event.call_id, event.name, event.arguments)
        elif isinstance(event, Finished):
            if response.awaiting_audio:
                advance(response, Trigger.LLM_FINISHED)
            response.llm_finished(event.finish_reason, event.usage)
        return self._end_if_done(response)

    def audio(self, response_id: str, encoded: bytes, duration_ms: float) -> bool:
        """Returns whether the audio was taken (the response is still active)."""
        response = self.active.get(response_id)
        if response is None or not encoded:
            return False
        advance(response, Trigger.OUTPUT_AUDIO)
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
        return self._end_if_done(response)

    def _end_if_done(self, response: Response) -> Response | None:
        if not response.llm_done or response.awaiting_audio:
            return None
        if response.finish_reason == "length":
            self._end(
                response,
                Trigger.STOP_AT_LIMIT,
                {"type": "incomplete", "reason": "max_output_tokens"},
            )
        else:
            self._end(response, Trigger.COMPLETE, None)
        return response

    # --- ending early ------------------------------------------------------------------------

    def cancel(self, response_id: str, reason: CancelReason) -> Response | None:
        response = self.active.get(response_id)
        if response is None:
            return None
        self._emit(CancelResponse(response_id))
        self._end(response, Trigger.CANCEL, {"type": "cancelled", "reason": reason})
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
        self._end(response, Trigger.FAIL, {"type": "failed", "error": error})

    def fail_waiting(self, code: str, message: str) -> None:
        """A transcript failed: fail the conversation's responses that were waiting for it."""
        for response_id in list(self._waiting):
            if self.active[response_id].settings.conversation:
                self.fail(response_id, code, f"transcription failed: {message}")

    def _end(self, response: Response, trigger: Trigger, details: dict[str, Any] | None) -> None:
        advance(response, trigger)
        del self.active[response.id]
        self._waiting.pop(response.id, None)
        response.finish(details)

    def close(self) -> None:
        """The connection is gone: drop what is in flight, ending nothing."""
        self.active.clear()
        self._waiting.clear()
