"""What metrics cost a request: CPU time (not wall time: the machine may be busy) of the
metrics hook's ``admit`` + ``after`` per request, of the byte relay keeping a stream's
last chunks, per chunk, and of reading the usage from a stream's ends, per stream; set
against keeping the last 8 KiB by concatenation and parsing every event of it.

    python benchmarks/metrics_cost.py [--requests 20000] [--quick]

Prints a table and writes benchmarks/results/metrics_cost.json (.quick.json with --quick).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from starlette.datastructures import Headers

from dsdeploy.gateway.context import RequestContext, Usage
from dsdeploy.gateway.metrics import GatewayMetrics
from dsdeploy.gateway.relay import TAIL_CHUNKS, record_usage_from
from dsdeploy.gateway.sse import SseParser

RESULTS = Path(__file__).parent / "results"
CHUNK = (
    b'data: {"choices":[{"finish_reason":null,"index":0,"delta":{"content":" tok"}}],'
    b'"created":1,"id":"chatcmpl-x","model":"smollm2","system_fingerprint":"b1-abc",'
    b'"object":"chat.completion.chunk"}\n\n'
)
FINAL = (
    b'data: {"choices":[],"usage":{"prompt_tokens":30,"completion_tokens":128,'
    b'"total_tokens":158}}\n\ndata: [DONE]\n\n'
)


class OneModel:
    def model_names(self) -> list[str]:
        return ["smollm2"]

    def status(self) -> list[dict[str, object]]:
        return []

    def running(self) -> dict[str, object]:
        return {}


def cpu_per_call(call: Callable[[], object], calls: int) -> float:
    """CPU seconds per call, best of three passes."""
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        for _ in range(calls):
            call()
        best = min(best, (time.process_time() - start) / calls)
    return best


def streamed_context() -> RequestContext:
    ctx = RequestContext(route="chat.completions", model="smollm2", key_id="key_1", stream=True)
    ctx.status, ctx.usage = 200, Usage(30, 128)
    ctx.timings.first_byte = ctx.timings.received + 0.05
    ctx.timings.last_byte = ctx.timings.done = ctx.timings.received + 1.0
    return ctx


def hook_us(requests: int) -> float:
    """Per request, contexts made beforehand (the app makes them with or without metrics)."""
    metrics = GatewayMetrics(OneModel())  # type: ignore[arg-type]
    headers = Headers()

    async def run(contexts: list[RequestContext]) -> float:
        start = time.process_time()
        for ctx in contexts:
            await metrics.admit(ctx, headers)
            await metrics.after(ctx, ctx.usage)
        return (time.process_time() - start) / len(contexts)

    passes = [asyncio.run(run([streamed_context() for _ in range(requests)])) for _ in range(3)]
    return min(passes) * 1e6


def keep_chunks_ns(chunks: int) -> tuple[float, float]:
    """Per chunk: the deque the relay keeps, and an 8 KiB window by concatenation."""
    tail: deque[bytes] = deque(maxlen=TAIL_CHUNKS)
    window = [b""]

    def concatenate() -> None:
        window[0] = (window[0] + CHUNK)[-8192:]

    return cpu_per_call(lambda: tail.append(CHUNK), chunks) * 1e9, cpu_per_call(
        concatenate, chunks
    ) * 1e9


def read_usage_us(streams: int) -> tuple[float, float]:
    """Per stream: the relay's last-usage-event search, and parsing every event of 8 KiB."""
    tail = b"".join([CHUNK] * (TAIL_CHUNKS - 1)) + FINAL
    window = (CHUNK * 64)[-8192 + len(FINAL) :] + FINAL

    def every_event() -> None:
        ctx, parser = RequestContext(), SseParser()
        for event in [*parser.feed(window), parser.rest()]:
            if event is not None and '"usage"' in event.data:
                ctx.record_usage(event.payload)

    ours = cpu_per_call(lambda: record_usage_from(RequestContext(), CHUNK, tail), streams)
    return ours * 1e6, cpu_per_call(every_event, streams) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--quick", action="store_true", help="a few hundred calls each")
    args = parser.parse_args()
    calls = 300 if args.quick else args.requests
    deque_ns, concat_ns = keep_chunks_ns(calls * 10)
    usage_us, parse_all_us = read_usage_us(calls)
    result = {
        "hook_us_per_request": hook_us(calls),
        "keep_chunk_ns": deque_ns,
        "keep_8kib_by_concatenation_ns": concat_ns,
        "read_usage_us_per_stream": usage_us,
        "parse_all_8kib_us_per_stream": parse_all_us,
    }
    for name, number in result.items():
        print(f"{name:>32} {number:10.2f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("metrics_cost.quick.json" if args.quick else "metrics_cost.json")
    out.write_text(json.dumps({"calls": calls, **result}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
