"""DeepSeek tool calls through the real llama-server under each real DeepSeek chat template,
through the OpenAI and the Anthropic APIs, streamed and not.

The tiny default model cannot be trusted to write a tool call, and llama-server refuses a
request ``grammar`` beside ``tools`` ("Cannot use custom grammar constraints with tools."),
while its own tool grammar still lets the model write free text before the call. So the
model's output is fixed another way: the request ends with an assistant turn holding the
exact text the DeepSeek model would write (its reasoning under ``reasoning_content``), which
llama-server continues, and a logit bias on the end-of-sequence token makes the model add
nothing. The engine's parser then reads the template's generation prompt plus that text, as
it reads a real model's answer; what comes back is the parser's work, not the model's luck.
Under ``tool_choice: required`` the engine's own tool grammar also allows nothing but the
end after a complete call.

Named failures that must not come back: llama.cpp#14557 (R1-0528 calls), #15496 (V3.1
calls), vllm#36654 (V3.2 DSML calls), DeepSeek-V3#944 (``finish_reason: tool_calls`` with
no calls), ollama#15023 (R1 "does not support tools")."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from dsdeploy.model.thinking import Thinking
from tests import deepseek_tool_syntax as syntax
from tests.templated_engine import templated_gateway

pytestmark = pytest.mark.engine

EOS = 2
"""The default model's end-of-sequence token (``<|im_end|>``)."""
STOP_AT_ONCE = {"logit_bias": [[EOS, 30]]}
REASONING = "Let me check."
WEATHER: syntax.Call = ("get_weather", {"city": "Paris"})
TIME: syntax.Call = ("get_time", {"zone": "CET", "offset": 1})
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "The time in a zone.",
            "parameters": {
                "type": "object",
                "properties": {"zone": {"type": "string"}, "offset": {"type": "integer"}},
                "required": ["zone", "offset"],
            },
        },
    },
]
ANTHROPIC_TOOLS = [
    {
        "name": t["function"]["name"],
        "description": t["function"]["description"],
        "input_schema": t["function"]["parameters"],
    }
    for t in TOOLS
]


@dataclass(frozen=True)
class Template:
    file: str
    write: syntax.Syntax
    thinking: Thinking


TEMPLATES = {
    # V3 and R1-0528 write calls in this syntax too; no template of theirs is in the tree.
    "r1-distill": Template("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", syntax.v3, "always"),
    "r1": Template("llama-cpp-deepseek-r1.jinja", syntax.v3, "always"),
    "v3.1": Template("deepseek-ai-DeepSeek-V3.1.jinja", syntax.v3_1, "on_request"),
    "v3.2": Template("deepseek-ai-DeepSeek-V3.2.jinja", syntax.v3_2, "on_request"),
    "v4": Template("deepseek-ai-DeepSeek-V4.jinja", syntax.v4, "on_request"),
    "v4-flash": Template("deepseek-ai-DeepSeek-V4-Flash-0731.jinja", syntax.v4, "on_request"),
}
FULL = ["r1", "v3.1", "v3.2", "v4"]
"""One template per syntax gets every test; the others share a syntax with one of these and
get the plain call test."""


@dataclass(frozen=True)
class Served:
    name: str
    template: Template
    openai: openai.OpenAI
    anthropic: anthropic.Anthropic

    def output(self, calls: list[syntax.Call], reasoning: str | None = None) -> dict[str, Any]:
        """The assistant turn the model is made to have written."""
        turn: dict[str, Any] = {"role": "assistant", "content": self.template.write(calls)}
        if reasoning is not None:
            turn["reasoning_content"] = reasoning
        return turn

    def extra(self, thinking: bool = False) -> dict[str, Any]:
        kwargs = {"enable_thinking": thinking, "thinking": thinking}
        return {**STOP_AT_ONCE, "chat_template_kwargs": kwargs}


@pytest.fixture(scope="module", params=FULL)
def served(
    request: pytest.FixtureRequest, model_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """One engine per template, shared by that template's tests."""
    name: str = request.param
    template = TEMPLATES[name]
    folder = tmp_path_factory.mktemp(f"tools-{name}")
    with (
        templated_gateway(
            model_home, folder, name, template.file, template.thinking, threads=1
        ) as gateway,
        openai.OpenAI(
            base_url=f"{gateway.base_url}/v1", api_key="unused", max_retries=0, timeout=120
        ) as oai,
        anthropic.Anthropic(
            base_url=gateway.base_url, api_key="unused", max_retries=0, timeout=120
        ) as claude,
    ):
        yield Served(name, template, oai, claude)


def user(text: str = "What is the weather in Paris?") -> dict[str, Any]:
    return {"role": "user", "content": text}


def arguments(call: Any) -> Any:
    return json.loads(call.function.arguments)


@pytest.mark.parametrize("served", list(TEMPLATES), indirect=True)
def test_a_call_is_parsed_into_tool_calls(served: Served) -> None:
    """ollama#15023: R1 answers requests with tools; llama.cpp#14557, #15496, vllm#36654:
    each syntax is parsed into a call, not left in ``content``."""
    answer = served.openai.chat.completions.create(
        model=served.name,
        messages=[user(), served.output([TIME])],  # type: ignore[list-item]
        tools=TOOLS,  # type: ignore[arg-type]
        max_tokens=8,
        temperature=0,
        extra_body=served.extra(),
    )
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert not choice.message.content
    (call,) = choice.message.tool_calls or []
    assert call.id and call.type == "function"
    assert call.function.name == "get_time"
    assert arguments(call) == {"zone": "CET", "offset": 1}


def test_parallel_calls_after_thinking_stream_as_well_formed_deltas(served: Served) -> None:
    """Each call's index and id once, arguments that join into its JSON, the reasoning in
    its own field, and the finish reason last."""
    stream = served.openai.chat.completions.create(
        model=served.name,
        messages=[user(), served.output([WEATHER, TIME], REASONING)],  # type: ignore[list-item]
        tools=TOOLS,  # type: ignore[arg-type]
        max_tokens=8,
        temperature=0,
        stream=True,
        extra_body=served.extra(thinking=True),
    )
    ids: dict[int, list[str]] = {}
    names: dict[int, str] = {}
    joined: dict[int, str] = {}
    reasoning, content, finishes = "", "", []
    for chunk in stream:
        for choice in chunk.choices:
            delta = choice.delta
            reasoning += getattr(delta, "reasoning_content", None) or ""
            content += delta.content or ""
            if choice.finish_reason is not None:
                finishes.append(choice.finish_reason)
            for call in delta.tool_calls or []:
                if call.id:
                    ids.setdefault(call.index, []).append(call.id)
                if call.function and call.function.name:
                    names[call.index] = names.get(call.index, "") + call.function.name
                if call.function and call.function.arguments:
                    joined[call.index] = joined.get(call.index, "") + call.function.arguments
    assert reasoning == REASONING
    assert content == ""
    assert sorted(ids) == [0, 1] and all(len(given) == 1 for given in ids.values())
    assert ids[0] != ids[1]
    assert names == {0: "get_weather", 1: "get_time"}
    assert {i: json.loads(text) for i, text in joined.items()} == {0: WEATHER[1], 1: TIME[1]}
    assert finishes == ["tool_calls"]


@pytest.mark.parametrize(
    "choice", ["required", {"type": "function", "function": {"name": "get_weather"}}]
)
def test_required_and_named_tool_choices_give_the_call(served: Served, choice: Any) -> None:
    answer = served.openai.chat.completions.create(
        model=served.name,
        messages=[user(), served.output([WEATHER])],  # type: ignore[list-item]
        tools=TOOLS,  # type: ignore[arg-type]
        tool_choice=choice,
        max_tokens=8,
        temperature=0,
        extra_body=served.extra(),
    )
    given = answer.choices[0]
    assert given.finish_reason == "tool_calls"
    (call,) = given.message.tool_calls or []
    assert (call.function.name, arguments(call)) == WEATHER


@pytest.mark.parametrize("stream", [False, True])
def test_an_answer_without_calls_never_says_tool_calls(served: Served, stream: bool) -> None:
    """DeepSeek-V3#944: tools offered, ``tool_choice: none``, a plain answer: no
    ``tool_calls`` (not even an empty list) and ``finish_reason: stop``."""
    # R1's template opens the think block in every prompt: the answer comes after it.
    opening = "Checked.</think>" if served.template.thinking == "always" else ""
    body = {
        "model": served.name,
        "messages": [user()],
        "tools": TOOLS,
        "tool_choice": "none",
        "max_tokens": 32,
        "temperature": 0,
        "stream": stream,
        "extra_body": {
            # llama-server allows a grammar beside tool_choice none
            "grammar": f'root ::= "{opening}Sunny."',
            "chat_template_kwargs": {"enable_thinking": False, "thinking": False},
        },
    }
    client = served.openai
    if not stream:
        answer = client.chat.completions.create(**body)  # type: ignore[call-overload]
        assert answer.choices[0].message.content == "Sunny."
        assert answer.choices[0].message.tool_calls is None
        assert answer.choices[0].finish_reason == "stop"
        return
    text, finishes = "", []
    for chunk in client.chat.completions.create(**body):  # type: ignore[call-overload]
        for choice in chunk.choices:
            assert choice.delta.tool_calls is None
            text += choice.delta.content or ""
            if choice.finish_reason is not None:
                finishes.append(choice.finish_reason)
    assert (text, finishes) == ("Sunny.", ["stop"])


def test_the_tool_result_turn_is_answered(served: Served) -> None:
    """The earlier call goes back with its reasoning (DeepSeek requires it in a tool turn;
    here under vLLM's name, which the gateway renames) and the tool's result."""
    history = [
        user(),
        {
            "role": "assistant",
            "content": None,
            "reasoning": REASONING,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"sky":"sunny"}'},
        {"role": "assistant", "content": "It is sunny in Paris.", "reasoning_content": "Sunny."},
    ]
    answer = served.openai.chat.completions.create(
        model=served.name,
        messages=history,  # type: ignore[arg-type]
        tools=TOOLS,  # type: ignore[arg-type]
        max_tokens=8,
        temperature=0,
        extra_body=served.extra(thinking=True),
    )
    choice = answer.choices[0]
    assert getattr(choice.message, "reasoning_content", None) == "Sunny."
    assert choice.message.content == "It is sunny in Paris."
    assert choice.message.tool_calls is None
    assert choice.finish_reason == "stop"


ANTHROPIC_EXTRA = {
    "temperature": 0,
    "chat_template_kwargs": {"enable_thinking": False, "thinking": False},
}


def anthropic_prefill(served: Served, calls: list[syntax.Call]) -> dict[str, Any]:
    return {"role": "assistant", "content": served.template.write(calls)}


def test_anthropic_named_tool_gives_tool_use_blocks(served: Served) -> None:
    """llama-server drops ``logit_bias`` from Messages requests, so the call is fixed by
    ``tool_choice`` (the engine's grammar allows only the end after a whole call)."""
    message = served.anthropic.messages.create(
        model=served.name,
        max_tokens=8,
        messages=[user(), anthropic_prefill(served, [TIME])],  # type: ignore[list-item]
        tools=ANTHROPIC_TOOLS,  # type: ignore[arg-type]
        tool_choice={"type": "tool", "name": "get_time"},
        extra_body=ANTHROPIC_EXTRA,
    )
    assert message.stop_reason == "tool_use"
    uses = [block for block in message.content if block.type == "tool_use"]
    assert [(u.name, u.input) for u in uses] == [TIME]
    assert uses[0].id


def test_anthropic_streamed_tool_use_joins_into_its_input(served: Served) -> None:
    with served.anthropic.messages.stream(
        model=served.name,
        max_tokens=8,
        messages=[user(), anthropic_prefill(served, [WEATHER, TIME])],  # type: ignore[list-item]
        tools=ANTHROPIC_TOOLS,  # type: ignore[arg-type]
        tool_choice={"type": "any"},
        extra_body=ANTHROPIC_EXTRA,
    ) as stream:
        partial: dict[int, str] = {}
        started: dict[int, str] = {}
        for event in stream:
            if event.type == "content_block_start" and event.content_block.type == "tool_use":
                started[event.index] = event.content_block.name
            if event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                partial[event.index] = partial.get(event.index, "") + event.delta.partial_json
        final = stream.get_final_message()
    assert list(started.values()) == ["get_weather", "get_time"]
    assert [json.loads(partial[i]) for i in started] == [WEATHER[1], TIME[1]]
    assert final.stop_reason == "tool_use"


def test_anthropic_tool_result_turn_and_tool_choice_none(served: Served) -> None:
    """A ``tool_result`` goes back; ``tool_choice: none`` (which llama-server ignores) is
    kept by the gateway, which leaves the tools out."""
    message = served.anthropic.messages.create(
        model=served.name,
        max_tokens=4,
        messages=[
            user(),
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}],
            },
            {"role": "assistant", "content": "It is sunny"},
        ],
        tools=ANTHROPIC_TOOLS,  # type: ignore[arg-type]
        tool_choice={"type": "none"},
        extra_body=ANTHROPIC_EXTRA,
    )
    assert all(block.type == "text" for block in message.content)
    assert message.content[0].text.startswith("It is sunny")  # type: ignore[union-attr]
    assert message.stop_reason in ("end_turn", "max_tokens")


OFFSET_ONLY = [
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "parameters": {
                "type": "object",
                "properties": {"offset": {"type": "integer", "const": 12345}},
                "required": ["offset"],
            },
        },
    }
]


@pytest.mark.parametrize("served", FULL, indirect=True)
def test_generated_arguments_stream_in_pieces_that_join_into_json(served: Served) -> None:
    """The model writes the argument itself, token by token, held to the schema by the
    engine's tool grammar (``required``, one call): the deltas carry the id once and
    arguments that only joined make the JSON."""
    whole = served.template.write([("get_time", {"offset": 12345})])
    opening = whole[: whole.index("{") if "{" in whole else whole.index("12345")]
    stream = served.openai.chat.completions.create(
        model=served.name,
        messages=[user(), {"role": "assistant", "content": opening}],
        tools=OFFSET_ONLY,  # type: ignore[arg-type]
        tool_choice="required",
        parallel_tool_calls=False,
        max_tokens=96,
        temperature=0,
        stream=True,
        extra_body={"chat_template_kwargs": {"enable_thinking": False, "thinking": False}},
    )
    ids, pieces, finishes = [], [], []
    for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                assert call.index == 0
                if call.id:
                    ids.append(call.id)
                if call.function and call.function.arguments:
                    pieces.append(call.function.arguments)
            if choice.finish_reason is not None:
                finishes.append(choice.finish_reason)
    assert len(ids) == 1
    assert len(pieces) > 1, pieces
    assert json.loads("".join(pieces)) == {"offset": 12345}
    assert finishes == ["tool_calls"]
