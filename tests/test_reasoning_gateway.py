"""A reasoning model's thinking reaches clients in ``reasoning_content`` and/or
``reasoning`` whichever engine wrote it: cut out of the content here when the engine has no
parser, renamed when it has one; streamed or not, with its token count in the usage.

The engines are stub engines that write the request's last message back three characters
per token (so tags arrive split across events), some cutting the think block out
themselves as llama-server's and vLLM's parsers do."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from dsdeploy.engines.base import ReasoningOutput
from dsdeploy.gateway.reasoning import ReasoningField
from dsdeploy.model.thinking import Thinking
from tests.stub_engine import StubEngine, recorded
from tests.threaded_gateway import StubGateway, stub_gateway

R1 = "<think>\nLet me add 2 and 3.\n</think>\n\nThe answer is 5."
R1_OPENED_IN_PROMPT = "Let me add 2 and 3.\n</think>\n\nThe answer is 5."
REASONING = "Let me add 2 and 3.\n"
ANSWER = "The answer is 5."


def engine(folder: Path, thinking: Thinking | None, parser: str | None = None) -> StubEngine:
    base = StubEngine()
    reasoning = None if thinking is None else ReasoningOutput(thinking, parser)
    return StubEngine(
        echo=True,
        piece_chars=3,
        reasoning_field=parser,
        capabilities=replace(base.capabilities, reasoning=reasoning),
        record=folder / "requests.jsonl",
    )


def engines(folder: Path) -> dict[str, StubEngine]:
    return {
        "r1": engine(folder, "always"),  # no parser: the gateway cuts
        "v31": engine(folder, "on_request"),
        "r1-llama": engine(folder, "always", "reasoning_content"),  # llama-server's parser
        "r1-vllm": engine(folder, "always", "reasoning"),  # vLLM's
        "plain": engine(folder, None),  # not a reasoning model
    }


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reasoning")


@pytest.fixture(scope="module")
def gateway(folder: Path) -> Iterator[StubGateway]:
    with stub_gateway(folder, engines(folder), engine=engines(folder)) as gw:
        yield gw


def gateway_with(folder: Path, field: ReasoningField) -> Any:
    return stub_gateway(folder, ["r1", "r1-vllm"], engine=engines(folder), reasoning_field=field)


def chat(model: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def plain(gw: StubGateway, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{gw.base_url}/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def streamed(gw: StubGateway, body: dict[str, Any]) -> list[dict[str, Any]]:
    body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    response = httpx.post(f"{gw.base_url}/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == 200, response.text
    data = [line[6:] for line in response.text.split("\n") if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    return [json.loads(item) for item in data[:-1]]


def joined(chunks: list[dict[str, Any]], field: str) -> str:
    return "".join(c["choices"][0]["delta"].get(field) or "" for c in chunks if c["choices"])


def finish(chunks: list[dict[str, Any]]) -> str:
    return next(
        c["choices"][0]["finish_reason"]
        for c in chunks
        if c["choices"] and c["choices"][0]["finish_reason"]
    )


def reasoning_tokens(usage: dict[str, Any]) -> int:
    count: int = usage["completion_tokens_details"]["reasoning_tokens"]
    return count


def share(usage: dict[str, Any]) -> int:
    """The completion tokens shared by characters of reasoning and answer."""
    return round(usage["completion_tokens"] * len(REASONING) / (len(REASONING) + len(ANSWER)))


@pytest.mark.parametrize("text", [R1, R1_OPENED_IN_PROMPT])
@pytest.mark.parametrize("model", ["r1", "r1-llama", "r1-vllm"])
def test_a_plain_answer_has_its_thinking_in_both_fields(
    gateway: StubGateway, model: str, text: str
) -> None:
    answer = plain(gateway, chat(model, text))
    message = answer["choices"][0]["message"]
    assert message["reasoning_content"] == message["reasoning"] == REASONING
    assert message["content"] == ANSWER
    assert reasoning_tokens(answer["usage"]) == share(answer["usage"]) > 0


@pytest.mark.parametrize("text", [R1, R1_OPENED_IN_PROMPT])
@pytest.mark.parametrize("model", ["r1", "r1-llama", "r1-vllm"])
def test_a_stream_has_its_thinking_in_both_fields_and_no_tag(
    gateway: StubGateway, model: str, text: str
) -> None:
    chunks = streamed(gateway, chat(model, text))
    assert joined(chunks, "reasoning_content") == joined(chunks, "reasoning") == REASONING
    assert joined(chunks, "content") == ANSWER
    assert "think>" not in json.dumps(chunks)
    assert finish(chunks) == "stop"
    usage = chunks[-1]["usage"]
    assert reasoning_tokens(usage) == share(usage) > 0


@pytest.mark.parametrize("stream", [False, True])
def test_thinking_cut_off_by_max_tokens_is_all_reasoning(
    gateway: StubGateway, stream: bool
) -> None:
    body = chat("r1", R1_OPENED_IN_PROMPT, max_tokens=5)  # 15 characters: "Let me add 2 an"
    if stream:
        chunks = streamed(gateway, body)
        assert joined(chunks, "reasoning_content") == "Let me add 2 an"
        assert joined(chunks, "content") == ""
        assert finish(chunks) == "length"
        usage = chunks[-1]["usage"]
    else:
        answer = plain(gateway, body)
        message = answer["choices"][0]["message"]
        assert (message["reasoning_content"], message["content"]) == ("Let me add 2 an", "")
        assert answer["choices"][0]["finish_reason"] == "length"
        usage = answer["usage"]
    assert reasoning_tokens(usage) == usage["completion_tokens"] == 5


@pytest.mark.parametrize("stream", [False, True])
def test_an_answer_without_a_think_block_is_all_content(gateway: StubGateway, stream: bool) -> None:
    body = chat("v31", "The answer is 5.")  # V3.1 not asked to think
    if stream:
        chunks = streamed(gateway, body)
        assert joined(chunks, "content") == "The answer is 5."
        assert joined(chunks, "reasoning_content") == joined(chunks, "reasoning") == ""
        usage = chunks[-1]["usage"]
    else:
        answer = plain(gateway, body)
        message = answer["choices"][0]["message"]
        assert message["content"] == "The answer is 5."
        assert "reasoning_content" not in message and "reasoning" not in message
        usage = answer["usage"]
    assert reasoning_tokens(usage) == 0


def test_v31_asked_to_think_has_its_block_opened_by_the_prompt(gateway: StubGateway) -> None:
    kwargs = {"chat_template_kwargs": {"thinking": True}}
    message = plain(gateway, chat("v31", R1_OPENED_IN_PROMPT, **kwargs))["choices"][0]["message"]
    assert (message["reasoning_content"], message["content"]) == (REASONING, ANSWER)


@pytest.mark.parametrize("model", ["r1", "r1-llama", "r1-vllm"])
def test_include_reasoning_false_drops_the_thinking(gateway: StubGateway, model: str) -> None:
    body = chat(model, R1_OPENED_IN_PROMPT, include_reasoning=False)
    message = plain(gateway, body)["choices"][0]["message"]
    assert message == {"role": "assistant", "content": ANSWER}
    chunks = streamed(gateway, body)
    assert joined(chunks, "content") == ANSWER
    assert "reasoning" not in json.dumps([c["choices"] for c in chunks])


def test_a_model_that_does_not_reason_keeps_its_text(gateway: StubGateway) -> None:
    message = plain(gateway, chat("plain", R1))["choices"][0]["message"]
    assert message == {"role": "assistant", "content": R1}
    assert joined(streamed(gateway, chat("plain", R1)), "content") == R1


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_one_field_only_when_configured(tmp_path: Path, field: ReasoningField) -> None:
    other = "reasoning" if field == "reasoning_content" else "reasoning_content"
    with gateway_with(tmp_path, field) as gw:
        for model in ("r1", "r1-vllm"):
            message = plain(gw, chat(model, R1_OPENED_IN_PROMPT))["choices"][0]["message"]
            assert message[field] == REASONING and other not in message
            chunks = streamed(gw, chat(model, R1_OPENED_IN_PROMPT))
            assert joined(chunks, field) == REASONING
            assert joined(chunks, other) == ""


@pytest.mark.parametrize(
    ("model", "engine_field"), [("r1-llama", "reasoning_content"), ("r1-vllm", "reasoning")]
)
def test_earlier_turns_reasoning_reaches_the_engine_under_its_name(
    gateway: StubGateway, folder: Path, model: str, engine_field: str
) -> None:
    for sent in ("reasoning", "reasoning_content"):
        earlier = {"role": "assistant", "content": "5", sent: "2 plus 3 is 5"}
        body = {
            "model": model,
            "messages": [
                {"role": "user", "content": "2+3?"},
                earlier,
                {"role": "user", "content": "The answer is 5."},
            ],
        }
        plain(gateway, body)
        last: Any = recorded(folder / "requests.jsonl", "request")[-1]["body"]
        assert last["messages"][1] == {
            "role": "assistant",
            "content": "5",
            engine_field: "2 plus 3 is 5",
        }
