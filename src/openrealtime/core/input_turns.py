"""User turns: the input audio buffer, turn detection on the VAD's verdicts, commits, and the
idle timeout.

Rules:
- Appended audio is held in the input format; with turn detection, the VAD is told audio
  waits (`DetectSpeech`) and takes a 16 kHz copy when it is ready for it; its verdicts come
  back frame by frame, in order. Those frames
  are the clock: positions are in ms of input audio since the session began.
- Speech starting sends `input_audio_buffer.speech_started` with the item id its turn will
  have; with `interrupt_response`, the session then barges in.
- Speech stopping sends `speech_stopped` and commits the turn's audio as a user item; with
  `create_response`, the session responds unless its conversation already has a response.
- At a pause in the turn (see turns.py), the session may start transcribing the turn so far
  (`turn_paused`); speech resuming calls that off (`turn_resumed`).
- With `semantic_vad`, the end-of-turn model is asked at each pause (`JudgeTurnEnd`, the
  turn's last JUDGE_WINDOW_MS up to the frame analysed); the answer comes back through
  `judged`, and a stale one (another turn, or speech resumed) is ignored.
- `input_audio_buffer.commit` needs at least MIN_COMMIT_MS of audio; it and `clear` reset
  turn detection.
- Between turns, only the prefix padding before the next speech is kept.
- `idle_timeout_ms` counts from when the client will have played the last answer (its end
  plus its audio's length). When it passes with no speech and no response under way, the
  session sends `timeout_triggered`, commits what the buffer holds (if enough) and responds.
  It passes on the audio clock, or on a timer (`WakeAfter`) when the client sends no audio:
  then the session's time is taken to have run on in real time since the answer ended.
  A transcription session never times out: it does not respond.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from ..audio.formats import AudioFormat
from ..ids import new_id
from ..protocol import errors
from ..protocol import server_events as ev
from ..protocol.errors import ProtocolError
from ..protocol.items import ContentPart, MessageItem, dump_item
from ..protocol.server_events import ServerEvent
from ..protocol.session import SemanticVad, ServerVad
from .audio_input import InputAudioBuffer, to_vad_rate
from .conversation import Conversation
from .effects import Effect, JudgeTurnEnd, WakeAfter
from .turns import (
    JudgeTurn,
    PauseStarted,
    SpeechResumed,
    SpeechStarted,
    SpeechStopped,
    TurnDetector,
    TurnParams,
)

MIN_COMMIT_MS = 100
JUDGE_WINDOW_MS = 8000  # Smart Turn hears the last 8 s of a turn


class TurnHost(Protocol):
    """What turn detection asks of the session. It is passed with each call and never kept,
    so nothing here keeps a closed session alive."""

    def turn_started(self, item_id: str, audio_start_ms: int) -> None:
        """Speech started (its `speech_started` is sent)."""

    def barge_in(self) -> None:
        """The user spoke over the assistant."""

    def turn_paused(self, item_id: str, pcm16k: np.ndarray) -> None:
        """The turn being spoken paused; `pcm16k` is its audio so far."""

    def turn_resumed(self, item_id: str) -> None:
        """The speaker went on after a pause."""

    def turn_committed(self, item_id: str, detected: bool) -> None:
        """A user audio item was committed to the conversation; `detected`: its end was found
        by turn detection (so it is the audio up to the last pause, and silence after it)."""

    def answering(self) -> bool:
        """The default conversation has a response under way."""
        ...

    def respond(self) -> None:
        """Create a response in the default conversation."""


class InputTurns:
    def __init__(
        self,
        emit: Callable[[ServerEvent | Effect], None],
        conversation: Conversation,
        fmt: AudioFormat,
        *,
        vad_frame_ms: float,
        responds: bool,
    ) -> None:
        """`responds`: False in a transcription session, which never answers."""
        self._emit = emit
        self._conversation = conversation
        self._buffer = InputAudioBuffer(fmt)
        self._vad_frame_ms = vad_frame_ms
        self._responds = responds
        self._detection: ServerVad | SemanticVad | None = None
        self._detector: TurnDetector | None = None
        self._vad_frames = 0  # frames judged by the VAD since the session began
        self._speech_item_id: str | None = None  # the item the turn being spoken will be
        self._idle_deadline_ms: float | None = None
        self._idle_timer = 0  # the id of the latest idle timer asked for

    def configure(self, detection: ServerVad | SemanticVad | None, fmt: AudioFormat) -> None:
        """The session's input format and turn detection, at start and after each update."""
        self._buffer.set_format(fmt)
        self._detection = detection
        if detection is None:
            self._detector = None
        elif self._detector is None:
            self._detector = TurnDetector(TurnParams.of(detection), self._vad_frame_ms)
        else:
            self._detector.params = TurnParams.of(detection)  # keep whether speech is under way

    @property
    def format(self) -> AudioFormat:
        return self._buffer.format

    def append(self, raw: bytes) -> bool:
        """Hold audio in the input format; True when the VAD should be told audio waits."""
        return self._buffer.append(raw, for_vad=self._detector is not None)

    def take_vad_audio(self) -> np.ndarray:
        """The audio appended for the VAD since it last took it, at 16 kHz."""
        return self._buffer.take_for_vad()

    def held_pcm16k(self, start_ms: float) -> np.ndarray:
        """The audio held from session time `start_ms` on, up to what the VAD has taken, at
        16 kHz: a turn's transcript starts with it and is fed the rest as the VAD takes it."""
        return to_vad_rate(self._buffer.format, self._buffer.peek(start_ms))

    # --- the VAD's verdicts ------------------------------------------------------------------

    def on_speech_probabilities(self, probabilities: list[float], host: TurnHost) -> None:
        detector = self._detector
        if detector is None:
            return
        for probability in probabilities:
            self._vad_frames += 1
            frame_end_ms = self._vad_frames * self._vad_frame_ms
            turn = detector.frame(probability, frame_end_ms)
            if isinstance(turn, SpeechStarted):
                self._speech_started(turn, host)
            elif isinstance(turn, SpeechStopped):
                self._speech_stopped(turn, host)
            elif isinstance(turn, PauseStarted) and self._speech_item_id is not None:
                pcm = self._turn_pcm16k(turn.audio_start_ms, turn.frame_end_ms)
                host.turn_paused(self._speech_item_id, pcm)
            elif isinstance(turn, SpeechResumed) and self._speech_item_id is not None:
                host.turn_resumed(self._speech_item_id)
            elif isinstance(turn, JudgeTurn) and self._speech_item_id is not None:
                start = max(turn.audio_start_ms, turn.frame_end_ms - JUDGE_WINDOW_MS)
                pcm = self._turn_pcm16k(start, turn.frame_end_ms)
                self._emit(JudgeTurnEnd(self._speech_item_id, turn.speech_end_ms, pcm))
            elif not detector.speaking:
                self._check_idle(frame_end_ms, host)
        if not detector.speaking:
            # Relative to what the VAD has seen, which may trail what has arrived.
            analysed_ms = self._vad_frames * self._vad_frame_ms
            self._buffer.trim_before(analysed_ms - detector.params.prefix_padding_ms)

    def _turn_pcm16k(self, start_ms: float, end_ms: float) -> np.ndarray:
        """The turn's audio from `start_ms` to `end_ms` (what the VAD has judged), at 16 kHz."""
        pcm = self.held_pcm16k(start_ms)
        return pcm[: max(0, round((end_ms - start_ms) * 16))]

    def judged(
        self, item_id: str, speech_end_ms: float, probability: float | None, host: TurnHost
    ) -> None:
        """The end-of-turn model's answer about the pause at `speech_end_ms` of `item_id`."""
        detector = self._detector
        if detector is None or item_id != self._speech_item_id:
            return
        turn = detector.judged(speech_end_ms, probability)
        if turn is not None:
            self._speech_stopped(turn, host)

    def _speech_started(self, turn: SpeechStarted, host: TurnHost) -> None:
        self._idle_deadline_ms = None
        item_id = self._speech_item_id = new_id("item")
        self._emit(ev.input_audio_buffer_speech_started(turn.audio_start_ms, item_id))
        host.turn_started(item_id, turn.audio_start_ms)
        if self._detection is not None and self._detection.interrupt_response:
            host.barge_in()

    def _speech_stopped(self, turn: SpeechStopped, host: TurnHost) -> None:
        item_id = self._speech_item_id or new_id("item")
        self._speech_item_id = None
        self._emit(ev.input_audio_buffer_speech_stopped(turn.audio_end_ms, item_id))
        self._commit(
            item_id, host, start_ms=turn.audio_start_ms, end_ms=turn.audio_end_ms, detected=True
        )
        detection = self._detection
        if (
            detection is not None
            and detection.create_response
            and self._responds
            and not host.answering()
        ):
            host.respond()

    # --- the idle timeout --------------------------------------------------------------------

    def answer_played(self, audio_out_ms: float) -> None:
        """A conversation's answer ended by itself, with so much audio still to be played."""
        idle = self._idle_timeout_ms()
        if idle is not None and self._responds:
            self._idle_deadline_ms = self._buffer.position_ms + audio_out_ms + idle
            self._idle_timer += 1
            self._emit(WakeAfter(self._idle_timer, audio_out_ms + idle))

    def on_timer(self, timer_id: int, host: TurnHost) -> None:
        """The idle timer: fires the timeout if the audio clock has not yet (no audio came)."""
        deadline = self._idle_deadline_ms
        if timer_id == self._idle_timer and deadline is not None and not self._speaking():
            self._check_idle(max(deadline, self._buffer.position_ms), host)

    def _speaking(self) -> bool:
        return self._detector is not None and self._detector.speaking

    def _idle_timeout_ms(self) -> int | None:
        return getattr(self._detection, "idle_timeout_ms", None)

    def _check_idle(self, now_ms: float, host: TurnHost) -> None:
        deadline = self._idle_deadline_ms
        if deadline is None or now_ms < deadline or host.answering() or not self._responds:
            return
        self._idle_deadline_ms = None
        item_id = new_id("item")
        # The span since the answer finished playing (as OpenAI reports it), not the buffer's.
        start_ms = deadline - (self._idle_timeout_ms() or 0)
        self._emit(ev.input_audio_buffer_timeout_triggered(round(start_ms), round(now_ms), item_id))
        if self._buffer.duration_ms >= MIN_COMMIT_MS:
            self._commit(item_id, host)
        host.respond()

    # --- client events -----------------------------------------------------------------------

    def commit(self, host: TurnHost) -> None:
        if self._buffer.duration_ms < MIN_COMMIT_MS:
            raise ProtocolError(
                f"Error committing input audio buffer: buffer too small. Expected at least "
                f"{MIN_COMMIT_MS}ms of audio, but buffer only has "
                f"{self._buffer.duration_ms:.2f}ms of audio.",
                errors.COMMIT_EMPTY,
            )
        item_id = self._speech_item_id or new_id("item")
        self._speech_item_id = None
        if self._detector is not None:
            self._detector.reset()
        self._commit(item_id, host)

    def clear(self) -> None:
        self._buffer.clear()
        self._speech_item_id = None
        if self._detector is not None:
            self._detector.reset()
        self._emit(ev.input_audio_buffer_cleared())

    def _commit(
        self,
        item_id: str,
        host: TurnHost,
        start_ms: float | None = None,
        end_ms: float | None = None,
        detected: bool = False,
    ) -> None:
        audio = self._buffer.take(start_ms, end_ms)
        item = MessageItem(
            id=item_id,
            object="realtime.item",
            status="completed",
            role="user",
            content=[ContentPart(type="input_audio", transcript=None)],
        )
        self._conversation.input_audio[item_id] = (self._buffer.format, audio)
        previous_id = self._conversation.insert(item)
        self._emit(ev.input_audio_buffer_committed(item_id, previous_id))
        wire = dump_item(item)
        self._emit(ev.conversation_item_added(wire, previous_id))
        self._emit(ev.conversation_item_done(wire, previous_id))
        host.turn_committed(item_id, detected)
