"""Every bad request gets an OpenAI-style JSON error with the right status, and the server
stays healthy afterwards."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import Server

pytestmark = pytest.mark.engine

CHAT = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "hi"}]


def assert_openai_error(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    assert "Traceback" not in response.text
    return dict(error)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": HELLO}, "model"),
        ({"model": "smollm2"}, "messages"),
        ({"model": "smollm2", "messages": []}, "messages"),
        ({"model": "smollm2", "messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
        ({"model": "smollm2", "messages": HELLO, "max_tokens": "5"}, "max_tokens"),
        ({"model": "smollm2", "messages": HELLO, "max_tokens": 0}, "max_tokens"),
        ({"model": "smollm2", "messages": HELLO, "temperature": 3}, "temperature"),
        ({"model": "smollm2", "messages": HELLO, "n": 99}, "n"),
    ],
)
def test_missing_or_invalid_fields_are_400_naming_the_field(
    shared_server: Server, body: dict[str, object], param: str
) -> None:
    response = httpx.post(shared_server.base_url + CHAT, json=body)
    error = assert_openai_error(response, 400)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize("raw", [b"{bad json", b"", b"[1, 2]", b"\xff\xfe"])
def test_malformed_json_is_400_not_the_engines_500(shared_server: Server, raw: bytes) -> None:
    response = httpx.post(
        shared_server.base_url + CHAT, content=raw, headers={"content-type": "application/json"}
    )
    assert_openai_error(response, 400)


def test_stream_options_without_stream_is_400(shared_server: Server) -> None:
    body = {"model": "smollm2", "messages": HELLO, "stream_options": {"include_usage": True}}
    assert_openai_error(httpx.post(shared_server.base_url + CHAT, json=body), 400)


def test_unknown_model_is_404_through_the_official_client(shared_server: Server) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        shared_server.api_client.chat.completions.create(model="gpt-9", messages=HELLO)
    assert "smollm2" in str(caught.value)
    assert_openai_error(httpx.get(shared_server.base_url + "/v1/models/gpt-9"), 404)


def test_prompt_longer_than_the_context_is_400_with_the_limit(shared_server: Server) -> None:
    long_prompt = "word " * 5000
    with pytest.raises(openai.BadRequestError) as caught:
        shared_server.api_client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": long_prompt}], max_tokens=4
        )
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["code"] == "context_length_exceeded"
    assert "4096" in str(error["message"])


def test_embeddings_on_a_chat_model_is_a_clear_400(shared_server: Server) -> None:
    response = httpx.post(
        shared_server.base_url + "/v1/embeddings", json={"model": "smollm2", "input": "hello"}
    )
    assert assert_openai_error(response, 400)["code"] == "unsupported_endpoint"


def test_unknown_route_and_wrong_method_are_openai_errors(shared_server: Server) -> None:
    assert_openai_error(httpx.get(shared_server.base_url + "/v1/nothing"), 404)
    assert_openai_error(httpx.get(shared_server.base_url + CHAT), 405)


def test_server_still_healthy_and_answering_after_bad_input(shared_server: Server) -> None:
    url = shared_server.base_url
    for raw in (b"{", b"null", b'{"model": 1}', b"x" * 100_000):
        httpx.post(url + CHAT, content=raw)
    assert httpx.get(url + "/health").json() == {"status": "ok", "models": ["smollm2"]}
    reply = shared_server.api_client.chat.completions.create(
        model="smollm2", messages=HELLO, max_tokens=2
    )
    assert reply.choices[0].message.content is not None
