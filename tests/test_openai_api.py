"""The served default model answers the official openai client like the OpenAI API does."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import Server, decoding_stream_body

pytestmark = pytest.mark.engine

HELLO = [{"role": "user", "content": "Say hello."}]


def test_chat_completion_returns_text_usage_and_the_store_name(shared_server: Server) -> None:
    reply = shared_server.api_client.chat.completions.create(
        model="smollm2", messages=HELLO, max_tokens=16
    )
    assert reply.model == "smollm2"
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content
    assert reply.usage is not None
    assert reply.usage.completion_tokens <= 16
    assert reply.usage.prompt_tokens > 0


def test_streamed_chat_arrives_in_chunks_and_ends_with_usage(shared_server: Server) -> None:
    stream = shared_server.api_client.chat.completions.create(
        model="smollm2",
        messages=HELLO,
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) > 1
    assert text
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 12
    assert all(c.model == "smollm2" for c in chunks)


def test_text_completion(shared_server: Server) -> None:
    reply = shared_server.api_client.completions.create(
        model="smollm2", prompt="The capital of France is", max_tokens=8, temperature=0
    )
    assert reply.choices[0].text
    assert reply.usage is not None
    assert reply.usage.completion_tokens <= 8


def test_models_lists_the_served_model_by_its_store_name(shared_server: Server) -> None:
    client = shared_server.api_client
    assert [m.id for m in client.models.list()] == ["smollm2"]
    assert client.models.retrieve("smollm2").id == "smollm2"


def test_max_tokens_one_gives_exactly_one_token_and_length(shared_server: Server) -> None:
    reply = shared_server.api_client.chat.completions.create(
        model="smollm2", messages=HELLO, max_tokens=1
    )
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 1


def test_temperature_zero_repeats_itself(shared_server: Server) -> None:
    client = shared_server.api_client
    answers = {
        client.chat.completions.create(
            model="smollm2", messages=HELLO, max_tokens=24, temperature=0
        )
        .choices[0]
        .message.content
        for _ in range(3)
    }
    assert len(answers) == 1


def test_stop_sequence_ends_the_answer_before_it(shared_server: Server) -> None:
    client = shared_server.api_client
    prompt = [{"role": "user", "content": "Count from 1 to 10, separated by commas."}]
    free = client.chat.completions.create(
        model="smollm2", messages=prompt, max_tokens=40, temperature=0
    )
    full = free.choices[0].message.content or ""
    assert "4" in full
    stopped = client.chat.completions.create(
        model="smollm2", messages=prompt, max_tokens=40, temperature=0, stop=["4"]
    )
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].message.content == full[: full.index("4")]


def test_eight_concurrent_requests_all_succeed(shared_server: Server) -> None:
    client = shared_server.api_client

    def ask(i: int) -> str:
        reply = client.chat.completions.create(
            model="smollm2",
            messages=[
                {"role": "user", "content": f"Write a word that starts with {'abcdefgh'[i]}."}
            ],
            max_tokens=16,
        )
        return reply.choices[0].finish_reason

    with ThreadPoolExecutor(8) as pool:
        reasons = list(pool.map(ask, range(8)))
    assert all(reason in ("stop", "length") for reason in reasons)


def test_stream_is_relayed_as_generated_not_buffered(shared_server: Server) -> None:
    body = decoding_stream_body(64)
    arrivals = []
    start = time.monotonic()
    with httpx.stream("POST", shared_server.api + "/chat/completions", json=body) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                arrivals.append(time.monotonic())
    assert len(arrivals) > 8  # the engine may join tokens that do not yet make text
    # Relayed as decoded, events spread over most of the request; buffered, they would all
    # arrive together at the end.
    assert arrivals[-1] - arrivals[0] > 0.5 * (arrivals[-1] - start)
