"""Transcription of user audio items: which are being transcribed, and the turn transcribed
while it is spoken.

Rules:
- Every committed or created user audio item is transcribed, because the LLM reads the user's
  words. Responses wait while any item is being transcribed (`busy`; see lifecycle.py).
- Its events are sent only when `audio.input.transcription` is configured, or always in a
  transcription session. A failure is always reported.
- With streaming, a turn is transcribed from the moment speech starts: the audio held since
  its start, then every 16 kHz chunk, then `FinishTranscript` when it is committed (or, with
  `discard`, cleared). Partial transcripts go out as deltas; deltas can only append, so a
  revision of words already sent waits for `completed`.
- Without streaming (a batch recognizer), a turn is decoded early, from each pause on
  (`speculate`; a pause counts once EARLY_DECODE_AFTER_MS long, see turns.py): the audio from
  its start to the frame where the pause was reported. Speech resuming
  cancels that decode (a new pause starts another). When turn detection commits the turn,
  the decode of its last pause is adopted: the committed audio is that audio plus only what
  followed it without speech resuming (frames below the VAD's exit threshold), so the words
  are the same. A manual commit or clear cancels it and transcribes the item as committed.
  If an adopted decode fails, the item is transcribed again, whole.
- A transcript none of whose words went out as deltas gets one delta with the whole text
  before `completed` (as OpenAI's whisper-1 does), so a client always sees a delta.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..backends.stt.base import TranscriptionOptions
from ..protocol import errors
from ..protocol import server_events as ev
from ..protocol.server_events import ServerEvent
from ..protocol.session import TranscriptionConfig
from .audio_input import to_vad_rate
from .conversation import Conversation
from .effects import (
    CancelSpeculation,
    Effect,
    FeedTranscript,
    FinishTranscript,
    SpeculateTranscript,
    StartTranscript,
    Transcribe,
)


class Transcription:
    def __init__(
        self,
        emit: Callable[[ServerEvent | Effect], None],
        conversation: Conversation,
        *,
        streams: bool,
        always_reports: bool,
        speculates: bool = True,
    ) -> None:
        """`streams`: transcribe turns while they are spoken. `always_reports`: send the
        transcription events even when the session configures no transcription.
        `speculates`: without streaming, decode turns from their pauses on."""
        self._emit = emit
        self._conversation = conversation
        self.streams = streams
        self._always_reports = always_reports
        self._config: TranscriptionConfig | None = None
        self._transcribing: set[str] = set()  # item ids
        self._streaming_item: str | None = None  # the turn being transcribed as it is spoken
        self._partials: dict[str, str] = {}  # item id -> transcript text already sent as deltas
        self.speculates = speculates and not streams
        # The decode under way of the turn being spoken: (speculation id, item id).
        self._speculation: tuple[str, str] | None = None
        self._speculations = 0
        self._early: dict[str, tuple[str, float]] = {}  # speculation id -> finished result
        self._adopted: dict[str, str] = {}  # speculation id -> item id awaiting its result

    def configure(self, config: TranscriptionConfig | None) -> None:
        """The session's `audio.input.transcription`, at start and after each update."""
        self._config = config

    @property
    def busy(self) -> bool:
        """Some user audio item has no transcript yet."""
        return bool(self._transcribing)

    def _options(self) -> TranscriptionOptions:
        config = self._config
        return TranscriptionOptions(
            model=config.model if config else None,
            language=config.language if config else None,
            prompt=config.prompt if config else None,
        )

    @property
    def _reports(self) -> bool:
        return self._always_reports or self._config is not None

    # --- the audio ---------------------------------------------------------------------------

    def start_streaming(self, item_id: str, held_pcm16k: np.ndarray) -> None:
        """Speech started: transcribe it as it comes, from the audio held since its start."""
        self._streaming_item = item_id
        self._emit(StartTranscript(item_id, 0, held_pcm16k.tobytes(), self._options()))

    def feed(self, pcm16k: np.ndarray) -> None:
        if self._streaming_item is not None:
            self._emit(FeedTranscript(self._streaming_item, pcm16k.tobytes()))

    def discard_streaming(self) -> None:
        """The buffer was cleared: the turn being transcribed will not become an item."""
        if self._streaming_item is not None:
            self._emit(FinishTranscript(self._streaming_item, discard=True))
            self._streaming_item = None

    def speculate(self, item_id: str, pcm16k: np.ndarray) -> None:
        """The turn `item_id` paused: decode it so far."""
        if not self.speculates or not len(pcm16k):
            return
        self.cancel_speculation()
        self._speculations += 1
        speculation_id = f"{item_id}/early{self._speculations}"
        self._speculation = (speculation_id, item_id)
        self._emit(SpeculateTranscript(speculation_id, pcm16k.tobytes(), self._options()))

    def cancel_speculation(self) -> None:
        """Speech resumed, or the turn ended otherwise than in its pause."""
        if self._speculation is not None:
            speculation_id = self._speculation[0]
            self._speculation = None
            self._early.pop(speculation_id, None)
            self._emit(CancelSpeculation(speculation_id))

    def committed(self, item_id: str, detected: bool = False) -> None:
        """A turn became a user item: adopt its early decode, finish its streamed transcript,
        or transcribe it."""
        speculation = self._speculation
        if detected and speculation is not None and speculation[1] == item_id:
            self._speculation = None
            self._transcribing.add(item_id)
            early = self._early.pop(speculation[0], None)
            if early is None:
                self._adopted[speculation[0]] = item_id
            else:
                self.done(item_id, 0, *early)
            return
        self.cancel_speculation()
        if item_id != self._streaming_item:
            self.transcribe(item_id, 0)
            return
        self._streaming_item = None
        self._transcribing.add(item_id)
        self._emit(FinishTranscript(item_id))

    def transcribe(self, item_id: str, content_index: int) -> None:
        """Transcribe the whole of a user audio item."""
        pcm16k = to_vad_rate(*self._conversation.input_audio[item_id])
        self._transcribing.add(item_id)
        self._emit(Transcribe(item_id, content_index, pcm16k.tobytes(), self._options()))

    # --- the transcriber's results -----------------------------------------------------------

    def speculation_done(self, speculation_id: str, text: str, seconds: float) -> None:
        if (item_id := self._adopted.pop(speculation_id, None)) is not None:
            self.done(item_id, 0, text, seconds)
        elif self._speculation is not None and self._speculation[0] == speculation_id:
            self._early[speculation_id] = (text, seconds)

    def speculation_failed(self, speculation_id: str) -> None:
        """An early decode failed: an adopted one is redone whole, where failure is reported."""
        if (item_id := self._adopted.pop(speculation_id, None)) is not None:
            self._transcribing.discard(item_id)
            self.transcribe(item_id, 0)
        elif self._speculation is not None and self._speculation[0] == speculation_id:
            self._speculation = None

    def delta(self, item_id: str, content_index: int, text: str) -> None:
        if self._reports and text:
            self._partials[item_id] = self._partials.get(item_id, "") + text
            self._emit(ev.transcription_delta(item_id, content_index, text))

    def partial(self, item_id: str, content_index: int, text: str) -> None:
        """The whole transcript so far, from a streaming transcription."""
        sent = self._partials.get(item_id, "")
        if text.startswith(sent) and len(text) > len(sent):
            self.delta(item_id, content_index, text[len(sent) :])

    def done(self, item_id: str, content_index: int, text: str, seconds: float) -> None:
        self._transcribing.discard(item_id)
        streamed = self._partials.pop(item_id, None) is not None
        if item_id in self._conversation:
            item = self._conversation.get(item_id)
            item.content[content_index].transcript = text
            if self._reports:
                if not streamed and text:
                    # No words went out as deltas (an early decode, a short streamed turn):
                    # the whole text in one delta, as OpenAI's whisper-1 sends it.
                    self._emit(ev.transcription_delta(item_id, content_index, text))
                usage = {"type": "duration", "seconds": round(seconds, 3)}
                self._emit(ev.transcription_completed(item_id, content_index, text, usage))

    def failed(self, item_id: str, content_index: int, code: str, message: str) -> None:
        self._transcribing.discard(item_id)
        self._partials.pop(item_id, None)
        error = {"type": errors.SERVER_ERROR, "code": code, "message": message}
        self._emit(ev.transcription_failed(item_id, content_index, error))
