"""Through the real llama-server, under DeepSeek-R1's chat template: the default model is
made to write an R1-shaped answer (a GBNF grammar allows only that text), llama-server's
own parser cuts the thinking out, and clients get it in both fields, streamed or not.

The engine is the default model under R1's template (``tests.templated_engine``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.templated_engine import templated_gateway
from tests.threaded_gateway import StubGateway

pytestmark = pytest.mark.engine

R1 = "Let me add 2 and 3.\\n</think>\\n\\nThe answer is 5."
"""R1's output under its template, which ends the prompt with ``<think>\\n`` (GBNF-escaped)."""
R1_OPENING_AGAIN = "<think>\\nLet me add 2 and 3.\\n</think>\\n\\nThe answer is 5."
"""A model that writes ``<think>`` itself too: llama-server keeps it in the reasoning."""


@pytest.fixture(scope="module")
def r1_gateway(model_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StubGateway]:
    folder = tmp_path_factory.mktemp("r1-engine")
    with templated_gateway(
        model_home, folder, "r1", "llama-cpp-deepseek-r1.jinja", "always"
    ) as gateway:
        yield gateway


def ask(gateway: StubGateway, output: str, stream: bool) -> httpx.Response:
    body = {
        "model": "r1",
        "messages": [{"role": "user", "content": "What is 2 + 3?"}],
        "grammar": f'root ::= "{output}"',
        "max_tokens": 64,
        "temperature": 0,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    response = httpx.post(f"{gateway.base_url}/v1/chat/completions", json=body, timeout=120)
    assert response.status_code == 200, response.text
    return response


@pytest.mark.parametrize("output", [R1, R1_OPENING_AGAIN])
def test_llama_server_cuts_r1_thinking_and_clients_get_both_fields(
    r1_gateway: StubGateway, output: str
) -> None:
    answer = ask(r1_gateway, output, stream=False).json()
    message = answer["choices"][0]["message"]
    # llama-server alone answers "\nLet me add 2 and 3.\n" and "\n\nThe answer is 5."
    assert message["reasoning_content"] == message["reasoning"] == "Let me add 2 and 3.\n"
    assert message["content"] == "The answer is 5."
    details = answer["usage"]["completion_tokens_details"]
    assert 0 < details["reasoning_tokens"] < answer["usage"]["completion_tokens"]


@pytest.mark.parametrize("output", [R1, R1_OPENING_AGAIN])
def test_a_streamed_r1_answer_has_the_same_fields(r1_gateway: StubGateway, output: str) -> None:
    text = ask(r1_gateway, output, stream=True).text
    chunks = [
        json.loads(line[6:])
        for line in text.split("\n")
        if line.startswith("data: ") and line != "data: [DONE]"
    ]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    reasoning = "".join(d.get("reasoning_content") or "" for d in deltas)
    assert reasoning == "".join(d.get("reasoning") or "" for d in deltas)
    assert reasoning == "Let me add 2 and 3.\n"
    assert "".join(d.get("content") or "" for d in deltas) == "The answer is 5."
    assert "think>" not in text
    assert chunks[-1]["usage"]["completion_tokens_details"]["reasoning_tokens"] > 0
