"""A `Session` driven directly, as the runtime driver drives it, for the core's unit tests:
every server event it emits is validated strictly with the SDK's own types."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from conftest import validated

from openrealtime.core.effects import Effect
from openrealtime.core.session import Session
from openrealtime.protocol.client_events import parse_client_event

Output = dict[str, Any] | Effect
PCM16_24K_BYTES_PER_MS = 48  # the default input and output format: pcm16 at 24 kHz, mono


class Core:
    def __init__(self, **options: Any) -> None:
        self.session = Session(**options)
        self.taken_for_vad = np.zeros(0, np.int16)  # the audio the VAD last took
        self.session.open()
        self.drain()

    def send(self, event: dict[str, Any]) -> list[Output]:
        self.session.handle(parse_client_event(json.dumps(event)))
        return self.drain()

    def drain(self) -> list[Output]:
        out = self.session.drain()
        for entry in out:
            if isinstance(entry, dict):
                validated(json.dumps(entry))
        return out

    def append(self, ms: int) -> list[Output]:
        """`ms` of silence, appended as a media track does (no base64); when the session asks
        for speech detection, its audio is taken at once, as the driver's VAD would."""
        self.session.append_input_audio(b"\0" * (ms * PCM16_24K_BYTES_PER_MS))
        out = self.drain()
        if any(type(entry).__name__ == "DetectSpeech" for entry in out):
            self.taken_for_vad = self.session.take_vad_audio()
            out += self.drain()
        return out

    def vad(self, probability: float, frames: int) -> list[Output]:
        self.session.on_speech_probabilities([probability] * frames)
        return self.drain()


def types(out: list[Output]) -> list[str]:
    return [entry["type"] if isinstance(entry, dict) else type(entry).__name__ for entry in out]


def only(out: list[Output], type_: str) -> Any:
    matches = [
        entry
        for entry in out
        if (entry["type"] if isinstance(entry, dict) else type(entry).__name__) == type_
    ]
    assert len(matches) == 1, f"expected one {type_}, got {types(out)}"
    return matches[0]
