"""semantic_vad (Smart Turn) against server_vad 500 ms: how soon a finished sentence ends its
turn, and how many unfinished ones are cut at a mid-sentence pause.

Run: python -m benchmarks.semantic_vad [--sentences 22] [--pause-ms 700] [--trailing-ms 8500]
     [--nice -10]
Prints a table and writes benchmarks/results/semantic_vad.json. Takes ~12 minutes at the
defaults: audio is paced in real time (20 ms chunks at t0 + k x 20 ms).

openrealtime runs in this process (uvicorn in a thread; no response is created). Each sentence
is spoken whole by each voice (espeak-ng en-us, hibari heart), then sent twice:
- *complete*: the sentence, then `--trailing-ms` of silence (long enough for every mode's
  longest wait). Measured: end of speech (the clip's last sample, by construction) →
  `speech_stopped` received by the client.
- *unfinished*: the same recording with `--pause-ms` of silence inserted at the word boundary
  marked `|` ("I would like to order a | pizza with mushrooms"), then the rest and the
  trailing silence. The pause is spliced into the whole sentence, not made by speaking the two
  halves apart: a synthesizer ends each text it is given on a falling, finished intonation,
  which no speaker pausing mid-phrase has. The boundary is the quietest 10 ms within 150 ms of
  where the first half, spoken alone, ends. Counted: a turn ended at the pause
  (`speech_stopped` with `audio_end_ms` before the rest begins).
Every clip goes to five sessions at once — server_vad 500 ms and semantic_vad at each
eagerness — each started `--stagger-ms` after the previous, so that their pauses, and the
end-of-turn model's calls, do not all fall at the same instant. The thresholds and waits are
the server's own (core/turns.py, from OpenAI's eagerness semantics), not fitted to these
sentences. The model's calls are timed in the server (queue + features + inference).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import threading
import time
from typing import Any
from urllib.request import urlopen

import numpy as np
import orjson
import uvicorn

from benchmarks.lib.clients import connect_session, start_session
from benchmarks.lib.launch import BENCH_API_KEY
from benchmarks.lib.machine import add_common_arguments, apply_common_arguments
from benchmarks.lib.speech import speak
from benchmarks.lib.stats import percentile, print_table, summary_ms, write_json
from openrealtime.backends.registry import create_backends
from openrealtime.config import Settings
from openrealtime.runtime import turn_judge
from openrealtime.server.app import create_app

RATE = 24000
CHUNK = RATE // 50  # 20 ms
LEAD_MS = 300
VOICES = {"espeak": "en-us", "hibari": "heart"}
# Requests a voice agent hears, each with a place where a speaker might stop to think.
SENTENCES = [
    "I would like to order a | pizza with mushrooms",
    "turn on the lights in the | kitchen please",
    "what is the weather going to be | like tomorrow",
    "can you remind me to call my | mother this evening",
    "play some relaxing music in the | living room",
    "how long does it take to | drive to the airport",
    "I need a taxi to the | train station at six",
    "set an alarm for | seven in the morning",
    "send a message to | my brother about dinner",
    "what time does the | pharmacy close today",
    "add eggs and milk to my | shopping list",
    "book a table for two at the | italian restaurant",
    "tell me a story about a | dragon and a knight",
    "how many calories are in a | bowl of rice",
    "I want to change my | flight to friday",
    "find me a hotel near the | city centre",
    "what is the capital of | australia",
    "please read me the | latest news headlines",
    "could you turn the volume | down a little",
    "schedule a meeting with the | design team on monday",
    "where did I leave my | car keys yesterday",
    "how do I get to the | nearest post office",
]
CONFIGS: dict[str, dict[str, Any]] = {
    "server_vad 500": {"type": "server_vad", "silence_duration_ms": 500},
    "semantic high": {"type": "semantic_vad", "eagerness": "high"},
    "semantic medium": {"type": "semantic_vad", "eagerness": "medium"},
    "semantic auto": {"type": "semantic_vad", "eagerness": "auto"},
    "semantic low": {"type": "semantic_vad", "eagerness": "low"},
}


# --- speech ---------------------------------------------------------------------------------


def trimmed(pcm: np.ndarray) -> np.ndarray:
    level = np.abs(pcm.astype(np.int32))
    loud = np.flatnonzero(level > level.max() * 0.01)
    return pcm[loud[0] : loud[-1] + 1]


def boundary(whole: np.ndarray, near: int) -> int:
    """The quietest 10 ms of `whole` within 150 ms of sample `near`: the gap between two words."""
    step = RATE // 100
    reach = 15 * step
    lo, hi = max(0, near - reach), min(len(whole) - step, near + reach)
    starts = np.arange(lo, hi, step)
    energy = [np.mean(whole[s : s + step].astype(np.float64) ** 2) for s in starts]
    return int(starts[int(np.argmin(energy))] + step // 2)


def clips(voice: str, sentence: str, pause_ms: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The sentence whole; the same with a pause at its `|`; where (samples) the rest resumes."""
    first, rest = (part.strip() for part in sentence.split("|"))
    engine: Any = voice
    whole = trimmed(speak(f"{first} {rest}", RATE, VOICES[voice], engine=engine))
    alone = trimmed(speak(first, RATE, VOICES[voice], engine=engine))
    at = boundary(whole, len(alone))
    gap = np.zeros(RATE * pause_ms // 1000, np.int16)
    return whole, np.concatenate([whole[:at], gap, whole[at:]]), at + len(gap)


# --- the server -----------------------------------------------------------------------------


class Server:
    def __init__(self, settings: Settings) -> None:
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


def timed_judge(calls_s: list[float]) -> None:
    """Time each end-of-turn call in the server, from the effect to the answer on the loop."""
    judge = turn_judge.probability_complete

    async def timed(pcm16k: np.ndarray) -> float | None:
        start = time.perf_counter()
        try:
            return await judge(pcm16k)
        finally:
            calls_s.append(time.perf_counter() - start)

    turn_judge.probability_complete = timed  # type: ignore[assignment]


def update(detection: dict[str, Any]) -> str:
    audio = {"turn_detection": {**detection, "create_response": False}}
    session = {"type": "realtime", "output_modalities": ["text"], "audio": {"input": audio}}
    return orjson.dumps({"type": "session.update", "session": session}).decode()


def append(pcm: np.ndarray) -> str:
    audio = base64.b64encode(pcm.tobytes()).decode()
    return orjson.dumps({"type": "input_audio_buffer.append", "audio": audio}).decode()


async def paced(
    url: str, detection: dict[str, Any], pcm: np.ndarray, delay_s: float, done_after_ms: float
) -> tuple[float, list[tuple[float, int]]]:
    """Stream `pcm` in real time after `delay_s`; stop 300 ms after a `speech_stopped` whose
    `audio_end_ms` is past `done_after_ms`. Returns t0 and each `speech_stopped` as (arrival
    in monotonic s, audio_end_ms)."""
    await asyncio.sleep(delay_s)
    ws = await connect_session(url)
    await start_session(ws, update(detection))
    stops: list[tuple[float, int]] = []
    finished = asyncio.Event()

    async def receive() -> None:
        async for raw in ws:
            event = orjson.loads(raw)
            if event["type"] == "input_audio_buffer.speech_stopped":
                stops.append((time.monotonic(), event["audio_end_ms"]))
                if event["audio_end_ms"] >= done_after_ms:
                    finished.set()
            elif event["type"] == "error":
                print(event, flush=True)

    receiver = asyncio.create_task(receive())
    t0 = time.monotonic()
    for k, start in enumerate(range(0, len(pcm), CHUNK)):
        await asyncio.sleep(max(0.0, t0 + k * 0.02 - time.monotonic()))
        if finished.is_set():
            break
        await ws.send(append(pcm[start : start + CHUNK]))
    await asyncio.sleep(0.3)  # an answer still on its way
    receiver.cancel()
    await ws.close()
    return t0, stops


# --- the measurement ------------------------------------------------------------------------


async def measure(
    url: str, texts: list[str], pause_ms: int, trailing_ms: int, stagger_ms: int
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    lead = np.zeros(RATE * LEAD_MS // 1000, np.int16)
    tail = np.zeros(RATE * trailing_ms // 1000, np.int16)
    for voice in VOICES:
        for text in texts:
            whole, paused, resume = clips(voice, text, pause_ms)
            for complete, speech in ((True, whole), (False, paused)):
                pcm = np.concatenate([lead, speech, tail])
                end_ms = LEAD_MS + len(speech) * 1000 / RATE
                resume_ms = LEAD_MS + resume * 1000 / RATE
                results = await asyncio.gather(
                    *(
                        paced(url, detection, pcm, i * stagger_ms / 1000, end_ms)
                        for i, detection in enumerate(CONFIGS.values())
                    )
                )
                for name, (t0, stops) in zip(CONFIGS, results, strict=True):
                    final = [arrival for arrival, audio_end in stops if audio_end >= end_ms]
                    cut = any(audio_end < resume_ms for _, audio_end in stops)
                    rows.append(
                        {
                            "voice": voice,
                            "text": text,
                            "complete": complete,
                            "config": name,
                            "stop_s": final[0] - t0 - end_ms / 1000 if final else None,
                            "cut_at_pause": None if complete else cut,
                        }
                    )
                print(
                    f"  {voice:6} {'complete  ' if complete else 'unfinished'} {text}", flush=True
                )
    return rows


def ms(seconds: float) -> int | None:
    return None if seconds != seconds else round(seconds * 1000)  # nan: nothing measured


def summarise(rows: list[dict[str, Any]]) -> tuple[dict[str, Any], list[list[Any]]]:
    summary: dict[str, Any] = {}
    table = []
    for name in CONFIGS:
        mine = [r for r in rows if r["config"] == name]
        complete = [r for r in mine if r["complete"]]
        unfinished = [r for r in mine if not r["complete"]]
        ends = [r["stop_s"] for r in complete if r["stop_s"] is not None]
        sooner = sum(1 for s in ends if s < 0.5)
        not_ended = len(complete) - len(ends)
        cut = sum(1 for r in unfinished if r["cut_at_pause"])
        per_voice = {
            voice: {
                "complete_p50_ms": ms(
                    percentile(
                        [
                            r["stop_s"]
                            for r in complete
                            if r["voice"] == voice and r["stop_s"] is not None
                        ],
                        50,
                    )
                ),
                "cut": sum(1 for r in unfinished if r["voice"] == voice and r["cut_at_pause"]),
                "unfinished": sum(1 for r in unfinished if r["voice"] == voice),
            }
            for voice in VOICES
        }
        p50, p95 = (ms(percentile(ends, q)) for q in (50, 95))
        summary[name] = {
            "complete_end_to_stopped_ms": {"p50": p50, "p95": p95, "n": len(ends)},
            "complete_within_500_ms": sooner,
            "complete_not_ended": not_ended,
            "unfinished_cut_at_pause": cut,
            "unfinished_total": len(unfinished),
            "per_voice": per_voice,
        }
        voices = ", ".join(f"{v} {d['complete_p50_ms']}/{d['cut']}" for v, d in per_voice.items())
        table.append(
            [
                name,
                p50,
                p95,
                f"{sooner}/{len(complete)}",
                not_ended,
                f"{cut}/{len(unfinished)}",
                voices,
            ]
        )
    return summary, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=len(SENTENCES))
    parser.add_argument("--pause-ms", type=int, default=700)
    parser.add_argument("--trailing-ms", type=int, default=8500)
    parser.add_argument("--stagger-ms", type=int, default=400)
    add_common_arguments(parser)
    args = parser.parse_args()
    apply_common_arguments(args)
    texts = SENTENCES[: args.sentences]
    load_before = os.getloadavg()
    calls_s: list[float] = []
    timed_judge(calls_s)
    settings = Settings(
        api_keys=[BENCH_API_KEY], llm_base_url="http://127.0.0.1:9/v1", llm_model="none"
    )
    print(f"{len(texts)} sentences x {len(VOICES)} voices x complete/unfinished, 5 sessions each:")
    with Server(settings) as url:
        rows = asyncio.run(measure(url, texts, args.pause_ms, args.trailing_ms, args.stagger_ms))
    load_after = os.getloadavg()
    summary, table = summarise(rows)
    print_table(
        [
            "turn detection",
            "complete: end→stopped p50 ms",
            "p95 ms",
            "under 500 ms",
            "not ended",
            f"unfinished cut at the {args.pause_ms} ms pause",
            "per voice: p50 ms/cut",
        ],
        table,
        title=f"{len(texts)} sentences, voices {', '.join(VOICES)}",
    )
    calls = summary_ms(calls_s)
    print(
        f"Smart Turn calls in the server (queue + features + model): n {calls['n']}, "
        f"p50 {calls['p50']:.0f} ms, p95 {calls['p95']:.0f} ms"
    )
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    path = write_json(
        "semantic_vad.json",
        {
            "args": vars(args),
            "turn_ends": summary,
            "judge_calls_ms": calls,
            "rows": rows,
            "loadavg": {"before": load_before, "after": load_after},
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
