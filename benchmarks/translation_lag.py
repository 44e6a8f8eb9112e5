"""Lag of a live translation session (`/v1/realtime/translations`, issue 13): from the end of a
Spanish phrase to its first translated audio and text.

Run: python -m benchmarks.translation_lag [--phrases 10] [--pause-ms 3000] [--language es];
about a minute. Prints a table and writes benchmarks/results/translation_lag[_LANG].json.

Three processes: the fake LLM (instant; it "translates" anything to its canned reply),
openrealtime on its defaults (tiny.en for voice sessions, so Whisper base, multilingual, for
translation sessions; `--stt-model`, `--translation-stt-model` change them) and hibari (the
target is English), and this client: the SDK's async `client.realtime.translations.connect`,
English output, input transcription on (`--tell-language`: with the source language named),
espeak-ng's voice of `--language` streamed in real time (20 ms chunks), each phrase followed
by `--pause-ms` of silence. The input transcript's word error rate is scored per phrase
(accents and case ignored).

Per phrase, from the client's clock: end of speech (send time of the chunk holding its last
sample above -50 dBFS) → `session.input_transcript.delta` (VAD and recognizer), → first
`session.output_transcript.delta`, → first `session.output_audio.delta`; an event's
`elapsed_ms` tells its phrase. A warm-up session of one phrase runs first (it loads Whisper
base: its lag is reported apart). CPU: the server's
over the measured session, in cores (CPU seconds per session-second).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import time
import unicodedata
from typing import Any

import numpy as np
import openai

from benchmarks.lib.clients import run
from benchmarks.lib.launch import BENCH_API_KEY
from benchmarks.lib.machine import (
    CpuMeter,
    add_common_arguments,
    apply_common_arguments,
    wait_for_quiet,
)
from benchmarks.lib.payloads import CHUNK, RATE, SPEECH_FLOOR
from benchmarks.lib.processes import OpenRealtimeProcess, start_llm
from benchmarks.lib.speech import speak
from benchmarks.lib.stats import print_table, summary_ms, write_json
from benchmarks.lib.wer import wer

now = time.monotonic

# Five everyday phrases per source language, spoken by espeak-ng's voice of that name.
PHRASES = {
    "es": [
        "hola, ¿cómo estás?",
        "me llamo Carlos y vivo en Madrid",
        "¿dónde está la estación de tren?",
        "hoy hace mucho calor en la ciudad",
        "quiero reservar una mesa para dos personas",
    ],
    "fr": [
        "bonjour, comment allez-vous ?",
        "je m'appelle Pierre et j'habite à Paris",
        "où est la gare, s'il vous plaît ?",
        "il fait très chaud aujourd'hui",
        "je voudrais réserver une table pour deux personnes",
    ],
    "de": [
        "guten Tag, wie geht es Ihnen?",
        "ich heiße Anna und wohne in Berlin",
        "wo ist der Bahnhof, bitte?",
        "heute ist es sehr warm in der Stadt",
        "ich möchte einen Tisch für zwei Personen reservieren",
    ],
    "it": [
        "ciao, come stai?",
        "mi chiamo Marco e abito a Roma",
        "dov'è la stazione dei treni?",
        "oggi fa molto caldo in città",
        "vorrei prenotare un tavolo per due persone",
    ],
    "pt": [
        "olá, como vai você?",
        "o meu nome é João e moro em Lisboa",
        "onde fica a estação de comboios?",
        "hoje está muito calor na cidade",
        "quero reservar uma mesa para duas pessoas",
    ],
}
AUDIO, TEXT = "session.output_audio.delta", "session.output_transcript.delta"
HEARD = "session.input_transcript.delta"  # the recognizer's part of the lag


def chunks_of(text: str, pause_ms: int, voice: str) -> tuple[list[str], int]:
    """The phrase in espeak's `voice`, then `pause_ms` of silence, as base64 20 ms chunks; and
    the index of the chunk holding the last speech sample."""
    pcm = speak(text, RATE, voice=voice)
    last = int(np.nonzero(np.abs(pcm.astype(np.int32)) > SPEECH_FLOOR)[0][-1])
    pcm = np.concatenate([pcm, np.zeros(-len(pcm) % CHUNK + RATE * pause_ms // 1000, np.int16)])
    raw = pcm.astype("<i2").tobytes()
    step = 2 * CHUNK
    chunks = [base64.b64encode(raw[i : i + step]).decode() for i in range(0, len(raw), step)]
    return chunks, last // CHUNK


async def session(
    url: str, phrases: list[tuple[list[str], int]], language: str | None
) -> dict[str, Any]:
    """One translation session: the end of each phrase's speech, and every event's arrival.
    `language`: the source language named to the server (an extension), or None: detected."""
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key=BENCH_API_KEY)
    ends: list[float] = []
    ends_ms: list[int] = []  # the same, on the input audio's timeline
    arrivals: list[tuple[float, str, int | None]] = []
    heard: list[tuple[int, str]] = []  # input transcript deltas, with their elapsed_ms
    transcription: Any = {"model": "whisper-1"} | ({"language": language} if language else {})
    async with client.realtime.translations.connect(model="gpt-realtime-translate") as conn:
        assert (await conn.recv()).type == "session.created"
        await conn.session.update(
            session={
                "audio": {
                    "input": {"transcription": transcription},
                    "output": {"language": "en"},
                }
            }
        )
        assert (await conn.recv()).type == "session.updated"

        async def receive() -> None:
            async for event in conn:
                elapsed = getattr(event, "elapsed_ms", None)
                arrivals.append((now(), event.type, elapsed))
                if event.type == HEARD:
                    heard.append((event.elapsed_ms, event.delta))
                if event.type in ("session.closed", "error"):
                    return

        receiver = asyncio.create_task(receive())
        start = now()
        sent = 0
        for chunks, last in phrases:
            for i, chunk in enumerate(chunks):
                await asyncio.sleep(max(0.0, start + sent * 0.02 - now()))  # real time
                await conn.session.input_audio_buffer.append(audio=chunk)
                sent += 1
                if i == last:
                    ends.append(now())
                    ends_ms.append(20 * sent)
        await conn.session.close()
        await asyncio.wait_for(receiver, 60)
    return {
        "ends": ends,
        "ends_ms": ends_ms,
        "arrivals": arrivals,
        "heard": heard,
        "wall": now() - start,
    }


def owner_of(elapsed: int, ends_ms: list[int]) -> int:
    """The phrase an event's `elapsed_ms` belongs to: the last one whose speech had ended."""
    return sum(1 for end in ends_ms if end <= elapsed) - 1


def transcripts(measured: dict[str, Any]) -> list[str]:
    """Per phrase, what the recognizer heard of it (a phrase cut in two: both parts)."""
    texts = [""] * len(measured["ends"])
    for elapsed, delta in measured["heard"]:
        if (owner := owner_of(elapsed, measured["ends_ms"])) >= 0:
            texts[owner] += delta
    return [text.strip() for text in texts]


def plain(text: str) -> str:
    """Lower case, no accents ("estación" → "estacion"), for `wer`'s ASCII normalisation."""
    text = text.lower().replace("ß", "ss")
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def lags(measured: dict[str, Any], kind: str) -> list[float | None]:
    """Per phrase, seconds from its end of speech to its first `kind` event (None: none). An
    event's `elapsed_ms` (its phrase's end on the input timeline, rounded up) names its phrase:
    the last one whose speech had ended there."""
    ends, ends_ms = measured["ends"], measured["ends_ms"]
    firsts: list[float | None] = [None] * len(ends)
    for t, type_, elapsed in measured["arrivals"]:
        if type_ != kind or elapsed is None:
            continue
        owner = owner_of(elapsed, ends_ms)
        if owner >= 0 and firsts[owner] is None:
            firsts[owner] = t - ends[owner]
    return firsts


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    said = PHRASES[args.language]
    texts = [said[i % len(said)] for i in range(args.phrases)]
    phrases = [chunks_of(text, args.pause_ms, args.language) for text in texts]
    settings = {
        field: value
        for field, value in (
            ("stt_model", args.stt_model),
            ("translation_stt_model", args.translation_stt_model),
        )
        if value
    }
    told = args.language if args.tell_language else None
    with (
        start_llm() as llm,
        OpenRealtimeProcess(
            llm, args.server_log_level, args.stt, tts=args.tts, settings=settings
        ) as server,
    ):
        background = wait_for_quiet(args.wait_quiet)
        rss_mib = {"idle": server.rss_kib() / 1024}
        # Warm-up: the first translation session loads Whisper base, the first decode builds
        # its state. Its lag is what a first user meets.
        first = await session(server.url, phrases[:1], told)
        rss_mib["after warm-up"] = server.rss_kib() / 1024
        meter = CpuMeter({"openrealtime": server, "scripted_llm": llm})
        meter.start()
        measured = await session(server.url, phrases, told)
        cpu = meter.stop()
        rss_mib["after the session"] = server.rss_kib() / 1024
    arrivals = measured["arrivals"]
    audio, text = lags(measured, AUDIO), lags(measured, TEXT)
    heard = transcripts(measured)
    return {
        "phrases_sent": len(measured["ends"]),
        "phrases_cut": len({e for _, type_, e in arrivals if type_ == AUDIO}),
        "errors": [type_ for _, type_, _ in arrivals if type_ == "error"],
        "lag_ms": {
            f"end of phrase → {name}": summary_ms([v for v in values if v is not None], (50, 95))
            for name, values in (
                ("input transcript", lags(measured, HEARD)),
                ("first output transcript", text),
                ("first output audio", audio),
            )
        },
        "phrases_without_audio": sum(1 for v in audio if v is None),
        "first_session_first_audio_ms": (lag := lags(first, AUDIO)[0]) and round(1000 * lag),
        "input_wer": round(
            wer([(plain(t), plain(h)) for t, h in zip(texts, heard, strict=True)]), 3
        ),
        "server_cpu_cores_per_session": cpu["openrealtime"],
        "cpu_cores": cpu,
        "server_rss_mib": {k: round(v, 1) for k, v in rss_mib.items()},
        "background_cores_before": background,
        "session_wall_s": round(measured["wall"], 1),
        "per_phrase_ms": [
            {"said": t, "heard": h, "text": a and round(1000 * a), "audio": b and round(1000 * b)}
            for t, h, a, b in zip(texts, heard, text, audio, strict=True)
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--phrases", type=int, default=10, help="phrases (default 10)")
    parser.add_argument("--pause-ms", type=int, default=3000, help="silence after each phrase")
    parser.add_argument("--language", default="es", choices=sorted(PHRASES), help="source")
    parser.add_argument(
        "--tell-language", action="store_true", help="name the source language to the server"
    )
    parser.add_argument("--stt", default="faster-whisper")
    parser.add_argument("--stt-model", help="the server's --stt-model (default: its own)")
    parser.add_argument(
        "--translation-stt-model", help="the server's --translation-stt-model (default: its own)"
    )
    parser.add_argument("--tts", default="hibari", help="default hibari (English)")
    add_common_arguments(parser)
    args = parser.parse_args()
    apply_common_arguments(args)
    results = run(bench(args))
    results["settings"] = vars(args)
    rows = [[name, s["n"], s["p50"], s["p95"]] for name, s in results["lag_ms"].items()]
    print_table(
        ["stage, ms", "n", "p50", "p95"],
        rows,
        f"Translation lag: {results['phrases_sent']} phrases ({args.language}), "
        f"{results['phrases_cut']} cut by the server, {results['session_wall_s']:.0f} s",
    )
    print(f"input transcript word error rate {results['input_wer']:.1%}")
    print(
        "the first session's first phrase (the recognizer loads): first audio after "
        f"{results['first_session_first_audio_ms']} ms"
    )
    print(
        f"server CPU {results['server_cpu_cores_per_session']:.2f} cores per session; RSS MiB: "
        + ", ".join(f"{k} {v}" for k, v in results["server_rss_mib"].items())
    )
    if results["errors"] or results["phrases_without_audio"]:
        print(f"errors {results['errors']}, {results['phrases_without_audio']} without audio")
    name = (
        "translation_lag.json" if args.language == "es" else f"translation_lag_{args.language}.json"
    )
    print(f"wrote {write_json(name, results)}")


if __name__ == "__main__":
    main()
