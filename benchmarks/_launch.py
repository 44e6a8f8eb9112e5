"""Launch one benchmark server in this process (run by `_harness.py` as a subprocess).

python benchmarks/_launch.py llm --port P
    The scripted Chat Completions server of the tests (`tests/scripted_llm.py`), instant
    replies, on uvicorn with uvloop + httptools. It also serves `GET /bench/log`: the
    `time.monotonic()` at which each chat request's body had been read (the LLM's own
    request log; CLOCK_MONOTONIC is one clock for every process on Linux) with the request
    body, and `POST /bench/reset` to empty it. `POST /v1/audio/transcriptions` is an instant
    remote STT (a fixed text), for `openrealtime --stt scripted`.

python benchmarks/_launch.py openrealtime --port P --llm-url URL [--log-level L] [--stt S]
    openrealtime exactly as `openrealtime serve` runs it: `server.run.run(Settings(...))`,
    i.e. `create_app(settings)` with `create_backends(settings)` under `uvicorn_config`
    (websockets-sansio, uvloop, httptools, no deflate).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from fastapi import Request  # module level: FastAPI resolves the endpoints' annotations here

ROOT = Path(__file__).resolve().parents[1]
BENCH_API_KEY = "sk-bench"


def run_llm(port: int) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    import uvicorn
    from scripted_llm import ScriptedLLM

    log: deque[tuple[float, dict[str, Any]]] = deque(maxlen=100_000)
    stt_log: deque[tuple[float, int]] = deque(maxlen=100_000)

    class LoggedLLM(ScriptedLLM):
        def next_reply(self, body: dict[str, Any]) -> Any:
            log.append((time.monotonic(), body))
            # Not ScriptedLLM.next_reply: it keeps every body, which grows without bound here.
            return self.default

    app = LoggedLLM().app()

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request) -> dict[str, Any]:
        # An instant remote STT: reads the upload, answers a fixed text.
        body = await request.body()
        stt_log.append((time.monotonic(), len(body)))
        return {"text": "scripted transcript"}

    @app.get("/bench/log")
    async def bench_log() -> dict[str, Any]:
        return {"requests": [[t, body] for t, body in log]}

    @app.post("/bench/reset")
    async def bench_reset() -> dict[str, Any]:
        log.clear()
        return {"ok": True}

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        lifespan="on",
    )


def run_openrealtime(port: int, llm_url: str, log_level: str, stt: str) -> None:
    for key in list(os.environ):
        if key.startswith("OPENREALTIME_"):
            del os.environ[key]  # the benchmark decides every setting
    from openrealtime.config import Settings
    from openrealtime.server.run import run

    run(
        Settings(
            host="127.0.0.1",
            port=port,
            api_keys=[BENCH_API_KEY],
            llm_base_url=llm_url,
            llm_model="scripted-model",
            log_level=log_level,
            # "scripted": the OpenAI-compatible STT backend against the scripted server's
            # instant /v1/audio/transcriptions, to measure everything but the recogniser.
            stt="openai" if stt == "scripted" else stt,
            stt_base_url=llm_url if stt == "scripted" else None,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["llm", "openrealtime"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--llm-url")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--stt", default="pocketsphinx", help="pocketsphinx (default) or scripted")
    args = parser.parse_args()
    if args.what == "llm":
        run_llm(args.port)
    else:
        run_openrealtime(args.port, args.llm_url, args.log_level, args.stt)


if __name__ == "__main__":
    main()
