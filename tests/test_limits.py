"""Per-key limits, request caps and the gateway's queue bound, through a real gateway
process in front of the stub engine: refused requests are 429 (or 400, 503) in their API's
shape with the headers clients read, before any engine work; held slots and reserved
tokens always come back."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from dsdeploy.settings import SecuritySettings
from tests.stub_gateway import Gateway, post_until_admitted, start_gateway

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
HELLO = [{"role": "user", "content": "hi"}]
RESET = re.compile(r"^(\d+m)?\d+s$|^\d+ms$")


def chat(max_tokens: int = 2, **extra: object) -> dict[str, object]:
    return {"model": "stub", "messages": HELLO, "max_tokens": max_tokens, **extra}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    server = start_gateway(
        tmp_path_factory.mktemp("gateway") / "gateway.log",
        DSDEPLOY_MAX_OUTPUT_TOKENS="100",
        STUB_EOS_AFTER="3",
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def slow_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """Each generated token takes 50 ms; at most 3 requests held at once."""
    server = start_gateway(
        tmp_path_factory.mktemp("slow") / "gateway.log",
        STUB_TOKEN_DELAY_S="0.05",
        DSDEPLOY_MAX_QUEUED_REQUESTS="3",
        DSDEPLOY_BODY_TIMEOUT_S="1",
    )
    yield server
    server.stop()


async def burst(base_url: str, path: str, body: dict, headers: dict, count: int) -> list:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        return await asyncio.gather(
            *(client.post(path, json=body, headers=headers) for _ in range(count))
        )


def assert_rate_limit_headers(response: httpx.Response, kind: str, limit: int) -> None:
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers[f"x-ratelimit-limit-{kind}"] == str(limit)
    assert response.headers[f"x-ratelimit-remaining-{kind}"] == "0"
    assert RESET.match(response.headers[f"x-ratelimit-reset-{kind}"])


def test_a_60_rpm_key_hit_by_a_burst_of_100_gets_60_answers_and_429s(gateway: Gateway) -> None:
    answers = asyncio.run(burst(gateway.base_url, CHAT, chat(), gateway.key(rpm=60), 100))
    codes = [answer.status_code for answer in answers]
    assert 59 <= codes.count(200) <= 61
    assert codes.count(429) == 100 - codes.count(200)
    refused = next(answer for answer in answers if answer.status_code == 429)
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
    assert_rate_limit_headers(refused, "requests", 60)
    other = httpx.post(gateway.base_url + CHAT, json=chat(), headers=gateway.key(rpm=60))
    assert other.status_code == 200


def test_anthropic_routes_answer_a_rate_limit_in_anthropics_shape(gateway: Gateway) -> None:
    body = {"model": "stub", "messages": HELLO, "max_tokens": 2}
    answers = asyncio.run(burst(gateway.base_url, MESSAGES, body, gateway.key(rpm=5), 8))
    assert [answer.status_code for answer in answers].count(200) == 5
    refused = next(answer for answer in answers if answer.status_code == 429)
    payload = refused.json()
    assert payload["type"] == "error"
    assert payload["error"]["type"] == "rate_limit_error"
    assert payload["request_id"] == refused.headers["x-request-id"]
    assert_rate_limit_headers(refused, "requests", 5)


def test_unused_reserved_tokens_are_given_back_so_a_second_request_fits(
    gateway: Gateway,
) -> None:
    """150 tokens per minute; each request reserves its 100 max_tokens plus its prompt (2)
    and uses 4 (the stub's reply ends after 3): the second fits only after the first's
    refund, and a request reserving 202 does not fit at all."""
    if time.time() % 60 > 55:  # the three requests count in one minute
        time.sleep(60 - time.time() % 60)
    headers = gateway.key(tpm=150)
    first = httpx.post(gateway.base_url + CHAT, json=chat(100), headers=headers)
    assert first.status_code == 200
    second = httpx.post(gateway.base_url + CHAT, json=chat(100), headers=headers)
    assert second.status_code == 200
    too_big = httpx.post(gateway.base_url + CHAT, json=chat(100, n=2), headers=headers)
    assert too_big.status_code == 429
    assert too_big.headers["x-ratelimit-limit-tokens"] == "150"
    assert too_big.headers["x-ratelimit-remaining-tokens"] == str(150 - 2 * 4)
    assert RESET.match(too_big.headers["x-ratelimit-reset-tokens"])


def test_a_request_without_max_tokens_or_output_fits_a_small_token_budget(
    gateway: Gateway,
) -> None:
    """The 100-token cap reserved for a request without max_tokens is more than this key's
    minute; an embedding generates nothing: both are served and counted at their usage."""
    headers = gateway.key(tpm=50)
    unbounded = {"model": "stub", "messages": HELLO}
    assert httpx.post(gateway.base_url + CHAT, json=unbounded, headers=headers).status_code == 200
    embedding = {"model": "stub", "input": "hello there"}
    answer = httpx.post(gateway.base_url + "/v1/embeddings", json=embedding, headers=headers)
    assert answer.status_code == 200


def test_admitted_answers_carry_the_keys_rate_limit_headers_streams_included(
    gateway: Gateway,
) -> None:
    """The second request of a 10 rpm, 1,000 tpm key: 8 requests left in its minute; its
    tokens left count its own reservation (100 max_tokens + 2 for the prompt) and the
    first request's use (4)."""
    if time.time() % 60 > 55:  # both requests count in one minute
        time.sleep(60 - time.time() % 60)
    headers = gateway.key(rpm=10, tpm=1000)
    first = httpx.post(gateway.base_url + CHAT, json=chat(100), headers=headers)
    assert first.headers["x-ratelimit-remaining-requests"] == "9"
    with httpx.stream(
        "POST", gateway.base_url + CHAT, json=chat(100, stream=True), headers=headers
    ) as streamed:
        assert streamed.status_code == 200
        assert streamed.headers["content-type"].startswith("text/event-stream")
        sent = streamed.headers
        assert b"data: " in streamed.read()
    assert (sent["x-ratelimit-limit-requests"], sent["x-ratelimit-remaining-requests"]) == (
        "10",
        "8",
    )
    assert (sent["x-ratelimit-limit-tokens"], sent["x-ratelimit-remaining-tokens"]) == (
        "1000",
        str(1000 - 4 - 102),
    )
    assert RESET.match(sent["x-ratelimit-reset-requests"])
    assert RESET.match(sent["x-ratelimit-reset-tokens"])
    assert sent.get_list("x-ratelimit-limit-requests") == ["10"]  # once, not per stage

    unlimited = httpx.post(gateway.base_url + CHAT, json=chat(), headers=gateway.key())
    assert unlimited.status_code == 200
    assert not [name for name in unlimited.headers if name.startswith("x-ratelimit-")]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (chat(101), "max_tokens"),
        (
            {"model": "stub", "messages": HELLO, "max_completion_tokens": 10**9},
            "max_completion_tokens",
        ),
        (chat(n=9), "n"),
        (chat(stop=["a"] * 17), "stop"),
        (chat(stop="x" * 257), "stop"),
        ({"model": "stub", "messages": HELLO * 1025}, "messages"),
    ],
)
def test_requests_past_a_cap_are_400_naming_the_field(
    gateway: Gateway, body: dict, param: str
) -> None:
    response = httpx.post(gateway.base_url + CHAT, json=body, headers=gateway.key())
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_caps_apply_to_responses_and_anthropic_spellings(gateway: Gateway) -> None:
    responses = {"model": "stub", "input": "hi", "max_output_tokens": 1000}
    anyone = gateway.key()
    answer = httpx.post(gateway.base_url + "/v1/responses", json=responses, headers=anyone)
    assert (answer.status_code, answer.json()["error"]["param"]) == (400, "max_output_tokens")
    anthropic = {"model": "stub", "messages": HELLO, "max_tokens": 2, "stop_sequences": ["s"] * 17}
    answer = httpx.post(gateway.base_url + MESSAGES, json=anthropic, headers=anyone)
    assert answer.status_code == 400
    assert answer.json()["error"]["type"] == "invalid_request_error"


def test_a_concurrency_slot_comes_back_when_the_client_leaves(slow_gateway: Gateway) -> None:
    headers = slow_gateway.key(concurrent=1)
    body = chat(200, stream=True)
    with (
        httpx.Client(base_url=slow_gateway.base_url, timeout=30) as client,
        client.stream("POST", CHAT, json=body, headers=headers) as response,
    ):
        assert response.status_code == 200
        lines = response.iter_lines()  # kept: a dropped iterator closes the response
        next(lines)
        blocked = httpx.post(slow_gateway.base_url + CHAT, json=chat(), headers=headers)
        assert blocked.status_code == 429
        assert blocked.json()["error"]["code"] == "rate_limit_exceeded"
    # the stream's connection is closed here, 10 s before its answer would end
    again = post_until_admitted(slow_gateway.base_url + CHAT, chat(), headers, 5, 0.1)
    assert again.status_code == 200, f"the slot was not given back: {again.text}"


def test_the_gateway_queue_bound_answers_503_with_retry_after(slow_gateway: Gateway) -> None:
    async def run() -> list[httpx.Response]:
        unlimited = slow_gateway.key()
        async with httpx.AsyncClient(
            base_url=slow_gateway.base_url, timeout=30, headers=unlimited
        ) as client:
            slow = [client.post(CHAT, json=chat(20)) for _ in range(3)]
            tasks = [asyncio.ensure_future(request) for request in slow]
            await asyncio.sleep(0.4)
            extra = await client.post(CHAT, json=chat(2))
            anthropic = await client.post(
                MESSAGES, json={"model": "stub", "messages": HELLO, "max_tokens": 2}
            )
            return [extra, anthropic, *await asyncio.gather(*tasks)]

    extra, anthropic, *held = asyncio.run(run())
    assert extra.status_code == 503
    assert extra.headers["retry-after"] == "1"
    assert anthropic.status_code == 529
    assert anthropic.json()["error"]["type"] == "overloaded_error"
    assert [response.status_code for response in held] == [200, 200, 200]
    after = httpx.post(slow_gateway.base_url + CHAT, json=chat(), headers=slow_gateway.key())
    assert after.status_code == 200


def test_a_body_that_trickles_in_is_cut_with_408(slow_gateway: Gateway) -> None:
    host, port = slow_gateway.base_url.removeprefix("http://").split(":")
    authorization = slow_gateway.key()["authorization"].encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json"
            b"\r\nauthorization: " + authorization + b"\r\ncontent-length: 1000\r\n\r\n{"
        )
        start = time.monotonic()
        answer = b""
        while b"\r\n\r\n" not in answer:
            sock.sendall(b" ")
            sock.settimeout(0.3)
            try:
                answer += sock.recv(4096)
            except TimeoutError:
                continue
    assert answer.startswith(b"HTTP/1.1 408")
    assert time.monotonic() - start < 3


def test_a_concurrency_slot_comes_back_after_an_engine_failure(tmp_path: Path) -> None:
    failing = start_gateway(tmp_path / "gateway.log", STUB_FAIL_AFTER="0")
    try:
        headers = failing.key(concurrent=1)
        first = httpx.post(failing.base_url + CHAT, json=chat(), headers=headers, timeout=30)
        assert first.status_code >= 500
        second = httpx.post(failing.base_url + CHAT, json=chat(), headers=headers, timeout=30)
        assert second.status_code != 429, second.text
    finally:
        failing.stop()


def test_a_redis_url_that_is_not_redis_is_refused_with_a_hint() -> None:
    with pytest.raises(ValidationError, match="redis://"):
        SecuritySettings(redis_url="http://127.0.0.1:6379")
