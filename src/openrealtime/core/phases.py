"""The phases of a response and the only moves between them: the transition table.

    waiting ──generate──> generating ──llm_finished──> speaking
                           │    ▲ │                         │
                call_tools │    │ └─complete / stop_at_limit┴──> completed / incomplete
                           ▼    │ resume
                       calling_tools
    any live phase ──cancel / fail──> cancelled / failed

A phase changes only through `advance`, by a trigger the table allows. When each trigger fires
is decided in `lifecycle.py`; what each phase outputs, in `responses.py`.
"""

from __future__ import annotations

from typing import Literal, Protocol


class _Phased(Protocol):
    id: str
    phase: Phase


# The `status` of a response on the wire; `in_progress` until it ends.
ResponseStatus = Literal["in_progress", "completed", "cancelled", "failed", "incomplete"]
# Why a response was cancelled (`status_details.reason`); None when the server ends the session.
CancelReason = Literal["turn_detected", "client_cancelled"] | None


# Literal strings rather than Enums: a response passes through the table on every delta, and
# str keys hash in C (an Enum member's hash and attribute access are Python-level calls).
Phase = Literal[
    "waiting",  # created; its context is still being transcribed
    "generating",  # the LLM (and the synthesizer) at work
    "speaking",  # the LLM has finished; the synthesizer has not
    "calling_tools",  # MCP calls run or await approval; then the LLM is called again
    "completed",
    "incomplete",  # the LLM stopped at max_output_tokens
    "cancelled",
    "failed",
]
Trigger = Literal[
    "generate",
    "output_text",  # an LLM text or tool-call delta
    "output_audio",  # synthesized audio
    "llm_finished",  # ... while the synthesizer is still speaking
    "call_tools",  # the LLM finished with MCP calls to run or approve
    "resume",  # their results are in (and the audio before them played out)
    "complete",
    "stop_at_limit",  # the LLM stopped at max_output_tokens
    "cancel",
    "fail",
]

_ENDINGS: dict[Trigger, Phase] = {
    "complete": "completed",
    "stop_at_limit": "incomplete",
    "cancel": "cancelled",
    "fail": "failed",
}

TRANSITIONS: dict[Phase, dict[Trigger, Phase]] = {
    "waiting": {"generate": "generating", "cancel": "cancelled", "fail": "failed"},
    "generating": {
        "output_text": "generating",
        "output_audio": "generating",
        "llm_finished": "speaking",
        "call_tools": "calling_tools",
        **_ENDINGS,
    },
    # Audio of the text before the calls may still be arriving.
    "calling_tools": {
        "output_audio": "calling_tools",
        "resume": "generating",
        "complete": "completed",  # the client's function calls in the same turn: its turn
        "cancel": "cancelled",
        "fail": "failed",
    },
    "speaking": {"output_audio": "speaking", **_ENDINGS},
    "completed": {},
    "incomplete": {},
    "cancelled": {},
    "failed": {},
}

STATUS: dict[Phase, ResponseStatus] = {
    "waiting": "in_progress",
    "generating": "in_progress",
    "speaking": "in_progress",
    "calling_tools": "in_progress",
    "completed": "completed",
    "incomplete": "incomplete",
    "cancelled": "cancelled",
    "failed": "failed",
}


class LifecycleError(RuntimeError):
    """A trigger the response's phase does not allow: a bug in the core or the driver."""


def advance(response: _Phased, trigger: Trigger) -> None:
    """Move `response` on by `trigger`, as the table allows."""
    next_phase = TRANSITIONS[response.phase].get(trigger)
    if next_phase is None:
        raise LifecycleError(
            f"response {response.id}: {trigger} is not allowed in phase {response.phase}"
        )
    response.phase = next_phase
