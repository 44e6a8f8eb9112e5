"""Start one benchmark server in this process (the benchmarks run it as a subprocess).

python -m benchmarks.lib.launch llm --port P [--delay S] [--chunks N]
    The fake Chat Completions server (`fake_llm.py`) on uvicorn with uvloop + httptools.

python -m benchmarks.lib.launch openrealtime --port P --llm-url URL [--log-level L] [--stt S]
                                             [--tts T] [--control PATH] [--collect-every S]
    openrealtime as `openrealtime serve` runs it (`create_app` under `uvicorn_config`:
    websockets-sansio, uvloop, httptools, no deflate), with the session limits raised out of
    the way (the benchmarks measure capacity, not the limiter). `--stt scripted` is the
    OpenAI-compatible STT backend against the fake server's instant transcriptions: everything
    but the recogniser; `--tts scripted` likewise for speech (the fake's canned reply).
    `--control PATH` serves the side channel (`control.py`) at PATH; `--collect-every S` (a
    diagnostic) runs `gc.collect()` every S seconds.

python -m benchmarks.lib.launch openrealtime ... --workers N
    With N >= 2, the same settings go through `openrealtime serve --workers N` itself (cli.main):
    a supervisor, N worker processes, their private redis-server. Neither the side channel
    nor `--collect-every` reaches into the workers.
"""

from __future__ import annotations

import argparse
import os

import uvicorn

BENCH_API_KEY = "sk-bench"


def run_llm(port: int, delay: float, chunks: int | None) -> None:
    from .fake_llm import FakeLLM

    uvicorn.run(
        FakeLLM(chunks, delay).app(),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        lifespan="on",
    )


def run_openrealtime(args: argparse.Namespace) -> None:
    for key in list(os.environ):
        if key.startswith("OPENREALTIME_"):
            del os.environ[key]  # the benchmark decides every setting
    if args.workers > 1:
        run_workers(args)
        return
    from openrealtime import Settings, create_app
    from openrealtime.logs import configure_logging, secrets_of
    from openrealtime.server.run import Server, uvicorn_config

    from . import control

    settings = Settings(
        host="127.0.0.1",
        port=args.port,
        api_keys=[BENCH_API_KEY],
        llm_base_url=args.llm_url,
        llm_model="scripted-model",
        log_level=args.log_level,
        stt="openai" if args.stt == "scripted" else args.stt,
        stt_base_url=args.llm_url if args.stt == "scripted" else None,
        **({"tts": "openai", "tts_base_url": args.llm_url} if args.tts == "scripted" else {}),
        max_sessions=100_000,
        max_sessions_per_key=100_000,
        mcp_allow_hosts=args.mcp_allow_hosts,
        **dict(setting.split("=", 1) for setting in args.setting),
    )
    # As server.run.run does, with the app wrapped only to learn its event loop.
    configure_logging(settings.log_level, settings.log_format, secrets=secrets_of(settings))
    app = create_app(settings)
    probe = control.LoopProbe(app)
    if args.control:
        control.serve_in_thread(args.control, probe)
    if args.collect_every:
        control.collect_in_thread(args.collect_every)
    Server(uvicorn_config(settings, probe), drain=app.state.lifecycle.shutdown).run()


def run_workers(args: argparse.Namespace) -> None:
    """The settings of `run_openrealtime` as `openrealtime serve` flags, with `--workers`."""
    if args.control or args.collect_every:
        raise SystemExit("--control and --collect-every need --workers 1")
    from openrealtime.cli import main as serve

    argv = ["serve", "--host", "127.0.0.1", "--port", str(args.port), "--api-key", BENCH_API_KEY]
    argv += ["--llm-base-url", args.llm_url, "--llm-model", "scripted-model"]
    argv += ["--log-level", args.log_level, "--workers", str(args.workers)]
    if args.stt == "scripted":
        argv += ["--stt", "openai", "--stt-base-url", args.llm_url]
    else:
        argv += ["--stt", args.stt]
    if args.tts == "scripted":
        argv += ["--tts", "openai", "--tts-base-url", args.llm_url]
    argv += ["--max-sessions", "100000", "--max-sessions-per-key", "100000"]
    serve(argv)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["llm", "openrealtime"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.0, help="llm: seconds between chunks")
    parser.add_argument("--chunks", type=int, help="llm: text chunks per reply")
    parser.add_argument("--llm-url")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--stt", default="pocketsphinx", help="pocketsphinx or scripted")
    parser.add_argument("--tts", default="espeak", help="espeak or scripted (the fake's speech)")
    parser.add_argument(
        "--workers", type=int, default=1, help="openrealtime: server processes (serve --workers)"
    )
    parser.add_argument("--control", help="openrealtime: Unix socket path of the side channel")
    parser.add_argument("--mcp-allow-hosts", default="", help="openrealtime: MCP hosts allowed")
    parser.add_argument(
        "--setting", action="append", default=[], help="openrealtime: FIELD=VALUE, repeatable"
    )
    parser.add_argument(
        "--collect-every",
        type=float,
        help="openrealtime, diagnostic: gc.collect() every this many seconds",
    )
    args = parser.parse_args()
    if args.what == "llm":
        run_llm(args.port, args.delay, args.chunks)
    else:
        run_openrealtime(args)


if __name__ == "__main__":
    main()
