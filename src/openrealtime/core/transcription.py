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
from .effects import Effect, FeedTranscript, FinishTranscript, StartTranscript, Transcribe


class Transcription:
    def __init__(
        self,
        emit: Callable[[ServerEvent | Effect], None],
        conversation: Conversation,
        *,
        streams: bool,
        always_reports: bool,
    ) -> None:
        """`streams`: transcribe turns while they are spoken. `always_reports`: send the
        transcription events even when the session configures no transcription."""
        self._emit = emit
        self._conversation = conversation
        self.streams = streams
        self._always_reports = always_reports
        self._config: TranscriptionConfig | None = None
        self._transcribing: set[str] = set()  # item ids
        self._streaming_item: str | None = None  # the turn being transcribed as it is spoken
        self._partials: dict[str, str] = {}  # item id -> transcript text already sent as deltas

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

    def committed(self, item_id: str) -> None:
        """A turn became a user item: finish its streamed transcript, or transcribe it."""
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
        self._partials.pop(item_id, None)
        if item_id in self._conversation:
            item = self._conversation.get(item_id)
            item.content[content_index].transcript = text
            if self._reports:
                usage = {"type": "duration", "seconds": round(seconds, 3)}
                self._emit(ev.transcription_completed(item_id, content_index, text, usage))

    def failed(self, item_id: str, content_index: int, code: str, message: str) -> None:
        self._transcribing.discard(item_id)
        self._partials.pop(item_id, None)
        error = {"type": errors.SERVER_ERROR, "code": code, "message": message}
        self._emit(ev.transcription_failed(item_id, content_index, error))
