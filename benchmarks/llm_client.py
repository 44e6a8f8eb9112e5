"""What the LLM client costs openrealtime per response: the shipped backend against a lean one.

Run: python -m benchmarks.llm_client [--requests 500] [--context-sizes 2,20,100,200]
Prints tables and writes benchmarks/results/llm_client.json. Takes ~40 s.

Each streams the same Chat Completions request from the fake LLM (benchmarks/lib/fake_llm.py,
another process, instant replies of 5 content chunks) on uvloop, one request at a time:

  shipped  `OpenAIChatModel.stream()` (backends/llm/openai_chat.py, as the server runs it)
  lean     httpx.AsyncClient.stream + orjson on each SSE line: the same events out
  minimal  one keep-alive connection on asyncio streams, httptools' C parser, orjson (a floor)

Reported per request: CPU time of this (client) process — the cost the server pays per text
turn, which is what limits turns/s — and wall time to the first text delta and to the end.
CPU time is little moved by other processes on the machine; wall times are. A second table
gives the CPU per request as the context grows (instructions + N - 1 alternating turns): the
server pays it for every response of a long conversation, on its event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from benchmarks.lib.clients import run
from benchmarks.lib.machine import add_common_arguments, apply_common_arguments, wait_for_quiet
from benchmarks.lib.processes import start_llm
from benchmarks.lib.stats import print_table, summary_ms, write_json
from openrealtime.backends.llm.base import ChatTurn, Finished, LlmRequest, TextDelta, Usage
from openrealtime.backends.llm.openai_chat import OpenAIChatModel, chat_arguments

REQUEST = LlmRequest(
    instructions="You are a benchmark. Answer briefly.",
    context=(ChatTurn("user", "What is the capital of France?"),),
)


def chunk_events(data: str | bytes, ending: list[Any]) -> list[TextDelta]:
    """The text deltas of one SSE chunk; its finish reason and usage go into `ending`."""
    chunk = orjson.loads(data)
    if (u := chunk.get("usage")) is not None:
        ending[1] = Usage(u["prompt_tokens"], u["completion_tokens"])
    deltas = []
    for choice in chunk.get("choices") or ():
        if content := choice["delta"].get("content"):
            deltas.append(TextDelta(content))
        if choice.get("finish_reason"):
            ending[0] = choice["finish_reason"]
    return deltas


class LeanChatModel:
    """The same stream of events as OpenAIChatModel, on httpx (errors left out)."""

    def __init__(self, base_url: str, model: str) -> None:
        self.model = model
        self._client = httpx.AsyncClient(base_url=base_url, timeout=60)

    async def stream(self, request: LlmRequest) -> AsyncIterator[Any]:
        body = orjson.dumps(chat_arguments(request, self.model))
        ending: list[Any] = ["stop", None]  # finish reason, usage
        async with self._client.stream(
            "POST", "/chat/completions", content=body, headers={"content-type": "application/json"}
        ) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                for delta in chunk_events(line[6:], ending):
                    yield delta
        yield Finished(*ending)

    async def aclose(self) -> None:
        await self._client.aclose()


class MinimalChatModel:
    """A floor: one keep-alive connection, asyncio streams, httptools' C parser, orjson."""

    def __init__(self, host: str, port: int, model: str) -> None:
        self.host, self.port, self.model = host, port, model
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def stream(self, request: LlmRequest) -> AsyncIterator[Any]:
        import httptools

        body = orjson.dumps(chat_arguments(request, self.model))
        if self._conn is None or self._conn[0].at_eof():
            # New, or the server closed it while idle (uvicorn keeps idle ones 5 s).
            self._conn = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._conn
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: %s\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (self.host.encode(), len(body), body)
        )
        pending = bytearray()
        complete = []

        class Callbacks:
            def on_body(self, data: bytes) -> None:
                pending.extend(data)

            def on_message_complete(self) -> None:
                complete.append(True)

        parser = httptools.HttpResponseParser(Callbacks())
        ending: list[Any] = ["stop", None]  # finish reason, usage
        while not complete:
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("the LLM closed the connection")
            parser.feed_data(data)
            while (end := pending.find(b"\n\n")) >= 0:
                event = bytes(pending[:end])
                del pending[: end + 2]
                if not event.startswith(b"data: ") or event == b"data: [DONE]":
                    continue
                for delta in chunk_events(event[6:], ending):
                    yield delta
        yield Finished(*ending)

    async def aclose(self) -> None:
        if self._conn is not None:
            self._conn[1].close()


async def measure(model: Any, requests: int, warmup: int) -> dict[str, Any]:
    first, total = [], []
    for _ in range(warmup):
        async for _event in model.stream(REQUEST):
            pass
    cpu0 = time.process_time()
    for _ in range(requests):
        start = time.monotonic()
        got_first = None
        texts = 0
        async for event in model.stream(REQUEST):
            if isinstance(event, TextDelta):
                texts += 1
                if got_first is None:
                    got_first = time.monotonic()
        end = time.monotonic()
        assert texts == 5 and got_first is not None
        first.append(got_first - start)
        total.append(end - start)
    cpu = time.process_time() - cpu0
    return {
        "cpu_ms_per_request": round(1000 * cpu / requests, 3),
        "first_delta_ms": summary_ms(first),
        "whole_stream_ms": summary_ms(total),
    }


def request_with(messages: int) -> LlmRequest:
    """Instructions plus `messages` - 1 alternating user/assistant turns."""
    return LlmRequest(
        instructions=REQUEST.instructions,
        context=tuple(
            ChatTurn("user" if i % 2 == 0 else "assistant", f"message number {i}, a few words")
            for i in range(messages - 1)
        ),
    )


async def cpu_per_request(model: Any, request: LlmRequest, requests: int) -> float:
    for _ in range(3):
        async for _event in model.stream(request):
            pass
    cpu0 = time.process_time()
    for _ in range(requests):
        async for _event in model.stream(request):
            pass
    return round(1000 * (time.process_time() - cpu0) / requests, 3)


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    llm = start_llm()
    try:
        background = wait_for_quiet(args.wait_quiet)
        shipped = OpenAIChatModel(llm.url + "/v1", "scripted-model", None)
        lean = LeanChatModel(llm.url + "/v1", "scripted-model")
        minimal = MinimalChatModel("127.0.0.1", llm.port, "scripted-model")
        models = {"shipped": shipped, "lean": lean, "minimal": minimal}
        results = {}
        # Interleaved rounds, so all see the same machine.
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in models}
        per_round = max(1, args.requests // args.rounds)
        for _ in range(args.rounds):
            for name, model in models.items():
                rounds[name].append(await measure(model, per_round, 10))
        for name, parts in rounds.items():
            results[name] = {
                "cpu_ms_per_request": round(
                    sum(p["cpu_ms_per_request"] for p in parts) / len(parts), 3
                ),
                "cpu_ms_per_request_rounds": [p["cpu_ms_per_request"] for p in parts],
                "first_delta_ms_p50_rounds": [p["first_delta_ms"]["p50"] for p in parts],
                "whole_stream_ms_p50_rounds": [p["whole_stream_ms"]["p50"] for p in parts],
            }
        # How the cost grows with the conversation (the context sent with every response).
        results["cpu_ms_by_messages"] = {}
        for size in [int(x) for x in args.context_sizes.split(",") if x]:
            request = request_with(size)
            results["cpu_ms_by_messages"][size] = {
                name: await cpu_per_request(model, request, args.context_requests)
                for name, model in models.items()
            }
        for model in models.values():
            await model.aclose()
    finally:
        llm.stop()
    return {"requests": per_round * args.rounds, "background_cores_before": background, **results}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--context-sizes",
        default="2,20,100,200",
        help="messages per request for the CPU-vs-context table (default 2,20,100,200)",
    )
    parser.add_argument("--context-requests", type=int, default=50)
    add_common_arguments(parser)
    args = parser.parse_args()
    apply_common_arguments(args)
    results = run(bench(args))
    rows = []
    for name in ("shipped", "lean", "minimal"):
        r = results[name]
        rows.append(
            [
                name,
                r["cpu_ms_per_request"],
                min(r["first_delta_ms_p50_rounds"]),
                min(r["whole_stream_ms_p50_rounds"]),
            ]
        )
    print_table(
        ["LLM client", "CPU ms/request", "first delta p50 ms", "whole stream p50 ms"],
        rows,
        f"{results['requests']} streamed requests each (best round's p50 shown)",
    )
    by_size = results["cpu_ms_by_messages"]
    print_table(
        ["messages", "shipped CPU ms", "lean CPU ms", "minimal CPU ms"],
        [[size, r["shipped"], r["lean"], r["minimal"]] for size, r in by_size.items()],
        f"CPU per request as the context grows ({args.context_requests} requests each)",
    )
    results["settings"] = vars(args)
    print(f"wrote {write_json('llm_client.json', results)}")


if __name__ == "__main__":
    main()
