"""CPU cost of one WebRTC call: openrealtime's process, while an aiortc client talks to it.

Run: python -m benchmarks.webrtc_call [--seconds 20] [--stt pocketsphinx|scripted]
Prints a table and writes benchmarks/results/webrtc_call.json. Takes about a minute.

Three processes, as in voice_turn.py: the fake LLM (instant replies, "Hello from the
scripted model."), openrealtime as `openrealtime serve` runs it, and this client (aiortc, as a
browser: `oai-events` data channel, a microphone track, Opus both ways; the microphone sends
with Opus DTX, as a browser does when the answer asks for it, unless --no-dtx).

Two phases, each measured with the server's own CPU time (/proc, all its threads):
  idle   the call connected, silence both ways (the client's microphone sends a packet per
         400 ms with DTX, 50 a second without; the server's track is paused)
  talk   turn after turn for --seconds: a sentence spoken into the microphone (espeak), the
         answer played back on the server's track, 300 ms, the next sentence
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import numpy as np

from benchmarks.lib.clients import AUTH_HEADERS, run
from benchmarks.lib.machine import CpuMeter, PySpy, add_common_arguments, apply_common_arguments
from benchmarks.lib.processes import OpenRealtimeProcess, start_llm
from benchmarks.lib.speech import speak, with_silence
from benchmarks.lib.stats import print_table, write_json
from benchmarks.lib.webrtc import RATE, CallClient, PacketMicrophone, encode_opus

PROMPTS = ["what is the weather like today", "turn on the lights please", "tell me a joke"]


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    with start_llm() as llm, OpenRealtimeProcess(llm, stt=args.stt) as server:
        meter = CpuMeter({"openrealtime": server, "scripted_llm": llm})
        key = AUTH_HEADERS["Authorization"].split()[1]
        microphone = PacketMicrophone(allow_dtx=not args.no_dtx)
        client = CallClient(server.url, key, microphone=microphone)
        try:
            await client.connect(
                session={"type": "realtime", "audio": {"input": {"transcription": {"model": "x"}}}}
            )
            await client.until("session.created")
            await asyncio.sleep(2)  # connection set up, codecs warm

            spy = PySpy(server.pid, args.py_spy, args.idle_seconds)
            meter.start()
            await asyncio.sleep(args.idle_seconds)
            idle = meter.stop()
            await asyncio.to_thread(spy.wait)

            # the silence after each sentence is the microphone's own (DTX, if asked)
            utterances = [with_silence(speak(p, RATE), 200, 0, RATE) for p in PROMPTS]
            packets = [encode_opus(pcm) for pcm in utterances]
            turns = 0
            spoken_s = heard_s = 0.0
            meter.start()
            t0 = time.monotonic()
            while time.monotonic() - t0 < args.seconds:
                pcm = utterances[turns % len(utterances)]
                microphone.play(packets[turns % len(packets)])
                spoken_s += len(pcm) / RATE
                left = max(1.0, args.seconds + 10 - (time.monotonic() - t0))
                await client.until("output_audio_buffer.stopped", timeout=left)
                turns += 1
                await asyncio.sleep(0.3)
            wall = time.monotonic() - t0
            talk = meter.stop()
            stream = client.stream()
            frames = stream[: len(stream) // 960 * 960].reshape(-1, 960).astype(np.float64)
            heard_s = float((np.sqrt((frames**2).mean(axis=1)) > 300).sum()) * 0.02
        finally:
            await client.close()
    return {
        "idle_cores": idle,
        "talk_cores": talk,
        "talk_wall_s": round(wall, 1),
        "turns": turns,
        "spoken_s": round(spoken_s, 1),
        "heard_loud_s": round(heard_s, 1),
        "dtx": microphone.dtx,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="talking phase (default 20)")
    parser.add_argument("--idle-seconds", type=float, default=10.0, help="idle phase (default 10)")
    parser.add_argument("--stt", default="pocketsphinx", help="pocketsphinx (default) or scripted")
    parser.add_argument("--py-spy", metavar="FILE", help="profile the server's idle phase")
    parser.add_argument("--no-dtx", action="store_true", help="the client sends 50 packets/s")
    add_common_arguments(parser)
    args = parser.parse_args()
    apply_common_arguments(args)
    results = run(bench(args))
    results["settings"] = vars(args)
    idle, talk = results["idle_cores"], results["talk_cores"]
    print_table(
        ["phase", "openrealtime, % of a core", "client", "LLM", "other processes"],
        [
            [
                name,
                100 * cores["openrealtime"],
                100 * cores["client"],
                100 * cores["scripted_llm"],
                100 * cores["other_processes"],
            ]
            for name, cores in (("idle call", idle), ("talking", talk))
        ],
        f"One WebRTC call (stt={args.stt}, client DTX {results['dtx']}): {results['turns']} turns in "
        f"{results['talk_wall_s']} s, {results['spoken_s']} s spoken in, "
        f"{results['heard_loud_s']} s of answer heard",
    )
    path = write_json(f"webrtc_call_{args.stt}.json", results)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
