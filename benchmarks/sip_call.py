"""One SIP call: answer latency (end of the caller's speech → first loud RTP back) and the
server's CPU, idle and talking.

Run: python -m benchmarks.sip_call [--turns 6] [--stt pocketsphinx|scripted]
Prints a table and writes benchmarks/results/sip_call_STT.json. Takes about a minute.

Three processes, as in webrtc_call.py: the fake LLM (instant replies), openrealtime as
`openrealtime serve` runs it with `--sip-port`, and this one: the webhook receiver (it verifies
`realtime.call.incoming` with the official SDK and accepts with it) and the phone
(benchmarks/lib/sip_phone.py: G.711 μ-law RTP paced in real time, over UDP).

The latency counts from the end of the spoken sentence, so it includes the VAD's silence
(server_vad's default 500 ms) before the turn ends; the 20 ms packets, the recognizer, the LLM
and the speech's first chunk follow.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import time
from typing import Any

import numpy as np
import openai
from aiohttp import web

from benchmarks.lib.clients import AUTH_HEADERS, run
from benchmarks.lib.machine import CpuMeter, add_common_arguments, apply_common_arguments
from benchmarks.lib.processes import OpenRealtimeProcess, start_llm
from benchmarks.lib.sip_phone import RATE, Phone, free_sip_port
from benchmarks.lib.speech import speak, with_silence
from benchmarks.lib.stats import print_table, summary_ms, write_json

PROMPTS = ["what is the weather like today", "turn on the lights please", "tell me a joke"]
SECRET = "whsec_" + base64.b64encode(b"benchmark webhook secret, 32 b.").decode()
LEAD_MS, TAIL_MS = 200, 2500
LOUD = 300  # rms of a 20 ms frame that counts as speech


async def receive_webhooks(events: asyncio.Queue[Any]) -> tuple[web.AppRunner, str]:
    sdk = openai.OpenAI(api_key="unused", webhook_secret=SECRET)

    async def webhook(request: web.Request) -> web.Response:
        body = await request.text()
        await events.put(sdk.webhooks.unwrap(body, dict(request.headers)))
        return web.Response()

    app = web.Application()
    app.router.add_post("/webhook", webhook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_sip_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/webhook"


def first_loud_after(phone: Phone, moment: float) -> float | None:
    for at, samples in phone.heard:
        if (
            at > moment
            and len(samples)
            and np.sqrt(np.mean(samples.astype(np.float64) ** 2)) > LOUD
        ):
            return at
    return None


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    events: asyncio.Queue[Any] = asyncio.Queue()
    runner, url = await receive_webhooks(events)
    sip_port = free_sip_port()
    settings = {"sip_port": str(sip_port), "sip_webhook_url": url, "webhook_secret": SECRET}
    try:
        with (
            start_llm() as llm,
            OpenRealtimeProcess(llm, stt=args.stt, settings=settings) as server,
        ):
            meter = CpuMeter({"openrealtime": server, "scripted_llm": llm})
            key = AUTH_HEADERS["Authorization"].split()[1]
            sdk = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=key)
            phone = Phone(("127.0.0.1", sip_port))
            try:
                dialed = time.monotonic()
                await phone.dial()
                event = await asyncio.wait_for(events.get(), 10)
                webhook_s = time.monotonic() - dialed
                await sdk.realtime.calls.accept(event.data.call_id, type="realtime")
                await phone.answered()
                answer_s = time.monotonic() - dialed
                await asyncio.sleep(2)  # RTP flowing, codecs warm

                meter.start()
                await asyncio.sleep(args.idle_seconds)
                idle = meter.stop()

                speeches = [speak(p, RATE) for p in PROMPTS]
                latencies: list[float] = []
                meter.start()
                t0 = time.monotonic()
                for turn in range(args.turns):
                    speech = speeches[turn % len(speeches)]
                    started = time.monotonic()
                    phone.play(with_silence(speech, LEAD_MS, TAIL_MS, RATE))
                    spoken_end = started + LEAD_MS / 1000 + len(speech) / RATE
                    await phone.played()
                    await asyncio.sleep(3.0)  # the answer plays out
                    heard = first_loud_after(phone, spoken_end)
                    if heard is not None:
                        latencies.append(heard - spoken_end)
                wall = time.monotonic() - t0
                talk = meter.stop()
                phone.hang_up()
            finally:
                await phone.close()
                await sdk.close()
    finally:
        await runner.cleanup()
    return {
        "webhook_s": round(webhook_s, 3),
        "invite_to_200_ok_s": round(answer_s, 3),
        "answer_latency_ms": summary_ms(latencies, (50, 90)),
        "answered_turns": len(latencies),
        "turns": args.turns,
        "idle_cores": idle,
        "talk_cores": talk,
        "talk_wall_s": round(wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--turns", type=int, default=6, help="spoken turns (default 6)")
    parser.add_argument("--idle-seconds", type=float, default=5.0, help="idle phase (default 5)")
    parser.add_argument("--stt", default="pocketsphinx", help="pocketsphinx (default) or scripted")
    add_common_arguments(parser)
    args = parser.parse_args()
    apply_common_arguments(args)
    results = run(bench(args))
    results["settings"] = vars(args)
    latency = results["answer_latency_ms"]
    print_table(
        ["measure", "value"],
        [
            ["INVITE → webhook received, s", results["webhook_s"]],
            ["INVITE → 200 OK (accept through the SDK), s", results["invite_to_200_ok_s"]],
            ["end of speech → first loud RTP back, median ms", latency.get("p50")],
            ["  p90 ms", latency.get("p90")],
            ["answered turns", f"{results['answered_turns']} of {results['turns']}"],
            [
                "openrealtime CPU, idle call, % of a core",
                100 * results["idle_cores"]["openrealtime"],
            ],
            ["openrealtime CPU, talking, % of a core", 100 * results["talk_cores"]["openrealtime"]],
        ],
        f"One SIP call (stt={args.stt}, UDP, PCMU)",
    )
    path = write_json(f"sip_call_{args.stt}.json", results)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
