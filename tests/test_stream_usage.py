"""A stream's usage is found in its first and last events without parsing the rest."""

from __future__ import annotations

import json

from dsdeploy.gateway.context import RequestContext, Usage
from dsdeploy.gateway.relay import record_usage_from


def event(payload: object) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def test_llama_server_timings_count_when_the_client_asked_for_no_usage() -> None:
    timings = {"prompt_n": 7, "cache_n": 5, "predicted_n": 30, "predicted_ms": 1.0}
    assert Usage.from_payload({"choices": [], "timings": timings}) == Usage(12, 30)
    assert Usage.from_payload({"timings": {"prompt_n": 7}}) is None


def test_usage_in_a_tail_cut_mid_event_is_found() -> None:
    ctx = RequestContext()
    tokens = b"".join(event({"choices": [{"delta": {"content": "x"}}]}) for _ in range(500))
    last = event({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 500}})
    stream = tokens + last + b"data: [DONE]\n\n"
    record_usage_from(ctx, b"", stream[-1000:])
    assert ctx.usage == Usage(3, 500)


def test_a_stream_without_usage_counts_from_llama_server_timings() -> None:
    ctx = RequestContext()
    timings = {"prompt_n": 2, "cache_n": 1, "predicted_n": 16}
    last = event({"choices": [{"delta": {}, "finish_reason": "length"}], "timings": timings})
    record_usage_from(ctx, b"", last + b"data: [DONE]\n\n")
    assert ctx.usage == Usage(3, 16)


def test_anthropic_input_tokens_from_the_first_chunk_and_output_from_the_last() -> None:
    ctx = RequestContext()
    start = {"type": "message_start", "message": {"usage": {"input_tokens": 9, "output_tokens": 0}}}
    first = b"event: message_start\n" + event(start)
    record_usage_from(
        ctx, first, b"event: message_delta\n" + event({"usage": {"output_tokens": 41}})
    )
    assert ctx.usage == Usage(9, 41)
