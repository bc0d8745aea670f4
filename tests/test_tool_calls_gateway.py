"""What the gateway itself guarantees about tool calls, whatever the engine writes: the
finish reason agrees with the calls (never ``tool_calls`` with an empty list,
DeepSeek-V3#944), and an Anthropic ``tool_choice`` that llama-server would lose is kept.

The engines are stub engines told to answer as the faulty engines did."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from tests.stub_engine import StubEngine, recorded
from tests.threaded_gateway import StubGateway, stub_gateway

TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
}
ANTHROPIC_TOOLS = [
    {"name": "get_weather", "input_schema": {"type": "object", "properties": {}}},
    {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tool-calls")


@pytest.fixture(scope="module")
def gateway(folder: Path) -> Iterator[StubGateway]:
    record = folder / "requests.jsonl"
    engines = {
        "empty": StubEngine(eos_after=2, tool_calls="empty", record=record),
        "stops": StubEngine(eos_after=2, tool_calls="stop", record=record),
    }
    with stub_gateway(folder, engines, engine=engines) as gw:
        yield gw


def client(gw: StubGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key="unused", max_retries=0)


def ask(gw: StubGateway, model: str, stream: bool) -> tuple[list[Any], list[str | None]]:
    """The tool calls the client saw and each finish reason."""
    request: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": "Weather?"}],
        "tools": [TOOL],
    }
    if not stream:
        answer = client(gw).chat.completions.create(**request)
        choice = answer.choices[0]
        return [choice.message.tool_calls], [choice.finish_reason]
    calls: list[Any] = []
    finishes: list[str | None] = []
    for chunk in client(gw).chat.completions.create(**request, stream=True):
        for choice in chunk.choices:
            calls.append(choice.delta.tool_calls)
            if choice.finish_reason is not None:
                finishes.append(choice.finish_reason)
    return calls, finishes


@pytest.mark.parametrize("stream", [False, True])
def test_an_empty_call_list_becomes_a_plain_stop(gateway: StubGateway, stream: bool) -> None:
    calls, finishes = ask(gateway, "empty", stream)
    assert all(c is None for c in calls)
    assert finishes == ["stop"]


@pytest.mark.parametrize("stream", [False, True])
def test_a_choice_that_called_a_tool_finishes_with_tool_calls(
    gateway: StubGateway, stream: bool
) -> None:
    calls, finishes = ask(gateway, "stops", stream)
    names = [call.function.name for found in calls if found for call in found]
    assert names == ["get_weather"]
    assert finishes == ["tool_calls"]


def test_a_request_without_tools_is_left_alone(gateway: StubGateway) -> None:
    answer = client(gateway).chat.completions.create(
        model="stops", messages=[{"role": "user", "content": "Hi"}]
    )
    assert answer.choices[0].finish_reason == "stop"


def messages(gw: StubGateway, choice: dict[str, str]) -> Any:
    sdk = anthropic.Anthropic(base_url=gw.base_url, api_key="unused", max_retries=0)
    return sdk.messages.create(
        model="empty",
        max_tokens=4,
        messages=[{"role": "user", "content": "Weather?"}],
        tools=ANTHROPIC_TOOLS,  # type: ignore[arg-type]
        tool_choice=choice,  # type: ignore[arg-type]
    )


def engine_saw(folder: Path) -> dict[str, Any]:
    body = recorded(folder / "requests.jsonl", "request")[-1]["body"]
    assert isinstance(body, dict)
    return body


def test_anthropic_named_tool_choice_reaches_the_engine_as_that_tool_only(
    gateway: StubGateway, folder: Path
) -> None:
    messages(gateway, {"type": "tool", "name": "get_time"})
    body = engine_saw(folder)
    assert [tool["name"] for tool in body["tools"]] == ["get_time"]


def test_anthropic_tool_choice_none_leaves_the_tools_out(
    gateway: StubGateway, folder: Path
) -> None:
    messages(gateway, {"type": "none"})
    body = engine_saw(folder)
    assert "tools" not in body and "tool_choice" not in body


def test_anthropic_tool_choice_naming_an_unknown_tool_is_a_400(
    gateway: StubGateway, folder: Path
) -> None:
    before = len(recorded(folder / "requests.jsonl", "request"))
    with pytest.raises(anthropic.BadRequestError) as caught:
        messages(gateway, {"type": "tool", "name": "launch_rocket"})
    assert caught.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert "tool_choice" in caught.value.message
    assert len(recorded(folder / "requests.jsonl", "request")) == before
