"""The ordered items of one conversation: insert after an item or at the root, find, delete;
and the audio of its items, which events don't echo but `conversation.item.retrieve` gives
back and `conversation.item.truncate` cuts. An item whose images the LLM cannot take is
refused before it is stored (`images.py`)."""

from __future__ import annotations

from typing import Any

from ..audio import formats
from ..audio.formats import AudioFormat
from ..protocol import errors
from ..protocol.errors import ProtocolError
from .images import check_item_images
from .spoken import SpokenAudio


class Conversation:
    def __init__(self, *, vision: bool = True) -> None:
        self.vision = vision  # the LLM reads images
        self._order: list[str] = []
        self._items: dict[str, Any] = {}
        self.input_audio: dict[str, tuple[AudioFormat, bytes]] = {}  # user audio by item id
        self.output_audio: dict[str, SpokenAudio] = {}  # assistant audio by item id

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._items

    def items(self) -> list[Any]:
        return [self._items[item_id] for item_id in self._order]

    def get(self, item_id: str, *, param: str = "item_id") -> Any:
        try:
            return self._items[item_id]
        except KeyError:
            raise ProtocolError(
                f"Item with item_id '{item_id}' not found in the conversation.",
                errors.ITEM_NOT_FOUND,
                param,
            ) from None

    def insert(self, item: Any, previous_item_id: str | None = None) -> str | None:
        """Add `item` after `previous_item_id` ("root": first; None: last).

        Returns the id of the item now before it, which the added/done events carry.
        """
        check_item_images(item, "item", vision=self.vision)
        if item.id in self._items:
            raise ProtocolError(
                f"An item with id '{item.id}' already exists in the conversation; "
                "omit `item.id` to have one assigned.",
                errors.DUPLICATE_ITEM_ID,
                "item.id",
            )
        if previous_item_id is None:
            position = len(self._order)
        elif previous_item_id == "root":
            position = 0
        elif previous_item_id in self._items:
            position = self._order.index(previous_item_id) + 1
        else:
            raise ProtocolError(
                f"previous_item_id '{previous_item_id}' does not exist in the conversation; "
                'use an existing item id, "root" to insert first, or omit it to append.',
                errors.PREVIOUS_ITEM_NOT_FOUND,
                "previous_item_id",
            )
        self._order.insert(position, item.id)
        self._items[item.id] = item
        return self._order[position - 1] if position else None

    def delete(self, item_id: str) -> None:
        self.get(item_id)
        del self._items[item_id]
        self._order.remove(item_id)
        self.input_audio.pop(item_id, None)
        self.output_audio.pop(item_id, None)

    def input_audio_ms(self, items: list[Any]) -> float:
        """How much user audio `items` hold (for the usage estimate)."""
        stored = [self.input_audio.get(getattr(item, "id", None) or "") for item in items]
        return sum(formats.duration_ms(fmt, len(raw)) for fmt, raw in filter(None, stored))
