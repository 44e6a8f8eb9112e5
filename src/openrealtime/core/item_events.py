"""Client events on conversation items: create, retrieve and delete (truncate is barge-in's).

Rules:
- A created item gets an id if it has none, `object: "realtime.item"` (all but
  `mcp_approval_response`, which has no such field) and `status: "completed"`.
- Its input audio is decoded in the session's input format, and refused before anything is
  stored. The audio moves out of the item: events don't echo it; retrieve gives it back, as it
  does the assistant's audio. The session then has the audio transcribed.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from ..audio.formats import AudioFormat
from ..ids import new_id
from ..protocol import client_events as ce
from ..protocol import server_events as ev
from ..protocol.items import McpApprovalResponseItem, MessageItem, dump_item
from ..protocol.server_events import ServerEvent
from .audio_input import decode_base64_audio
from .conversation import Conversation


class ItemEvents:
    def __init__(self, emit: Callable[[ServerEvent], None], conversation: Conversation) -> None:
        self._emit = emit
        self._conversation = conversation

    def create(self, event: ce.ConversationItemCreate, fmt: AudioFormat) -> int | None:
        """Returns the index of the item's input audio, which is to be transcribed."""
        item = event.item
        item.id = item.id or new_id("item")
        if not isinstance(item, McpApprovalResponseItem):
            item.object = "realtime.item"
        if hasattr(item, "status"):
            item.status = "completed"
        audio = _decode_audio(item, fmt)
        previous_id = self._conversation.insert(item, event.previous_item_id)
        if audio is not None:
            index, raw = audio
            self._conversation.input_audio[item.id] = (fmt, raw)
            message: Any = item
            message.content[index].audio = None
        wire = dump_item(item)
        self._emit(ev.conversation_item_added(wire, previous_id))
        self._emit(ev.conversation_item_done(wire, previous_id))
        return None if audio is None else audio[0]

    def retrieve(self, event: ce.ConversationItemRetrieve) -> None:
        item = self._conversation.get(event.item_id)
        wire = dump_item(item)
        audio = self._conversation.input_audio.get(item.id)
        spoken = self._conversation.output_audio.get(item.id)
        for part in wire.get("content", ()):
            if part["type"] == "input_audio" and audio is not None:
                part["audio"] = base64.b64encode(audio[1]).decode()
            elif part["type"] == "output_audio" and spoken is not None:
                part["audio"] = base64.b64encode(spoken.encoded).decode()
        self._emit(ev.conversation_item_retrieved(wire))

    def delete(self, event: ce.ConversationItemDelete) -> None:
        self._conversation.delete(event.item_id)
        self._emit(ev.conversation_item_deleted(event.item_id))


def _decode_audio(item: Any, fmt: AudioFormat) -> tuple[int, bytes] | None:
    """A created item's input audio: (content index, raw bytes in `fmt`)."""
    if not isinstance(item, MessageItem):
        return None
    for index, part in enumerate(item.content):
        if part.type == "input_audio" and part.audio:
            param = f"item.content[{index}].audio"
            return index, decode_base64_audio(part.audio, fmt, param)
    return None
