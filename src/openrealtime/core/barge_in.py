"""Barge-in and truncation: cutting assistant audio, and its transcript, to what was heard.

Rules:
- Barge-in cancels the answer first, then stops playback and truncates (pipecat's order: no
  more audio may be produced while the cut is made).
- With server-side playback (WebRTC) the cut is at the position the player reports; without it
  (WebSocket) the client plays, and the cut is at what was sent.
- Even at the end of its audio, the transcript may run ahead of what was spoken (the LLM
  writes faster than speech), so the cut is always made.
- With server-side playback, a pause in playing (the synthesizer behind real time) keeps the
  position: a cut then is still at what was heard. A cut made while the item's audio is still
  being produced (`output_audio_buffer.clear` without `response.cancel`) is applied when that
  audio is complete (`audio_settled`), since only then is there audio to cut.
- `conversation.item.truncate` cuts only an assistant message's audio, within its length.
- The transcript keeps the words spoken by the cut (`SpokenAudio.words_heard`), so the LLM
  then sees only what the user heard.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..protocol import client_events as ce
from ..protocol import errors
from ..protocol import server_events as ev
from ..protocol.errors import ProtocolError
from ..protocol.items import MessageItem
from ..protocol.server_events import ServerEvent
from .conversation import Conversation
from .effects import ClearOutputAudio, Effect
from .responses import Response
from .spoken import SpokenAudio, first_words


class BargeIn:
    def __init__(
        self,
        emit: Callable[[ServerEvent | Effect], None],
        conversation: Conversation,
        *,
        playback: bool,
    ) -> None:
        """`playback`: the server plays the audio (and reports its position)."""
        self._emit = emit
        self._conversation = conversation
        self._playback = playback
        self._playing: tuple[str, float] | None = None  # (item id, ms played) while playing
        self._pending_cut: tuple[str, int] | None = None  # a cut waiting for its item's audio

    def on_playback(self, item_id: str, played_ms: float, playing: bool) -> None:
        # Stopped with the item's audio incomplete: paused, not finished.
        paused = item_id in self._conversation and item_id not in self._conversation.output_audio
        self._playing = (item_id, played_ms) if playing or paused else None

    def interrupt(self, active: Response | None, cancel: Callable[[str], Any]) -> None:
        """The user spoke over `active` (the conversation's response): `cancel` it, then cut
        what was produced to what was heard."""
        if active is not None:
            item, sent_ms = active.spoken_item(), int(active.audio_out_ms)
            cancel(active.id)
            if item is not None and not self._playback:
                self._truncate_heard(item.id or "", sent_ms)
        self.stop_playback()

    def stop_playback(self) -> None:
        """Stops server-side playback; without any, nothing is playing and this does nothing.
        Audio queued but not yet playing (no position reported) is dropped too: nothing of it
        was heard, so there is nothing to truncate."""
        if self._playing is None:
            if self._playback:
                self._emit(ClearOutputAudio())
            return
        item_id, played_ms = self._playing
        self._playing = None
        self._emit(ClearOutputAudio())
        if item_id in self._conversation.output_audio:
            self._truncate_heard(item_id, int(played_ms))
        else:
            self._pending_cut = (item_id, int(played_ms))

    def audio_settled(self) -> None:
        """A response's audio may have been completed (it ended, or was cancelled): make the
        cut that waited for it."""
        if self._pending_cut is None:
            return
        item_id, end_ms = self._pending_cut
        if item_id in self._conversation.output_audio or item_id not in self._conversation:
            self._pending_cut = None
            self._truncate_heard(item_id, end_ms)

    def _truncate_heard(self, item_id: str, end_ms: int) -> None:
        spoken = self._conversation.output_audio.get(item_id)
        if spoken is None or item_id not in self._conversation:
            return
        end_ms = min(end_ms, int(spoken.duration_ms))
        self._truncate(self._conversation.get(item_id), spoken, 0, end_ms)

    def item_truncate(self, event: ce.ConversationItemTruncate) -> None:
        item = self._conversation.get(event.item_id)
        spoken = self._conversation.output_audio.get(item.id)
        if spoken is None or not isinstance(item, MessageItem) or item.role != "assistant":
            raise ProtocolError(
                f"Item '{item.id}' has no assistant audio to truncate; only assistant messages "
                "with audio can be truncated.",
                errors.INVALID_VALUE,
                "item_id",
            )
        if (
            event.content_index >= len(item.content)
            or item.content[event.content_index].type != "output_audio"
        ):
            raise ProtocolError(
                f"content_index {event.content_index} of item '{item.id}' is not its audio; use 0.",
                errors.INVALID_VALUE,
                "content_index",
            )
        if event.audio_end_ms > spoken.duration_ms + 1:
            raise ProtocolError(
                f"audio_end_ms {event.audio_end_ms} is past the end of the audio "
                f"({spoken.duration_ms:.0f} ms).",
                errors.INVALID_VALUE,
                "audio_end_ms",
            )
        self._truncate(item, spoken, event.content_index, event.audio_end_ms)

    def _truncate(
        self, item: MessageItem, spoken: SpokenAudio, content_index: int, end_ms: int
    ) -> None:
        part = item.content[content_index]
        part.transcript = first_words(part.transcript or "", spoken.words_heard(end_ms))
        spoken.cut(end_ms)
        self._emit(ev.conversation_item_truncated(item.id or "", content_index, end_ms))
