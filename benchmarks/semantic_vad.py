"""semantic_vad (Smart Turn) against server_vad, and early decoding's transcript latency.

Run: python -m benchmarks.semantic_vad [--sentences 4] [--trailing-ms 2500]
Prints two tables and writes benchmarks/results/semantic_vad.json. Takes ~2 minutes at the
defaults: audio is paced in real time (20 ms chunks at t0 + k x 20 ms).

openrealtime runs in this process (uvicorn in a thread; no LLM is called: `create_response`
is off), with Whisper tiny.en (packaged weights) as its recognizer. Each clip is a sentence spoken by one voice (espeak-ng en-us, hibari), complete or
cut mid-phrase (its last words dropped), then `--trailing-ms` of silence. Every clip goes to
four sessions, one after another: server_vad (silence_duration_ms 500) and semantic_vad at each
eagerness. Per session: end of speech (the clip's last sample, by construction) →
`speech_stopped` received, or "not ended" within the trailing silence. A cut sentence that
ends its turn within the trailing silence counts as wrongly ended (as server_vad always does).

Then, with Whisper tiny.en (packaged weights) and server_vad 500 ms: `speech_stopped` →
`…input_audio_transcription.completed` received, with early decoding on and off (off patches
the server's session factory in this process: `Session(early_transcripts=False)`).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import threading
import time
from typing import Any
from urllib.request import urlopen

import numpy as np
import orjson
import soxr
import uvicorn

from benchmarks.lib.clients import connect_session, start_session
from benchmarks.lib.launch import BENCH_API_KEY
from benchmarks.lib.speech import speak
from benchmarks.lib.stats import percentile, print_table, write_json
from openrealtime.backends.registry import create_backends
from openrealtime.backends.stt.whisper_weights import locate_model
from openrealtime.backends.tts.hibari import HibariSynthesizer
from openrealtime.config import Settings
from openrealtime.core.session import Session
from openrealtime.server import sessions as server_sessions
from openrealtime.server.app import create_app

RATE = 24000
CHUNK = RATE // 50  # 20 ms
LEAD_MS = 300
SENTENCES = [
    "turn on the lights in the kitchen please",
    "what is the weather going to be like tomorrow",
    "I would like to book a table for two at seven",
    "can you remind me to call my mother this evening",
    "play some relaxing music in the living room",
    "how long does it take to drive to the airport",
]
CONFIGS: dict[str, dict[str, Any]] = {
    "server_vad 500": {"type": "server_vad", "silence_duration_ms": 500},
    "semantic high": {"type": "semantic_vad", "eagerness": "high"},
    "semantic medium": {"type": "semantic_vad", "eagerness": "medium"},
    "semantic low": {"type": "semantic_vad", "eagerness": "low"},
}


# --- speech ---------------------------------------------------------------------------------


def trimmed(pcm: np.ndarray) -> np.ndarray:
    level = np.abs(pcm.astype(np.int32))
    loud = np.flatnonzero(level > level.max() * 0.01)
    return pcm[loud[0] : loud[-1] + 1]


@functools.cache
def _hibari() -> HibariSynthesizer:
    return HibariSynthesizer()


def hibari(text: str) -> np.ndarray:
    synth = _hibari()
    voice = synth.resolve_voice("alloy") or ""

    async def collect() -> bytes:
        return b"".join([chunk async for chunk in synth.synthesize(text, voice)])

    pcm = np.frombuffer(asyncio.run(collect()), np.int16)
    return np.asarray(soxr.resample(pcm, synth.sample_rate, RATE), dtype=np.int16)


def clip(voice: str, text: str) -> np.ndarray:
    pcm = speak(text, RATE) if voice == "espeak" else hibari(text)
    return trimmed(pcm)


def cut(text: str) -> str:
    """The sentence without its last third of words: unfinished."""
    words = text.split()
    return " ".join(words[: max(2, len(words) * 2 // 3)])


# --- the server -----------------------------------------------------------------------------


class Server:
    def __init__(self, settings: Settings) -> None:
        self.port = 0
        backends = create_backends(settings)
        config = uvicorn.Config(
            create_app(settings, backends), host="127.0.0.1", port=0, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.05)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        # The models load after the server listens: measure turns, not the warm-up.
        while (
            orjson.loads(urlopen(f"http://127.0.0.1:{port}/healthz").read())["models"] == "loading"
        ):
            if time.monotonic() > deadline:
                raise RuntimeError("the models did not load")
            time.sleep(0.1)
        return f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-realtime"

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def settings(**extra: Any) -> Settings:
    return Settings(
        api_keys=[BENCH_API_KEY], llm_base_url="http://127.0.0.1:9/v1", llm_model="none", **extra
    )


def update(detection: dict[str, Any], transcribe: bool = False) -> str:
    audio: dict[str, Any] = {"turn_detection": {**detection, "create_response": False}}
    if transcribe:
        audio["transcription"] = {"model": "whisper-1"}
    session = {"type": "realtime", "output_modalities": ["text"], "audio": {"input": audio}}
    return orjson.dumps({"type": "session.update", "session": session}).decode()


async def paced(url: str, detection: dict[str, Any], pcm: np.ndarray, **kw: Any) -> dict[str, Any]:
    """Stream `pcm` in real time; return when events arrived (monotonic s) and speech's end."""
    ws = await connect_session(url)
    await start_session(ws, update(detection, **kw))
    seen: dict[str, float] = {}

    async def receive() -> None:
        async for raw in ws:
            event = orjson.loads(raw)
            seen.setdefault(event["type"], time.monotonic())
            if event["type"] == "error":
                print(event, flush=True)

    receiver = asyncio.create_task(receive())
    t0 = time.monotonic()
    for k, start in enumerate(range(0, len(pcm), CHUNK)):
        chunk = base64_chunk(pcm[start : start + CHUNK])
        await asyncio.sleep(max(0.0, t0 + k * 0.02 - time.monotonic()))
        await ws.send(chunk)
    await asyncio.sleep(1.0)  # answers still on their way
    receiver.cancel()
    await ws.close()
    return seen | {"t0": t0}


def base64_chunk(pcm: np.ndarray) -> str:
    import base64

    audio = base64.b64encode(pcm.tobytes()).decode()
    return orjson.dumps({"type": "input_audio_buffer.append", "audio": audio}).decode()


# --- the two measurements -------------------------------------------------------------------


async def turn_ends(url: str, clips: list[tuple[str, str, bool, np.ndarray]], trailing_ms: int):
    rows: list[dict[str, Any]] = []
    for voice, text, complete, speech in clips:
        lead = np.zeros(RATE * LEAD_MS // 1000, np.int16)
        tail = np.zeros(RATE * trailing_ms // 1000, np.int16)
        pcm = np.concatenate([lead, speech, tail])
        speech_end_s = (LEAD_MS + len(speech) * 1000 / RATE) / 1000
        # One session at a time: in this one process, parallel sessions lag the VAD.
        results = [await paced(url, detection, pcm) for detection in CONFIGS.values()]
        for name, seen in zip(CONFIGS, results, strict=True):
            stopped = seen.get("input_audio_buffer.speech_stopped")
            after = None if stopped is None else stopped - seen["t0"] - speech_end_s
            rows.append(
                {
                    "voice": voice,
                    "text": text,
                    "complete": complete,
                    "config": name,
                    "stop_s": after,
                }
            )
        print(f"  {voice:6} {'complete' if complete else 'cut     '} {text}", flush=True)
    return rows


async def transcript_ready(url: str, clips: list[np.ndarray]) -> list[float]:
    waits = []
    detection = CONFIGS["server_vad 500"]
    for speech in clips:
        pcm = np.concatenate([np.zeros(RATE * LEAD_MS // 1000, np.int16), speech])
        pcm = np.concatenate([pcm, np.zeros(RATE * 1500 // 1000, np.int16)])
        seen = await paced(url, detection, pcm, transcribe=True)
        stopped = seen.get("input_audio_buffer.speech_stopped")
        done = seen.get("conversation.item.input_audio_transcription.completed")
        if stopped is not None and done is not None:
            waits.append(done - stopped)
    return waits


def ms(seconds: float) -> int | None:
    return None if seconds != seconds else round(seconds * 1000)  # nan: nothing measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=4)
    parser.add_argument("--trailing-ms", type=int, default=2500)
    args = parser.parse_args()
    texts = SENTENCES[: args.sentences]
    clips = [
        (voice, sentence, complete, clip(voice, sentence if complete else cut(sentence)))
        for voice in ("espeak", "hibari")
        for sentence in texts
        for complete in (True, False)
    ]
    load_before = os.getloadavg()
    print("turn ends (4 sessions per clip, one after another):")
    # Whisper throughout (the default recognizer to be): its decodes release the GIL, where
    # pocketsphinx's would stall this process's VAD and clients.
    whisper = settings(stt="faster-whisper", stt_model=str(locate_model("tiny.en")))
    with Server(whisper) as url:
        rows = asyncio.run(turn_ends(url, clips, args.trailing_ms))
    table = []
    summary: dict[str, Any] = {}
    for name in CONFIGS:
        mine = [r for r in rows if r["config"] == name]
        done = [r["stop_s"] for r in mine if r["complete"] and r["stop_s"] is not None]
        missed = sum(1 for r in mine if r["complete"] and r["stop_s"] is None)
        cut_ended = sum(1 for r in mine if not r["complete"] and r["stop_s"] is not None)
        cuts = sum(1 for r in mine if not r["complete"])
        p50, p95 = (ms(percentile(done, q)) for q in (50, 95))
        summary[name] = {
            "complete_end_to_stopped_ms": {"p50": p50, "p95": p95, "n": len(done)},
            "complete_not_ended": missed,
            "cut_wrongly_ended": cut_ended,
            "cut_total": cuts,
        }
        table.append([name, p50, p95, f"{missed}/{len(done) + missed}", f"{cut_ended}/{cuts}"])
    print_table(
        ["turn detection", "end→stopped p50 ms", "p95 ms", "complete not ended", "cut ended"],
        table,
        title=f"Complete sentences: end of speech → speech_stopped; trailing {args.trailing_ms} ms",
    )

    speech = [c[3] for c in clips if c[2]]
    ready: dict[str, Any] = {}
    for early in (True, False):
        if not early:
            server_sessions.Session = functools.partial(Session, early_transcripts=False)  # type: ignore[misc]
        with Server(whisper) as url:
            waits = asyncio.run(transcript_ready(url, speech))
        server_sessions.Session = Session  # type: ignore[misc]
        ready["on" if early else "off"] = {
            "p50": ms(percentile(waits, 50)),
            "p95": ms(percentile(waits, 95)),
            "n": len(waits),
        }
    print_table(
        ["early decode", "stopped→transcript p50 ms", "p95 ms", "n"],
        [[k, v["p50"], v["p95"], v["n"]] for k, v in ready.items()],
        title="Whisper tiny.en, server_vad 500 ms",
    )
    load_after = os.getloadavg()
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    path = write_json(
        "semantic_vad.json",
        {
            "turn_ends": summary,
            "rows": rows,
            "transcript_ready_ms": ready,
            "loadavg": {"before": load_before, "after": load_after},
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
