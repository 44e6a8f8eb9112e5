"""Word error rate and decode time of every installed recognizer, on speech made here.

Run: python -m benchmarks.transcription_quality [--sentences 44] [--recognizers all]
     [--api-sentences 10]
Prints tables and writes benchmarks/results/transcription_quality.json. About 28 minutes of
one core with Whisper base and Festival installed (396 clips; CPU per clip: Whisper tiny.en
~0.85 s, base ~1.8 s, pocketsphinx ~1.3 s).

The set: SENTENCES (written once, not tuned to any model: commands, questions, names, numbers,
dates, long and short) spoken in every VOICE: hibari's one offline voice at two speeds and
played 12% slower (pitch and tempo down, a lower voice), espeak-ng with four voices/variants,
one of them faster, and Festival's diphone voice (kal, male) and HMM voice (slt, female) when
Debian's `festival`, `festvox-kallpc16k` and `festvox-us-slt-hts` are installed (skipped with a
note otherwise): more natural than espeak, and made by neither of the server's synthesizers.
Each clip gets 300 ms of silence either side, as the VAD would keep. Scores are given per voice,
per synthesizer and over all clips.

Recognizers run through openrealtime's own backend classes (`FasterWhisperTranscriber`,
`PocketsphinxTranscriber`: the code the server runs), one clip at a time, after `load()`. Whisper
base is measured if its weights are installed (`openrealtime[whisper-base]`, or base.en in the
hub cache; nothing is downloaded). HTTP
recognizers are skipped. Per clip: decode wall time, the process's CPU time, real-time factor.

The product path: `--api-sentences` sentences in two voices are also sent through the Realtime
API (a server with the default recognizer, `?intent=transcription`, no VAD, append + commit) and
the `…transcription.completed` words are compared with the backend's own on the same audio.

Word error rate: (substitutions + deletions + insertions) / reference words, summed over the
clips, after the usual jiwer/Whisper-style normalisation (`benchmarks/lib/wer.py`).

Real recorded speech: the script looks for audio files inside the installed packages; none
ships any with a transcript here (see `found_audio` in the JSON), so the set is synthetic.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import soxr

from benchmarks.lib.clients import connect_session, recv_until, run, start_session
from benchmarks.lib.machine import add_common_arguments, apply_common_arguments, loadavg
from benchmarks.lib.processes import OpenRealtimeProcess, start_llm
from benchmarks.lib.speech import Engine, festival_voices, speak, with_silence
from benchmarks.lib.stats import print_table, summary_ms, write_json
from benchmarks.lib.wer import normalise, wer
from openrealtime.backends.stt.base import Transcriber, TranscriptDone, TranscriptionOptions

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # measure what is installed; never download

API_RATE, STT_RATE = 24000, 16000
PAD_MS = 300

SENTENCES = [
    "Turn on the lights in the kitchen.",
    "What is the weather like today?",
    "Set a timer for fifteen minutes.",
    "Remind me to call the dentist on Monday morning.",
    "How far is it from Paris to Berlin?",
    "Please send an email to Sarah saying I will be late.",
    "The meeting has been moved to half past three.",
    "Can you play something relaxing while I cook dinner?",
    "My flight leaves at 7:45 tomorrow evening.",
    "Add two pounds of apples and a loaf of bread to the list.",
    "Who wrote the novel Pride and Prejudice?",
    "I would like to book a table for four people at eight.",
    "The quick brown fox jumps over the lazy dog.",
    "Turn the volume down, the baby is sleeping.",
    "What is twelve multiplied by nine?",
    "Our office is on the third floor of the blue building.",
    "Cancel my subscription and refund the last payment.",
    "She sold her old bicycle for forty dollars.",
    "Is the pharmacy on Main Street open on Sundays?",
    "Translate good morning into Spanish.",
    "The train to Edinburgh is delayed by twenty minutes.",
    "Please read me the first chapter again.",
    "How many calories are in a banana?",
    "We need to water the plants before we leave for the weekend.",
    "Call me back when you get a chance.",
    "The temperature will drop below freezing tonight.",
    "Open the window, it is getting warm in here.",
    "What year did the Second World War end?",
    "Schedule a call with the design team next Thursday.",
    "Could you explain how a rainbow forms?",
    "My password does not work anymore.",
    "Find a recipe for chocolate chip cookies without eggs.",
    "The children are playing football in the park.",
    "How long should I boil an egg for a soft yolk?",
    "Lock the front door and switch off the heating.",
    "There are 365 days in a year and 366 in a leap year.",
    "Where did I park the car this morning?",
    "Give me three ideas for a birthday present.",
    "The museum closes at five on weekdays.",
    "I think I left my glasses on the kitchen table.",
    "Please spell the word Wednesday for me.",
    "What is the difference between a virus and a bacterium?",
    "Tell me a short story about a dragon and a knight.",
    "Thank you, that will be all for now.",
]


@dataclass(frozen=True)
class Voice:
    name: str
    engine: Engine
    voice: str
    speed: float = 1.0
    tape: float = 1.0  # < 1: played slower than made, so lower in pitch and tempo


VOICES = [
    Voice("hibari heart", "hibari", "heart"),
    Voice("hibari heart x1.3", "hibari", "heart", 1.3),
    Voice("hibari heart, tape x0.88", "hibari", "heart", tape=0.88),
    Voice("espeak en-us", "espeak", "en-us"),
    Voice("espeak en-us x1.35", "espeak", "en-us", 1.35),
    Voice("espeak en-us+f3", "espeak", "en-us+f3"),
    Voice("espeak en-gb+m3", "espeak", "en-gb+m3"),
    Voice("festival kal diphone", "festival", "kal_diphone"),
    Voice("festival slt hts", "festival", "cmu_us_slt_arctic_hts"),
]
API_VOICES = ("hibari heart", "espeak en-us")


# --- the clips ------------------------------------------------------------------------------


@dataclass
class Clip:
    text: str
    voice: str
    pcm24k: np.ndarray  # what a Realtime API client sends
    pcm16k: bytes  # what the recognizer gets (resampled as the server does, with soxr)

    @property
    def seconds(self) -> float:
        return len(self.pcm16k) / 2 / STT_RATE


def make_clip(text: str, voice: Voice) -> Clip:
    made = speak(text, API_RATE, voice.voice, voice.speed, engine=voice.engine)
    if voice.tape != 1.0:  # same samples at a lower rate: stretch them back to API_RATE
        made = np.asarray(soxr.resample(made, API_RATE * voice.tape, API_RATE), np.int16)
    pcm = with_silence(made, PAD_MS, PAD_MS, API_RATE)
    pcm16k = np.asarray(soxr.resample(pcm, API_RATE, STT_RATE), np.int16).tobytes()
    return Clip(text, voice.name, pcm, pcm16k)


def found_audio() -> list[str]:
    """Audio files inside the installed packages (candidates for real recorded speech)."""
    suffixes = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".sph"}
    found = []
    for root in {p for p in sys.path if p.endswith("site-packages")}:
        for path in Path(root).rglob("*"):
            if path.suffix.lower() in suffixes:
                found.append(str(path.relative_to(root)))
    return sorted(found)


# --- recognizers ----------------------------------------------------------------------------


@dataclass(frozen=True)
class WhisperDecode:
    """How a Whisper model decodes: `short` (the 10 s window, falling back to 30 s) or the 30 s
    window, the beam, and options passed through to faster-whisper's `transcribe` (30 s window
    only): `temperature=0` (no temperature fallback), `without_timestamps=True`."""

    short: bool
    beam_size: int
    extra: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def parse(cls, spec: str) -> WhisperDecode:
        """`short:5`, `30s:1`, `30s:5:no-fallback`, `30s:5:no-timestamps` (options combine)."""
        window, beam, *options = spec.split(":")
        known = {"no-fallback": ("temperature", 0.0), "no-timestamps": ("without_timestamps", True)}
        if window not in ("short", "30s") or not beam.isdigit() or not set(options) <= set(known):
            raise argparse.ArgumentTypeError(
                f"bad decode {spec!r}: e.g. short:5, 30s:5:no-fallback"
            )
        if options and window == "short":
            raise argparse.ArgumentTypeError(f"{spec!r}: options apply to the 30 s window only")
        return cls(window == "short", int(beam), tuple(known[o] for o in options))

    def label(self) -> str:
        opts = "".join(f" {k}={v}" for k, v in self.extra)
        return f"{'short' if self.short else '30s'} beam {self.beam_size}{opts}"


class _WithOptions:
    """A loaded faster-whisper model whose `transcribe` gets extra keyword arguments."""

    def __init__(self, model: Any, extra: dict[str, Any]) -> None:
        self._model, self._extra = model, extra

    def transcribe(self, audio: np.ndarray, **kwargs: Any) -> Any:
        return self._model.transcribe(audio, **{**kwargs, **self._extra})


def installed_recognizers(
    wanted: set[str] | None, decodes: list[WhisperDecode]
) -> dict[str, Callable[[], Transcriber]]:
    """Each recognizer's name and a function that builds and loads it."""
    out: dict[str, Callable[[], Transcriber]] = {}
    try:
        from openrealtime.backends.stt.faster_whisper import FasterWhisperTranscriber
        from openrealtime.backends.stt.whisper_weights import locate_model
    except ImportError:
        pass
    else:
        for name in ("tiny.en", "base.en", "base"):
            try:
                model_dir = locate_model(name)
            except Exception:  # not packaged and not in the hub cache: not installed
                continue
            for decode in decodes:

                def build(model_dir: str = model_dir, d: WhisperDecode = decode) -> Transcriber:
                    t = FasterWhisperTranscriber(
                        model_dir, short_window=d.short, beam_size=d.beam_size
                    )
                    t.load()
                    if not d.extra:
                        return t
                    # The same loaded weights, through the backend, with the options added.
                    assert t._model is not None
                    model = _WithOptions(t._model, dict(d.extra))
                    return FasterWhisperTranscriber(model_dir, beam_size=d.beam_size, _model=model)

                out[f"whisper {name} {decode.label()}"] = build
    try:
        from openrealtime.backends.stt.pocketsphinx import PocketsphinxTranscriber
    except ImportError:
        pass
    else:

        def pocketsphinx() -> Transcriber:
            t = PocketsphinxTranscriber()
            t.load()
            return t

        out["pocketsphinx"] = pocketsphinx
    return {k: v for k, v in out.items() if wanted is None or k.startswith(tuple(wanted))}


@dataclass
class Decode:
    text: str
    voice: str
    heard: str
    wall: float
    cpu: float
    seconds: float


async def decode_all(recognizer: Transcriber, clips: list[Clip]) -> list[Decode]:
    options = TranscriptionOptions(language="en")
    out = []
    for clip in clips:
        wall, cpu = time.perf_counter(), time.process_time()
        events = [e async for e in recognizer.transcribe(clip.pcm16k, options)]
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        done = events[-1]
        assert isinstance(done, TranscriptDone)
        out.append(Decode(clip.text, clip.voice, done.text, wall, cpu, clip.seconds))
    return out


def scores(decodes: list[Decode]) -> dict[str, Any]:
    audio = sum(d.seconds for d in decodes)
    return {
        "clips": len(decodes),
        "wer": round(100 * wer([(d.text, d.heard) for d in decodes]), 1),
        "sentences_exact": sum(normalise(d.text) == normalise(d.heard) for d in decodes),
        "decode_wall_ms": summary_ms([d.wall for d in decodes], (50, 95)),
        "decode_cpu_ms": summary_ms([d.cpu for d in decodes], (50, 95)),
        "rtf_wall": round(sum(d.wall for d in decodes) / audio, 3),
        "audio_s": round(audio, 1),
    }


# --- the product path -----------------------------------------------------------------------


async def through_api(clips: list[Clip], log_level: str) -> list[str]:
    """Each clip's completed transcript from a server running the default recognizer."""
    session = {
        "type": "transcription",
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": API_RATE},
                "transcription": {"model": "whisper-1", "language": "en"},
                "turn_detection": None,
            }
        },
    }
    heard = []
    with start_llm() as llm, OpenRealtimeProcess(llm, log_level, "faster-whisper") as server:
        url = server.ws_url.replace("model=gpt-realtime", "intent=transcription")
        ws = await connect_session(url)
        await start_session(
            ws, orjson.dumps({"type": "session.update", "session": session}).decode()
        )
        for clip in clips:
            raw = clip.pcm24k.astype("<i2").tobytes()
            for start in range(0, len(raw), 9600):  # 200 ms appends
                audio = base64.b64encode(raw[start : start + 9600]).decode()
                await ws.send(
                    orjson.dumps({"type": "input_audio_buffer.append", "audio": audio}).decode()
                )
            await ws.send(b'{"type": "input_audio_buffer.commit"}'.decode())
            done = await recv_until(
                ws, "conversation.item.input_audio_transcription.completed", timeout=60
            )
            heard.append(done["transcript"])
        await ws.close()
    return heard


# --- main -----------------------------------------------------------------------------------


def available_voices() -> tuple[list[Voice], list[str]]:
    """The voices this machine can make, and a note for each one it cannot."""
    voices, skipped = [], []
    for voice in VOICES:
        if voice.engine == "festival" and voice.voice not in festival_voices():
            skipped.append(f"{voice.name}: festival voice {voice.voice} is not installed")
        else:
            voices.append(voice)
    return voices, skipped


def by_engine(voices: list[Voice], decodes: list[Decode]) -> dict[str, Any]:
    out = {}
    for engine in dict.fromkeys(v.engine for v in voices):
        names = {v.name for v in voices if v.engine == engine}
        out[f"all {engine}"] = scores([d for d in decodes if d.voice in names])
    return out


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    texts = SENTENCES[: args.sentences]
    voices, skipped = available_voices()
    started = time.perf_counter()
    clips = [make_clip(text, voice) for voice in voices for text in texts]
    made_s = time.perf_counter() - started
    results: dict[str, Any] = {
        "load_average_before": loadavg(),
        "synthesis_s": made_s,
        "voices": [v.name for v in voices],
        "voices_skipped": skipped,
    }
    wanted = None if args.recognizers == "all" else set(args.recognizers.split(","))
    recognizers = installed_recognizers(wanted, args.decodes)
    default = f"whisper tiny.en {args.decodes[0].label()}"  # what the API path is compared with
    per_recognizer: dict[str, Any] = {}
    for name, build in recognizers.items():
        loaded = time.perf_counter()
        recognizer = build()
        decodes = await decode_all(recognizer, clips)
        per_recognizer[name] = {
            "load_s": round(time.perf_counter() - loaded - sum(d.wall for d in decodes), 2),
            "all": scores(decodes),
            "by_voice": {v.name: scores([d for d in decodes if d.voice == v.name]) for v in voices},
            "by_engine": by_engine(voices, decodes),
            "errors": [
                {"voice": d.voice, "said": d.text, "heard": d.heard}
                for d in decodes
                if normalise(d.text) != normalise(d.heard)
            ],
        }
        if name == default:
            results["_tiny"] = decodes
        await recognizer.aclose()
    results["recognizers"] = per_recognizer
    tiny: list[Decode] = results.pop("_tiny", [])
    if args.api_sentences and tiny:
        subset = [
            (c, d)
            for c, d in zip(clips, tiny, strict=True)
            if c.voice in API_VOICES and c.text in texts[: args.api_sentences]
        ]
        heard = await through_api([c for c, _ in subset], args.server_log_level)
        results["api"] = {
            "clips": len(subset),
            "same_words": sum(
                normalise(h) == normalise(d.heard) for (_, d), h in zip(subset, heard, strict=True)
            ),
            "wer_api": round(
                100 * wer([(c.text, h) for (c, _), h in zip(subset, heard, strict=True)]), 1
            ),
            "wer_backend": round(100 * wer([(c.text, d.heard) for c, d in subset]), 1),
            "pairs": [
                {"said": c.text, "voice": c.voice, "backend": d.heard, "api": h}
                for (c, d), h in zip(subset, heard, strict=True)
            ],
        }
    results["load_average_after"] = loadavg()
    results["found_audio"] = found_audio()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sentences", type=int, default=len(SENTENCES))
    parser.add_argument(
        "--recognizers",
        default="all",
        help="all, or names or their beginnings, e.g. 'whisper tiny.en,pocketsphinx'",
    )
    parser.add_argument(
        "--decodes",
        type=lambda text: [WhisperDecode.parse(s) for s in text.split(",")],
        default=[WhisperDecode(True, 5), WhisperDecode(False, 5)],
        help="Whisper decodes to measure, WINDOW:BEAM[:OPTION...] comma-separated; WINDOW short "
        "or 30s, OPTION no-fallback or no-timestamps (30s only); the first is the server's "
        "(the API path is compared with it). Default: short:5,30s:5",
    )
    parser.add_argument("--api-sentences", type=int, default=10, help="0 skips the API path")
    add_common_arguments(parser)
    args = parser.parse_args()
    apply_common_arguments(args)
    results = run(bench(args))
    results["settings"] = {**vars(args), "decodes": [d.label() for d in args.decodes]}
    for name, r in results["recognizers"].items():
        rows = [
            [
                voice,
                s["clips"],
                s["wer"],
                s["sentences_exact"],
                s["decode_wall_ms"]["p50"],
                s["decode_wall_ms"]["p95"],
                s["decode_cpu_ms"]["p50"],
                s["rtf_wall"],
            ]
            for voice, s in [*r["by_voice"].items(), *r["by_engine"].items(), ("all", r["all"])]
        ]
        print_table(
            ["voice", "clips", "WER %", "exact", "wall p50 ms", "wall p95 ms", "CPU p50 ms", "RTF"],
            rows,
            f"{name} (loaded in {r['load_s']} s)",
        )
    api = results.get("api")
    if api:
        print(
            f"Realtime API (transcription session) vs the backend, {api['clips']} clips: "
            f"same words in {api['same_words']}; WER {api['wer_api']}% vs {api['wer_backend']}%"
        )
    for note in results["voices_skipped"]:
        print(f"skipped {note}")
    print(f"audio files inside installed packages: {results['found_audio'] or 'none'}")
    print(
        f"load average before/after: {results['load_average_before']} / {results['load_average_after']}"
    )
    print(f"wrote {write_json('transcription_quality.json', results)}")


if __name__ == "__main__":
    main()
