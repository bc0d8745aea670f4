"""The stub engine answers every endpoint the gateway uses in llama-server's shapes, through
the supervisor's private socket, so gateway tests can run on it in seconds."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dsdeploy.engines.base import EngineFailure
from tests.stub_engine import (
    StubEngine,
    engine_client,
    recorded,
    stub_supervisor,
    supervised,
)

pytestmark = pytest.mark.anyio

HELLO = [{"role": "user", "content": "hello there"}]
CTX = 64
Event = tuple[str | None, Any]


@pytest.fixture(scope="module")
def record(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stub") / "requests.jsonl"


@pytest.fixture(scope="module")
async def client(record: Path) -> AsyncIterator[httpx.AsyncClient]:
    """One stub for the tests that only ask it questions."""
    async with (
        supervised(StubEngine(record=record, ctx_size=CTX), record.parent) as supervisor,
        engine_client(supervisor) as client,
    ):
        yield client


async def post(client: httpx.AsyncClient, path: str, **body: Any) -> Any:
    response = await client.post(path, json={"model": "stub", **body})
    assert response.status_code == 200, response.text
    return response.json()


async def stream(client: httpx.AsyncClient, path: str, **body: Any) -> list[Event]:
    """Each server-sent event as (its ``event:`` name or None, its data, JSON-decoded)."""
    body = {"model": "stub", "stream": True, **body}
    async with client.stream("POST", path, json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        text = (await response.aread()).decode()
    events = []
    for block in filter(None, text.split("\n\n")):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        data = fields["data"]
        events.append((fields.get("event"), data if data == "[DONE]" else json.loads(data)))
    return events


async def test_chat_answers_n_choices_of_max_tokens_with_usage(client: httpx.AsyncClient) -> None:
    reply = await post(client, "/v1/chat/completions", messages=HELLO, max_tokens=3, n=2)
    assert reply["object"] == "chat.completion"
    assert [c["message"]["content"] for c in reply["choices"]] == ["tok0 tok1 tok2"] * 2
    assert {c["finish_reason"] for c in reply["choices"]} == {"length"}
    assert reply["usage"] == {"prompt_tokens": 2, "completion_tokens": 6, "total_tokens": 8}


async def test_reply_without_a_limit_ends_by_itself(client: httpx.AsyncClient) -> None:
    reply = await post(client, "/v1/chat/completions", messages=HELLO)
    assert reply["choices"][0]["finish_reason"] == "stop"
    assert reply["choices"][0]["message"]["content"].split()[-1] == "tok7"


@pytest.mark.parametrize("include_usage", [True, False])
async def test_streamed_chat_has_usage_only_when_asked_and_ends_with_done(
    client: httpx.AsyncClient, include_usage: bool
) -> None:
    options = {"include_usage": include_usage}
    events = await stream(
        client, "/v1/chat/completions", messages=HELLO, max_tokens=2, stream_options=options
    )
    assert events[-1] == (None, "[DONE]")
    chunks = [data for _, data in events[:-1]]
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    deltas = [c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]]
    assert "".join(deltas) == "tok0 tok1"
    usage = [chunk["usage"] for chunk in chunks if "usage" in chunk]
    expected = {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}
    assert usage == ([expected] if include_usage else [])


async def test_text_completion_plain_and_streamed_say_the_same(client: httpx.AsyncClient) -> None:
    plain = await post(client, "/v1/completions", prompt="once upon", max_tokens=3)
    assert plain["object"] == "text_completion"
    assert plain["choices"][0]["text"] == "tok0 tok1 tok2"
    events = await stream(client, "/v1/completions", prompt="once upon", max_tokens=3)
    texts = [data["choices"][0]["text"] for _, data in events[:-1]]
    assert "".join(texts) == "tok0 tok1 tok2"
    assert events[-2][1]["choices"][0]["finish_reason"] == "length"


async def test_embeddings_are_one_unit_vector_per_input(client: httpx.AsyncClient) -> None:
    reply = await post(client, "/v1/embeddings", input=["a b", "c", "a b"])
    vectors = [item["embedding"] for item in reply["data"]]
    assert [item["index"] for item in reply["data"]] == [0, 1, 2]
    assert vectors[0] == vectors[2] != vectors[1]
    assert sum(x * x for x in vectors[1]) == pytest.approx(1.0)
    assert reply["usage"] == {"prompt_tokens": 5, "total_tokens": 5}


async def test_detokenize_gives_back_generated_text(client: httpx.AsyncClient) -> None:
    tokens = (await post(client, "/tokenize", content="tok3 tok7 hello"))["tokens"]
    assert tokens[:2] == [3, 7]
    assert (await post(client, "/tokenize", content="hello"))["tokens"] == tokens[2:]
    assert (await post(client, "/detokenize", tokens=[3, 7]))["content"] == "tok3 tok7"


async def test_responses_api_plain_and_streamed(client: httpx.AsyncClient) -> None:
    plain = await post(client, "/v1/responses", input="hi", max_output_tokens=2)
    assert plain["object"] == "response"
    assert plain["output"][0]["content"][0] == {
        "type": "output_text",
        "text": "tok0 tok1",
        "annotations": [],
    }
    assert plain["usage"] == {"input_tokens": 1, "output_tokens": 2, "total_tokens": 3}
    events = await stream(client, "/v1/responses", input="hi", max_output_tokens=2)
    assert [name for name, _ in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.incomplete",
    ]
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert events[6][1]["text"] == "tok0 tok1"


async def test_anthropic_messages_plain_streamed_and_counted(client: httpx.AsyncClient) -> None:
    body = {"messages": HELLO, "system": "be brief", "max_tokens": 2}
    plain = await post(client, "/v1/messages", **body)
    assert plain["type"] == "message"
    assert plain["content"] == [{"type": "text", "text": "tok0 tok1"}]
    assert plain["stop_reason"] == "max_tokens"
    assert plain["usage"] == {"input_tokens": 4, "output_tokens": 2}
    events = await stream(client, "/v1/messages", **body)
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(data["type"] == name for name, data in events)
    assert events[5][1]["usage"] == {"output_tokens": 2}
    counted = await post(client, "/v1/messages/count_tokens", messages=HELLO, system="be brief")
    assert counted == {"input_tokens": 4}


async def test_prompt_over_the_context_gets_llama_servers_error(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/completions", json={"model": "stub", "prompt": "word " * (CTX + 1)}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["n_prompt_tokens"], error["n_ctx"]) == (
        "exceed_context_size_error",
        CTX + 1,
        CTX,
    )
    failure = StubEngine().translate_error(400, response.content)
    assert isinstance(failure, EngineFailure)
    assert (failure.status, failure.code) == (400, "context_length_exceeded")
    assert f"context is {CTX} tokens" in failure.message


async def test_each_request_is_recorded_with_its_body_and_probes_are_not(
    client: httpx.AsyncClient, record: Path
) -> None:
    await post(client, "/v1/completions", prompt="remember me", max_tokens=1)
    requests = recorded(record, "request")
    assert {"model": "stub", "prompt": "remember me", "max_tokens": 1} in [
        r["body"] for r in requests
    ]
    assert "/health" not in {r["path"] for r in requests}


async def test_abandoned_stream_is_recorded_as_cancelled(tmp_path: Path) -> None:
    record = tmp_path / "requests.jsonl"
    engine = StubEngine(record=record, token_delay_s=0.02)
    async with supervised(engine, tmp_path) as supervisor, engine_client(supervisor) as client:
        body = {"model": "stub", "prompt": "go", "max_tokens": 1000, "stream": True}
        async with client.stream("POST", "/v1/completions", json=body) as response:
            lines = response.aiter_lines()
            while "tok2" not in await anext(lines):
                pass
        for _ in range(100):
            if recorded(record, "cancelled"):
                break
            await asyncio.sleep(0.02)
    [cancelled] = recorded(record, "cancelled")
    assert cancelled["path"] == "/v1/completions"
    assert 3 <= cancelled["tokens"] < 1000


async def test_health_is_503_while_loading_then_200(tmp_path: Path) -> None:
    supervisor = stub_supervisor(StubEngine(load_delay_s=1.0), tmp_path)
    starting = asyncio.create_task(supervisor.start())
    try:
        await asyncio.sleep(0)  # start() has made the socket's folder
        async with engine_client(supervisor) as client:
            while not starting.done():
                try:
                    loading = await client.get("/health")
                    break
                except httpx.TransportError:  # not listening yet
                    await asyncio.sleep(0.02)
            assert loading.status_code == 503
            assert loading.json()["error"]["message"] == "Loading model"
            await starting
            assert (await client.get("/health")).json() == {"status": "ok"}
    finally:
        await supervisor.stop()
