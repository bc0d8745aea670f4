"""The served default model answers every API the gateway routes, through the official
openai and anthropic clients: Responses, Anthropic Messages (plain and streamed),
count_tokens, tokenize/detokenize, several choices; and operators see it in /ps."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Server

pytestmark = pytest.mark.engine

HELLO = [{"role": "user", "content": "Say hello."}]


def test_responses_api_answers_with_text_and_usage(shared_server: Server) -> None:
    reply = shared_server.api_client.responses.create(
        model="smollm2", input="Say hello.", max_output_tokens=8
    )
    assert reply.output_text
    assert reply.usage is not None
    assert 0 < reply.usage.output_tokens <= 8


def test_responses_api_streams_text_deltas_then_completed(shared_server: Server) -> None:
    stream = shared_server.api_client.responses.create(
        model="smollm2", input="Say hello.", max_output_tokens=8, stream=True
    )
    kinds = [event.type for event in stream]
    assert kinds.count("response.output_text.delta") > 1
    assert kinds[-1] == "response.completed"


def test_messages_api_answers_through_the_anthropic_client(shared_server: Server) -> None:
    message = shared_server.anthropic_client.messages.create(
        model="smollm2", max_tokens=8, messages=HELLO
    )
    assert message.role == "assistant"
    assert message.content[0].type == "text"
    assert message.content[0].text
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert 0 < message.usage.output_tokens <= 8


def test_messages_api_streams_text_in_several_events(shared_server: Server) -> None:
    # Greedy: llama-server leaves out message_start when the first token is part of a
    # multi-byte character (an emoji, sampled now and then), and the client needs it.
    with shared_server.anthropic_client.messages.stream(
        model="smollm2",
        max_tokens=12,
        messages=HELLO,
        extra_body={"ignore_eos": True, "temperature": 0},
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 1
    assert final.content[0].type == "text"
    assert final.content[0].text == "".join(pieces)
    assert final.usage.output_tokens == 12


def test_count_tokens_grows_with_the_prompt(shared_server: Server) -> None:
    count = shared_server.anthropic_client.messages.count_tokens
    short = count(model="smollm2", messages=[{"role": "user", "content": "Hi"}])
    long = count(model="smollm2", messages=[{"role": "user", "content": "Hi there " * 20}])
    assert 0 < short.input_tokens < long.input_tokens


def test_tokenize_then_detokenize_gives_the_text_back(shared_server: Server) -> None:
    text = "The capital of France is Paris."
    tokens = httpx.post(
        shared_server.base_url + "/tokenize", json={"model": "smollm2", "content": text}
    ).json()["tokens"]
    assert tokens
    assert all(isinstance(token, int) for token in tokens)
    back = httpx.post(
        shared_server.api + "/detokenize", json={"model": "smollm2", "tokens": tokens}
    ).json()["content"]
    assert back.strip() == text


def test_tokenize_needs_a_model_to_be_routed(shared_server: Server) -> None:
    response = httpx.post(shared_server.base_url + "/tokenize", json={"content": "hi"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "model"


def test_n_2_returns_two_choices(shared_server: Server) -> None:
    reply = shared_server.api_client.chat.completions.create(
        model="smollm2", messages=HELLO, max_tokens=4, n=2
    )
    assert [choice.index for choice in reply.choices] == [0, 1]
    assert all(choice.message.content for choice in reply.choices)


def test_every_answer_carries_its_own_request_id(shared_server: Server) -> None:
    url = shared_server.base_url
    answers = [
        httpx.get(url + "/health"),
        httpx.get(url + "/v1/nothing"),
        httpx.post(url + "/v1/chat/completions", content=b"{"),
        httpx.post(url + "/v1/messages", json={"model": "smollm2"}),
        httpx.post(
            url + "/v1/chat/completions",
            json={"model": "smollm2", "messages": HELLO, "max_tokens": 1},
        ),
    ]
    ids = [answer.headers["x-request-id"] for answer in answers]
    assert len(set(ids)) == len(ids)
    assert all(rid.startswith("req_") for rid in ids)
    assert answers[3].json()["request_id"] == ids[3]  # Anthropic errors carry it too


def test_ps_shows_the_model_ready_with_its_memory(shared_server: Server) -> None:
    [model] = httpx.get(shared_server.base_url + "/ps").json()["models"]
    assert model["model"] == "smollm2"
    assert model["state"] == "ready"
    assert model["pinned"] is True
    assert model["planned_bytes"] > model["rss_bytes"] / 4 > 0
    assert model["in_flight"] == 0
