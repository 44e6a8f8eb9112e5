"""The events the benchmark clients send, encoded once, and spoken sentences ready to stream."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from websockets.frames import Frame, Opcode

if TYPE_CHECKING:
    from .speech import Engine

RATE = 24000  # the sessions' audio/pcm rate, both ways
CHUNK = RATE // 50  # 20 ms
SILENCE_MS = 500  # server VAD's default silence_duration_ms, stated explicitly
SPEECH_FLOOR = 100  # |sample| above this (-50 dBFS) counts as speech for "end of speech"
# In a user message, asks the fake LLM (fake_llm.py) for a call of the session's tool.
TOOL_MARKER = "[tool]"

TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The current weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
        "required": ["city"],
    },
}

SENTENCES = [
    "turn on the lights in the kitchen",
    "what is the weather like tomorrow",
    "set a timer for ten minutes",
    "play some music in the living room",
    "how far is it to the airport",
    "remind me to call my mother tonight",
    "what time is it in tokyo",
    "add milk and eggs to my shopping list",
    "tell me a short joke",
    "how many days are there in a leap year",
    "open the garage door please",
    "what is the capital of australia",
    "book a table for two at seven",
    "read me the latest news headlines",
    "how do you say thank you in french",
    "turn the heating down a little",
    "when does the next train leave",
    "what did i have on my calendar today",
    "send a message to my brother",
    "spell the word necessary",
]


def encode(event: dict[str, Any]) -> str:
    return orjson.dumps(event).decode()


def client_frame(text: str) -> bytes:
    """`text` as a whole client WebSocket frame (text, masked), ready for a socket's transport:
    built once, it spares the client its per-message framing and masking."""
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=True)


RESPONSE_CREATE = encode({"type": "response.create"})


def session_update(
    instructions: str | None = None,
    *,
    audio_out: bool = False,
    listen: bool = False,
    create_response: bool = True,
    tools: list[dict[str, Any]] | None = None,
) -> str:
    """A GA `session.update`: text or audio out; with `listen`, PCM16 in at RATE with input
    transcription and server VAD (silence_duration_ms SILENCE_MS, replying if
    `create_response`)."""
    session: dict[str, Any] = {
        "type": "realtime",
        "output_modalities": ["audio"] if audio_out else ["text"],
    }
    if instructions is not None:
        session["instructions"] = instructions
    if tools:
        session["tools"] = tools
    audio: dict[str, Any] = {}
    if listen:
        audio["input"] = {
            "format": {"type": "audio/pcm", "rate": RATE},
            "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
            "turn_detection": {
                "type": "server_vad",
                "silence_duration_ms": SILENCE_MS,
                "create_response": create_response,
                "interrupt_response": True,
            },
        }
    if audio_out:
        audio["output"] = {"format": {"type": "audio/pcm", "rate": RATE}, "voice": "alloy"}
    if audio:
        session["audio"] = audio
    return encode({"type": "session.update", "session": session})


def user_message(text: str, item_id: str | None = None) -> str:
    item: dict[str, Any] = {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": text}],
    }
    if item_id is not None:
        item = {"id": item_id, **item}
    return encode({"type": "conversation.item.create", "item": item})


def tool_output(call_id: str) -> str:
    return encode(
        {
            "type": "conversation.item.create",
            "item": {
                "type": "function_call_output",
                "call_id": call_id,
                "output": '{"temperature_c": 21, "sky": "clear"}',
            },
        }
    )


def item_delete(item_id: str) -> str:
    return encode({"type": "conversation.item.delete", "item_id": item_id})


def append_event(pcm: np.ndarray) -> str:
    audio = base64.b64encode(pcm.astype("<i2").tobytes()).decode()
    return encode({"type": "input_audio_buffer.append", "audio": audio})


SILENCE_CHUNK = append_event(np.zeros(CHUNK, dtype=np.int16))  # 20 ms of digital silence


@dataclass
class Utterance:
    text: str
    chunks: list[str]  # the append events, ready to send
    last_speech_chunk: int  # index of the chunk holding the last speech sample
    speech_ms: float
    last_speech_ms: float  # where the last speech sample ends, from the sentence's start


def prepare(texts: list[str], engine: Engine = "espeak") -> list[Utterance]:
    """Each text spoken by `engine` (espeak or hibari) at RATE, cut into 20 ms append events."""
    from .speech import speak  # loads the synthesizer: only the benchmarks that speak pay for it

    out = []
    for text in texts:
        pcm = speak(text, RATE, engine=engine)
        loud = np.nonzero(np.abs(pcm.astype(np.int32)) > SPEECH_FLOOR)[0]
        last = int(loud[-1]) if len(loud) else len(pcm) - 1
        padded = np.concatenate([pcm, np.zeros(-len(pcm) % CHUNK, dtype=np.int16)])
        chunks = [append_event(padded[i : i + CHUNK]) for i in range(0, len(padded), CHUNK)]
        out.append(
            Utterance(text, chunks, last // CHUNK, 1000 * len(pcm) / RATE, 1000 * (last + 1) / RATE)
        )
    return out
