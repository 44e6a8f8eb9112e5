"""Micro-benchmarks of the audio hot path, per 20 ms chunk (and per 32 ms Silero frame).

Run: python -m benchmarks.audio_micro [--iterations N]
Prints a table and writes benchmarks/results/audio_micro.json.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import time
from collections.abc import Callable

import numpy as np

from benchmarks.lib.stats import write_json
from openrealtime.audio import g711
from openrealtime.audio.formats import AudioFormat
from openrealtime.audio.resample import StreamResampler
from openrealtime.backends.vad.silero import SileroVad
from openrealtime.core.audio_input import InputAudioBuffer, decode_base64_audio
from openrealtime.protocol.client_events import parse_client_event


def time_us(fn: Callable[[], object], iterations: int, repeats: int = 5) -> dict[str, float]:
    """Median and best of `repeats` runs of `iterations` calls, in µs per call."""
    for _ in range(min(iterations, 200)):
        fn()  # warm up caches and lazy initialisation
    runs = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        for _ in range(iterations):
            fn()
        runs.append((time.perf_counter_ns() - start) / iterations / 1000)
    return {"median_us": statistics.median(runs), "best_us": min(runs), "iterations": iterations}


def encode_append(pcm: np.ndarray) -> str:
    audio = base64.b64encode(pcm.tobytes()).decode()
    return json.dumps({"type": "input_audio_buffer.append", "audio": audio})


def buffer_cycle(buffer: InputAudioBuffer, raw: bytes) -> object:
    out = buffer.append(raw, for_vad=True)
    buffer.trim_before(buffer.position_ms - 300)  # as between turns: the buffer stays short
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=20000)
    args = parser.parse_args()
    n = args.iterations
    rng = np.random.default_rng(0)

    pcm8k = (rng.standard_normal(160) * 3000).astype(np.int16)  # 20 ms at 8 kHz
    ulaw, alaw = g711.ulaw_encode(pcm8k), g711.alaw_encode(pcm8k)
    pcm24k = (rng.standard_normal(480) * 3000).astype(np.int16)  # 20 ms at 24 kHz
    resampler = StreamResampler(24000, 16000)
    frame = (rng.standard_normal(512) * 3000).astype(np.int16)  # 32 ms at 16 kHz
    silero = SileroVad()
    vad = silero.new_stream()
    # The whole path of one 20 ms append, step by step (24 kHz PCM16, as most clients send).
    append = encode_append(pcm24k)
    audio_b64 = parse_client_event(append).audio
    raw24k = decode_base64_audio(audio_b64, AudioFormat.PCM)
    buffer = InputAudioBuffer(AudioFormat.PCM)
    buffer.append(raw24k, for_vad=True)
    pcm16k = (rng.standard_normal(320) * 3000).astype(np.int16)  # 20 ms at 16 kHz
    framer = silero.new_stream()
    quiet_frame = framer.frames(np.zeros(512, np.int16))[0]

    cases: dict[str, tuple[Callable[[], object], int]] = {
        "g711 ulaw_encode (160 samples)": (lambda: g711.ulaw_encode(pcm8k), n),
        "g711 ulaw_decode (160 bytes)": (lambda: g711.ulaw_decode(ulaw), n),
        "g711 alaw_encode (160 samples)": (lambda: g711.alaw_encode(pcm8k), n),
        "g711 alaw_decode (160 bytes)": (lambda: g711.alaw_decode(alaw), n),
        "resample 24k->16k (480 samples)": (lambda: resampler.process(pcm24k), n),
        "append: parse JSON event (pydantic)": (lambda: parse_client_event(append), n),
        "append: base64.b64decode(validate=True), as before": (
            lambda: base64.b64decode(audio_b64, validate=True),
            n,
        ),
        "append: base64 decode (960 bytes)": (
            lambda: decode_base64_audio(audio_b64, AudioFormat.PCM),
            n,
        ),
        "append: buffer + resample to 16 kHz": (lambda: buffer_cycle(buffer, raw24k), n),
        "append: frame for Silero (320 samples)": (lambda: framer.frames(pcm16k), n),
        "energy gate check (one frame)": (lambda: silero.is_silent(framer, quiet_frame), n),
        "silero one frame (512 samples)": (lambda: vad.process(frame), max(n // 10, 100)),
    }
    results = {name: time_us(fn, iters) for name, (fn, iters) in cases.items()}

    width = max(map(len, results))
    print(f"{'case':<{width}}  {'median µs':>10}  {'best µs':>8}")
    for name, r in results.items():
        print(f"{name:<{width}}  {r['median_us']:>10.2f}  {r['best_us']:>8.2f}")

    print(f"wrote {write_json('audio_micro.json', {'results': results})}")


if __name__ == "__main__":
    main()
