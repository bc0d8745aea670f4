"""What reasoning output costs a streamed token: CPU time (not wall time: the machine may be
busy) of the event relay's work per chunk — cutting the chunk into events, then the hooks —
with a no-op ``on_event`` hook (the event relay's own cost), and with the reasoning hook
cutting ``<think>…</think>`` out of the content (an engine without a parser) or renaming an
engine's ``reasoning_content`` (llama-server's parser) into both fields or into the same one.

    python benchmarks/reasoning_cost.py [--streams 200] [--quick]

Each stream is 128 llama-server-shaped chat chunks, three quarters of them reasoning.
Prints a table and writes benchmarks/results/reasoning_cost.json (.quick.json with --quick).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

from dsdeploy.engines.base import EngineCapabilities, ReasoningOutput
from dsdeploy.gateway.context import RequestContext
from dsdeploy.gateway.hooks import Hook
from dsdeploy.gateway.reasoning import ReasoningField, ReasoningHook
from dsdeploy.gateway.relay import through_hooks
from dsdeploy.gateway.schemas import ChatCompletionRequest
from dsdeploy.gateway.sse import SseEvent, SseParser

RESULTS = Path(__file__).parent / "results"
TOKENS = 128
THINKING = 96
REQUEST = b'{"model":"r1","messages":[{"role":"user","content":"2+3?"}],"stream":true}'


def chunk(delta: dict[str, str], finish: str | None = None) -> bytes:
    payload = {
        "choices": [{"finish_reason": finish, "index": 0, "delta": delta}],
        "created": 1,
        "id": "chatcmpl-x",
        "model": "r1",
        "system_fingerprint": "b1-abc",
        "object": "chat.completion.chunk",
    }
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def stream(parsed_by_engine: bool) -> list[bytes]:
    """One answer: reasoning tokens, the closing tag (in the content when no parser cut
    it), answer tokens, the finish, [DONE]."""
    chunks = []
    for index in range(TOKENS):
        word = f" w{index}"
        if index < THINKING:
            delta = {"reasoning_content": word} if parsed_by_engine else {"content": word}
        elif index == THINKING and not parsed_by_engine:
            delta = {"content": "</think>\n\n"}
        else:
            delta = {"content": word}
        chunks.append(chunk(delta))
    return [*chunks, chunk({}, "stop"), b"data: [DONE]\n\n"]


class NoOp(Hook):
    async def on_event(self, ctx: RequestContext, event: SseEvent) -> SseEvent | None:
        return event


async def relay_once(hook: Hook, chunks: list[bytes], engine: EngineCapabilities) -> float:
    """CPU seconds to take one stream through the event relay and ``hook``."""
    ctx = RequestContext(route="chat.completions", model="r1", stream=True, engine=engine)
    body = ChatCompletionRequest.model_validate_json(REQUEST)
    start = time.process_time()
    await hook.forward(ctx, body, REQUEST)
    parser, hooks = SseParser(), [hook] if hook.reads_events_of(ctx) else []
    for piece in chunks:
        await through_hooks(parser.feed(piece), ctx, hooks)
    return time.process_time() - start


def us_per_token(make: Callable[[], Hook], parsed: bool, streams: int) -> float:
    """Best of three passes of ``streams`` streams, per token."""
    field = "reasoning_content" if parsed else None
    engine = EngineCapabilities(reasoning=ReasoningOutput("always", field))
    chunks = stream(parsed)

    async def run() -> float:
        return sum([await relay_once(make(), chunks, engine) for _ in range(streams)])

    return min(asyncio.run(run()) for _ in range(3)) / streams / len(chunks) * 1e6


def reasoning(field: ReasoningField) -> Callable[[], Hook]:
    return lambda: ReasoningHook(field)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="a few streams each")
    args = parser.parse_args()
    streams = 5 if args.quick else args.streams
    result = {
        "no_op_hook_us_per_token": us_per_token(NoOp, parsed=False, streams=streams),
        "split_both_us_per_token": us_per_token(reasoning("both"), False, streams),
        "rename_both_us_per_token": us_per_token(reasoning("both"), True, streams),
        "rename_same_field_us_per_token": us_per_token(
            reasoning("reasoning_content"), True, streams
        ),
    }
    for name, number in result.items():
        print(f"{name:>32} {number:10.2f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("reasoning_cost.quick.json" if args.quick else "reasoning_cost.json")
    out.write_text(json.dumps({"streams": streams, "tokens": TOKENS, **result}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
