"""The gateway's parts that need no engine: its OpenAPI document, event parsing, usage
reading, hook registration, client-safe reasons and the body cap."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dsdeploy.engines.base import EngineCapabilities
from dsdeploy.gateway.app import create_app
from dsdeploy.gateway.context import RequestContext, Usage
from dsdeploy.gateway.hooks import Hook, Hooks
from dsdeploy.gateway.sse import SseEvent, SseParser
from dsdeploy.runtime.supervisor import Supervisor
from dsdeploy.settings import GatewaySettings

SECRET_LOG = Path("/srv/secret-layout/logs/engine-smollm2.log")


class StoppedEnginePool:
    """One model whose engine is stopped; its own reason names the log's path."""

    def __init__(self) -> None:
        capabilities = EngineCapabilities(messages=True)
        engine = SimpleNamespace(name="llama.cpp", capabilities=capabilities)
        self.supervisor = Supervisor(
            engine,  # type: ignore[arg-type]
            "smollm2",
            SECRET_LOG,
            ready_timeout_s=1,
            backoff_max_s=1,
            health_interval_s=5,
            health_failures=3,
        )

    def model_names(self) -> list[str]:
        return ["smollm2"]

    def health(self) -> tuple[bool, str]:
        return False, self.supervisor.unavailable_reason()

    def status(self) -> list[dict[str, object]]:
        return [{"model": "smollm2", "state": self.supervisor.state}]

    @contextlib.asynccontextmanager
    async def lease(self, model: str) -> AsyncIterator[Supervisor]:
        yield self.supervisor


@pytest.fixture
def client() -> Iterator[TestClient]:
    app = create_app(StoppedEnginePool(), GatewaySettings(max_body_bytes=4096))  # type: ignore[arg-type]
    with TestClient(app) as client:
        yield client


def openapi(client: TestClient) -> dict[str, Any]:
    document: dict[str, Any] = client.get("/openapi.json").json()
    return document


def test_openapi_describes_every_post_body_from_its_model(client: TestClient) -> None:
    paths = openapi(client)["paths"]
    posts = {path: item["post"] for path, item in paths.items() if "post" in item}
    assert set(posts) >= {
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/responses",
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/tokenize",
        "/detokenize",
        "/v1/tokenize",
        "/v1/detokenize",
    }
    for path, operation in posts.items():
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        assert "model" in schema["required"], path
    messages = posts["/v1/messages"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(messages["required"]) == {"model", "messages", "max_tokens"}


def test_openapi_marks_streaming_answers_and_each_apis_errors(client: TestClient) -> None:
    document = openapi(client)
    posts = {path: item["post"] for path, item in document["paths"].items() if "post" in item}
    for path in ("/v1/chat/completions", "/v1/responses", "/v1/messages"):
        assert "text/event-stream" in posts[path]["responses"]["200"]["content"]
    assert "text/event-stream" not in posts["/tokenize"]["responses"]["200"]["content"]
    assert "529" in posts["/v1/messages"]["responses"]
    assert "503" in posts["/v1/chat/completions"]["responses"]
    schemas = document["components"]["schemas"]
    assert {"ChatMessage", "AnthropicMessage", "AnthropicErrorDetail"} <= set(schemas)
    assert "$defs" not in str(document)


def test_engine_unavailable_reason_reaches_clients_without_server_paths(
    client: TestClient,
) -> None:
    assert str(SECRET_LOG) in StoppedEnginePool().supervisor.unavailable_reason()
    chat = client.post(
        "/v1/chat/completions",
        json={"model": "smollm2", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert chat.status_code == 503
    messages = client.post(
        "/v1/messages",
        json={"model": "smollm2", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert messages.status_code == 529
    health = client.get("/health")
    assert health.status_code == 503
    for answer in (chat, messages, health):
        assert "secret-layout" not in answer.text
        assert "llama.cpp engine is stopped" in answer.text


def test_body_over_the_cap_is_413_in_each_apis_shape(client: TestClient) -> None:
    chat = client.post("/v1/chat/completions", content=b"x" * 5000)
    assert chat.status_code == 413
    assert chat.json()["error"]["code"] == "request_too_large"
    messages = client.post("/v1/messages", content=b"x" * 5000)
    assert messages.status_code == 413
    assert messages.json()["error"]["type"] == "request_too_large"


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/chat/completions", "max_tokens"),
        ("/v1/messages", "max_tokens"),
        ("/v1/chat/completions", "n"),
    ],
)
def test_integer_fields_take_numbers_without_a_fraction_as_json_schema_does(
    client: TestClient, path: str, field: str
) -> None:
    body = {"model": "smollm2", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}
    whole = client.post(path, json=body | {field: 1.0})
    assert whole.status_code in (503, 529)  # valid: it went on to the (stopped) engine
    for refused in (1.5, "1"):
        answer = client.post(path, json=body | {field: refused})
        assert answer.status_code == 400
        assert field in answer.text


def test_events_split_across_chunks_are_parsed_whole() -> None:
    parser = SseParser()
    stream = (
        b'event: message_start\ndata: {"type": "message_start"}\n\n'
        b'data: {"a": 1}\r\n\r\ndata: [DONE]\n\n'
    )
    events = [event for i in range(0, len(stream), 7) for event in parser.feed(stream[i : i + 7])]
    assert [(e.event, e.payload) for e in events] == [
        ("message_start", {"type": "message_start"}),
        (None, {"a": 1}),
        (None, None),
    ]
    assert events[2].data == "[DONE]"
    assert parser.rest() is None


def test_an_unchanged_event_is_sent_as_the_engines_own_bytes() -> None:
    engine_bytes = b'event: content_block_delta\ndata: {"type": "x",  "n": 1}\n\n'
    [event] = SseParser().feed(engine_bytes)
    assert event.payload == {"type": "x", "n": 1}
    assert event.encode() == engine_bytes


def test_a_changed_event_is_encoded_with_its_new_payload() -> None:
    event = SseEvent('{"x": 1}', "delta")
    event.replace_payload({"x": 2})
    assert event.encode() == b'event: delta\ndata: {"x":2}\n\n'


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"usage": {"prompt_tokens": 5, "completion_tokens": 7}}, Usage(5, 7)),
        ({"usage": {"input_tokens": 5, "output_tokens": 7}}, Usage(5, 7)),
        ({"type": "response.completed", "response": {"usage": {"input_tokens": 3}}}, Usage(3, 0)),
        ({"type": "message_start", "message": {"usage": {"input_tokens": 4}}}, Usage(4, 0)),
        ({"choices": []}, None),
        (None, None),
    ],
)
def test_usage_is_read_from_each_apis_answer(payload: object, expected: Usage | None) -> None:
    assert Usage.from_payload(payload) == expected


def test_anthropic_stream_usage_adds_up_across_events() -> None:
    ctx = RequestContext()
    ctx.record_usage({"type": "message_start", "message": {"usage": {"input_tokens": 9}}})
    ctx.record_usage({"type": "message_delta", "usage": {"output_tokens": 12}})
    assert ctx.usage == Usage(9, 12)


def test_only_hooks_that_read_events_make_the_relay_parse_them() -> None:
    class Audit(Hook):
        async def after(self, ctx: RequestContext, usage: Usage | None) -> None:
            return None

    class Reasoning(Hook):
        async def on_event(self, ctx: RequestContext, event: SseEvent) -> SseEvent | None:
            return event

    class Declining(Hook):
        def reads_events_of(self, ctx: RequestContext) -> bool:
            return ctx.route == "chat.completions"

        async def on_event(self, ctx: RequestContext, event: SseEvent) -> SseEvent | None:
            return event

    ctx = RequestContext(route="completions")
    hooks = Hooks([Audit(), Declining()])
    assert hooks and not hooks.event_readers(ctx) and not hooks.answer_readers(ctx)
    hooks.add(Reasoning())
    assert [type(hook) for hook in hooks.event_readers(ctx)] == [Reasoning]
    assert not hooks.answer_readers(ctx)  # it reads streams only
    assert not Hooks()
