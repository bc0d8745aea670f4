"""The Anthropic routes fail the way Anthropic's API does, so its official client raises
its own typed exceptions; the OpenAI routes keep OpenAI's shape."""

from __future__ import annotations

import time

import anthropic
import httpx
import pytest

from dsdeploy.bench.launch import wait_healthy
from tests.conftest import Server, engine_of

pytestmark = pytest.mark.engine

HELLO = [{"role": "user", "content": "hi"}]


def assert_anthropic_error(response: httpx.Response, status: int, kind: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"type", "error", "request_id"}
    assert body["type"] == "error"
    assert body["error"]["type"] == kind
    assert body["request_id"] == response.headers["x-request-id"]
    message: str = body["error"]["message"]
    assert message
    assert "Traceback" not in response.text
    return message


def test_unknown_model_is_a_not_found_error(shared_server: Server) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        shared_server.anthropic_client.messages.create(
            model="claude-9", max_tokens=4, messages=HELLO
        )
    assert caught.value.type == "not_found_error"
    assert "smollm2" in str(caught.value)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 4, "extra_body": {"temperature": 1.5}}, "temperature"),
        ({"max_tokens": 4, "messages": [{"role": "system", "content": "x"}]}, "role"),
    ],
)
def test_bad_body_is_an_invalid_request_error_naming_the_field(
    shared_server: Server, fields: dict[str, object], named: str
) -> None:
    arguments: dict[str, object] = {"model": "smollm2", "messages": HELLO, **fields}
    with pytest.raises(anthropic.BadRequestError) as caught:
        shared_server.anthropic_client.messages.create(**arguments)  # type: ignore[call-overload]
    assert caught.value.type == "invalid_request_error"
    assert named in str(caught.value)


@pytest.mark.parametrize("raw", [b"{bad json", b"", b"[]"])
def test_malformed_json_is_400_in_anthropic_shape(shared_server: Server, raw: bytes) -> None:
    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        response = httpx.post(shared_server.base_url + path, content=raw)
        assert_anthropic_error(response, 400, "invalid_request_error")


def test_missing_max_tokens_is_400(shared_server: Server) -> None:
    response = httpx.post(
        shared_server.base_url + "/v1/messages", json={"model": "smollm2", "messages": HELLO}
    )
    assert "max_tokens" in assert_anthropic_error(response, 400, "invalid_request_error")


def test_body_over_the_limit_is_request_too_large(shared_server: Server) -> None:
    huge = [{"role": "user", "content": "x" * (5 * 2**20)}]
    with pytest.raises(anthropic.ContentTooLargeError) as caught:
        shared_server.anthropic_client.messages.create(model="smollm2", max_tokens=4, messages=huge)
    assert caught.value.type == "request_too_large"  # type: ignore[comparison-overlap]


def test_unknown_path_under_messages_is_an_anthropic_404(shared_server: Server) -> None:
    response = httpx.post(shared_server.base_url + "/v1/messages/batches", json={})
    assert_anthropic_error(response, 404, "not_found_error")


def test_engine_down_is_overloaded_529_without_server_paths(own_server: Server) -> None:
    engine_of(own_server).kill()
    deadline = time.monotonic() + 5
    response = httpx.post(
        own_server.base_url + "/v1/messages",
        json={"model": "smollm2", "max_tokens": 2, "messages": HELLO},
    )
    while response.status_code == 200 and time.monotonic() < deadline:
        response = httpx.post(
            own_server.base_url + "/v1/messages",
            json={"model": "smollm2", "max_tokens": 2, "messages": HELLO},
        )
    message = assert_anthropic_error(response, 529, "overloaded_error")
    assert str(own_server.home) not in message
    assert "/" not in message
    health = httpx.get(own_server.base_url + "/health")
    if health.status_code == 503:
        assert "/" not in health.json()["reason"]
    wait_healthy(own_server.process, own_server.base_url, own_server.log, timeout_s=60)
    reply = own_server.anthropic_client.messages.create(
        model="smollm2", max_tokens=2, messages=HELLO
    )
    assert reply.content
