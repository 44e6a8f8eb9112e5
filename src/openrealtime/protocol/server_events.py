"""Server events (GA names and shapes), one builder per wire type.

Builders return plain dicts ready for orjson: server events are only ever encoded, never
parsed, and the text and audio deltas are on the hot path. Each builder mints the `event_id`.
"""

from __future__ import annotations

from typing import Any

from ..ids import new_event_id

ServerEvent = dict[str, Any]

# The one event that carries audio: transports with a media track, and sidebands, leave it out.
AUDIO_DELTA = "response.output_audio.delta"


def _event(type_: str, **fields: Any) -> ServerEvent:
    return {"type": type_, "event_id": new_event_id(), **fields}


def error(error: dict[str, Any]) -> ServerEvent:
    return _event("error", error=error)


def session_created(session: dict[str, Any]) -> ServerEvent:
    return _event("session.created", session=session)


def session_updated(session: dict[str, Any]) -> ServerEvent:
    return _event("session.updated", session=session)


def conversation_item_added(item: dict[str, Any], previous_item_id: str | None) -> ServerEvent:
    return _event("conversation.item.added", previous_item_id=previous_item_id, item=item)


def conversation_item_done(item: dict[str, Any], previous_item_id: str | None) -> ServerEvent:
    return _event("conversation.item.done", previous_item_id=previous_item_id, item=item)


def conversation_item_retrieved(item: dict[str, Any]) -> ServerEvent:
    return _event("conversation.item.retrieved", item=item)


def conversation_item_deleted(item_id: str) -> ServerEvent:
    return _event("conversation.item.deleted", item_id=item_id)


def conversation_item_truncated(item_id: str, content_index: int, audio_end_ms: int) -> ServerEvent:
    return _event(
        "conversation.item.truncated",
        item_id=item_id,
        content_index=content_index,
        audio_end_ms=audio_end_ms,
    )


def input_audio_buffer_committed(item_id: str, previous_item_id: str | None) -> ServerEvent:
    return _event(
        "input_audio_buffer.committed", previous_item_id=previous_item_id, item_id=item_id
    )


def input_audio_buffer_cleared() -> ServerEvent:
    return _event("input_audio_buffer.cleared")


def input_audio_buffer_speech_started(audio_start_ms: int, item_id: str) -> ServerEvent:
    return _event(
        "input_audio_buffer.speech_started", audio_start_ms=audio_start_ms, item_id=item_id
    )


def input_audio_buffer_speech_stopped(audio_end_ms: int, item_id: str) -> ServerEvent:
    return _event("input_audio_buffer.speech_stopped", audio_end_ms=audio_end_ms, item_id=item_id)


def input_audio_buffer_timeout_triggered(
    audio_start_ms: int, audio_end_ms: int, item_id: str
) -> ServerEvent:
    return _event(
        "input_audio_buffer.timeout_triggered",
        audio_start_ms=audio_start_ms,
        audio_end_ms=audio_end_ms,
        item_id=item_id,
    )


def transcription_delta(item_id: str, content_index: int, delta: str) -> ServerEvent:
    return _event(
        "conversation.item.input_audio_transcription.delta",
        item_id=item_id,
        content_index=content_index,
        delta=delta,
    )


def transcription_completed(
    item_id: str, content_index: int, transcript: str, usage: dict[str, Any]
) -> ServerEvent:
    return _event(
        "conversation.item.input_audio_transcription.completed",
        item_id=item_id,
        content_index=content_index,
        transcript=transcript,
        usage=usage,
    )


def transcription_failed(item_id: str, content_index: int, error: dict[str, Any]) -> ServerEvent:
    return _event(
        "conversation.item.input_audio_transcription.failed",
        item_id=item_id,
        content_index=content_index,
        error=error,
    )


def response_created(response: dict[str, Any]) -> ServerEvent:
    return _event("response.created", response=response)


def response_done(response: dict[str, Any]) -> ServerEvent:
    return _event("response.done", response=response)


def response_output_item_added(
    response_id: str, output_index: int, item: dict[str, Any]
) -> ServerEvent:
    return _event(
        "response.output_item.added", response_id=response_id, output_index=output_index, item=item
    )


def response_output_item_done(
    response_id: str, output_index: int, item: dict[str, Any]
) -> ServerEvent:
    return _event(
        "response.output_item.done", response_id=response_id, output_index=output_index, item=item
    )


def _part_event(
    type_: str, response_id: str, item_id: str, output_index: int, content_index: int, **kw: Any
) -> ServerEvent:
    return _event(
        type_,
        response_id=response_id,
        item_id=item_id,
        output_index=output_index,
        content_index=content_index,
        **kw,
    )


def response_content_part_added(
    response_id: str, item_id: str, output_index: int, content_index: int, part: dict[str, Any]
) -> ServerEvent:
    return _part_event(
        "response.content_part.added", response_id, item_id, output_index, content_index, part=part
    )


def response_content_part_done(
    response_id: str, item_id: str, output_index: int, content_index: int, part: dict[str, Any]
) -> ServerEvent:
    return _part_event(
        "response.content_part.done", response_id, item_id, output_index, content_index, part=part
    )


def response_output_text_delta(
    response_id: str, item_id: str, output_index: int, content_index: int, delta: str
) -> ServerEvent:
    return _part_event(
        "response.output_text.delta", response_id, item_id, output_index, content_index, delta=delta
    )


def response_output_text_done(
    response_id: str, item_id: str, output_index: int, content_index: int, text: str
) -> ServerEvent:
    return _part_event(
        "response.output_text.done", response_id, item_id, output_index, content_index, text=text
    )


def response_output_audio_delta(
    response_id: str, item_id: str, output_index: int, content_index: int, delta: str
) -> ServerEvent:
    return _part_event(AUDIO_DELTA, response_id, item_id, output_index, content_index, delta=delta)


def response_output_audio_done(
    response_id: str, item_id: str, output_index: int, content_index: int
) -> ServerEvent:
    return _part_event(
        "response.output_audio.done", response_id, item_id, output_index, content_index
    )


def response_output_audio_transcript_delta(
    response_id: str, item_id: str, output_index: int, content_index: int, delta: str
) -> ServerEvent:
    return _part_event(
        "response.output_audio_transcript.delta",
        response_id,
        item_id,
        output_index,
        content_index,
        delta=delta,
    )


def response_output_audio_transcript_done(
    response_id: str, item_id: str, output_index: int, content_index: int, transcript: str
) -> ServerEvent:
    return _part_event(
        "response.output_audio_transcript.done",
        response_id,
        item_id,
        output_index,
        content_index,
        transcript=transcript,
    )


def response_function_call_arguments_delta(
    response_id: str, item_id: str, output_index: int, call_id: str, delta: str
) -> ServerEvent:
    return _event(
        "response.function_call_arguments.delta",
        response_id=response_id,
        item_id=item_id,
        output_index=output_index,
        call_id=call_id,
        delta=delta,
    )


def response_function_call_arguments_done(
    response_id: str, item_id: str, output_index: int, call_id: str, name: str, arguments: str
) -> ServerEvent:
    return _event(
        "response.function_call_arguments.done",
        response_id=response_id,
        item_id=item_id,
        output_index=output_index,
        call_id=call_id,
        name=name,
        arguments=arguments,
    )


def output_audio_buffer_started(response_id: str) -> ServerEvent:
    return _event("output_audio_buffer.started", response_id=response_id)


def output_audio_buffer_stopped(response_id: str) -> ServerEvent:
    return _event("output_audio_buffer.stopped", response_id=response_id)


def output_audio_buffer_cleared(response_id: str) -> ServerEvent:
    return _event("output_audio_buffer.cleared", response_id=response_id)
