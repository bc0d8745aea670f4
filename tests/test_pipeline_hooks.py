"""Hooks see each request's stages in order with its context, may refuse it or change its
stream, and cannot break an answer once it is given. The app runs in this process, in
front of the shared server's engine (reached on its private socket)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.datastructures import Headers

from dsdeploy.engines.base import EngineCapabilities, EngineFailure
from dsdeploy.gateway.app import create_app
from dsdeploy.gateway.context import RequestContext, Usage
from dsdeploy.gateway.errors import ApiError
from dsdeploy.gateway.hooks import Hook, Hooks
from dsdeploy.gateway.schemas import ModelRequest
from dsdeploy.gateway.sse import SseEvent
from dsdeploy.settings import GatewaySettings
from tests.conftest import Server, decoding_stream_body, engine_of, engine_socket

pytestmark = pytest.mark.engine

CHAT = {"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


@dataclass
class EngineOnSocket:
    """An upstream that is an already running engine."""

    socket_path: Path
    model_name: str = "smollm2"
    capabilities: EngineCapabilities = EngineCapabilities(max_choices=4)
    ready: bool = True

    def unavailable_reason(self) -> str:
        return "the engine is not answering"

    def translate_error(self, status: int, payload: bytes) -> EngineFailure | None:
        return None


@dataclass
class OneEnginePool:
    upstream: EngineOnSocket

    def model_names(self) -> list[str]:
        return ["smollm2"]

    @contextlib.asynccontextmanager
    async def lease(self, model: str) -> AsyncIterator[EngineOnSocket]:
        yield self.upstream


class Recorder(Hook):
    def __init__(self) -> None:
        self.stages: list[str] = []
        self.events: list[SseEvent] = []
        self.done: list[RequestContext] = []

    async def admit(self, ctx: RequestContext, headers: Headers) -> None:
        self.stages.append(f"admit {ctx.model}")

    async def before(self, ctx: RequestContext, body: ModelRequest) -> None:
        self.stages.append(f"before {ctx.model}")

    async def on_event(self, ctx: RequestContext, event: SseEvent) -> SseEvent | None:
        self.events.append(event)
        return event

    async def after(self, ctx: RequestContext, usage: Usage | None) -> None:
        self.stages.append(f"after {ctx.status}")
        self.done.append(ctx)


class Shouting(Hook):
    """Changes every streamed text delta, and drops OpenAI's closing ``[DONE]``."""

    async def on_event(self, ctx: RequestContext, event: SseEvent) -> SseEvent | None:
        payload = event.payload
        if payload is None:
            return None
        for choice in payload.get("choices", []):
            if choice["delta"].get("content"):
                choice["delta"]["content"] = choice["delta"]["content"].upper()
        event.replace_payload(payload)
        return event


class Doorkeeper(Hook):
    async def admit(self, ctx: RequestContext, headers: Headers) -> None:
        if headers.get("authorization") != "Bearer open-sesame":
            raise ApiError(401, "a valid API key is needed", code="invalid_api_key")


class Broken(Hook):
    async def after(self, ctx: RequestContext, usage: Usage | None) -> None:
        raise RuntimeError("audit store unreachable")


@pytest.fixture
def client(shared_server: Server) -> Iterator[TestClient]:
    pool = OneEnginePool(EngineOnSocket(engine_socket(engine_of(shared_server))))
    with TestClient(create_app(pool, GatewaySettings())) as client:  # type: ignore[arg-type]
        yield client


def register(client: TestClient, *hooks: Hook) -> None:
    """Added to the running app, as later features will add theirs."""
    registry: Hooks = client.app.state.hooks  # type: ignore[attr-defined]
    for hook in hooks:
        registry.add(hook)


def data_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("data: ")]


def test_stages_run_in_order_and_after_sees_status_usage_and_timings(
    client: TestClient,
) -> None:
    recorder = Recorder()
    register(client, recorder)
    reply = client.post("/v1/chat/completions", json=CHAT)
    assert reply.status_code == 200
    assert recorder.stages == ["admit None", "before smollm2", "after 200"]
    [ctx] = recorder.done
    assert ctx.route == "chat.completions"
    assert ctx.id == reply.headers["x-request-id"]
    assert ctx.usage is not None
    assert ctx.usage.output_tokens == reply.json()["usage"]["completion_tokens"]
    times = ctx.timings
    assert times.upstream_start is not None and times.first_byte is not None
    assert times.done is not None
    assert times.received <= times.upstream_start <= times.first_byte <= times.done


def test_event_hooks_see_every_streamed_event_and_the_usage(
    client: TestClient,
) -> None:
    recorder = Recorder()
    register(client, recorder)
    body = {**decoding_stream_body(6), "stream_options": {"include_usage": True}}
    reply = client.post("/v1/chat/completions", json=body)
    sent = data_lines(reply.text)
    assert len(recorder.events) == len(sent)
    assert recorder.events[-1].data == "[DONE]"
    [ctx] = recorder.done
    assert ctx.stream is True
    assert ctx.usage is not None
    assert ctx.usage.output_tokens == 6


def test_an_event_hook_can_change_and_drop_events(client: TestClient) -> None:
    register(client, Shouting())
    reply = client.post("/v1/chat/completions", json=decoding_stream_body(8))
    events = [json.loads(line.removeprefix("data: ")) for line in data_lines(reply.text)]
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    assert text
    assert text == text.upper()
    assert "[DONE]" not in reply.text


def test_an_admit_hook_refuses_before_the_body_is_read(
    client: TestClient,
) -> None:
    recorder = Recorder()
    register(client, Doorkeeper(), recorder)
    refused = client.post("/v1/chat/completions", content=b"x" * 10_000_000)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_api_key"
    assert recorder.stages == ["after 401"]
    allowed = client.post(
        "/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer open-sesame"}
    )
    assert allowed.status_code == 200


def test_a_failing_after_hook_is_logged_and_the_answer_stands(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    register(client, Broken())
    reply = client.post("/v1/chat/completions", json=CHAT)
    assert reply.status_code == 200
    assert reply.json()["choices"][0]["message"]["content"] is not None
    assert "audit store unreachable" in caplog.text
