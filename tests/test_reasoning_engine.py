"""Through the real llama-server, under DeepSeek-R1's chat template: the default model is
made to write an R1-shaped answer (a GBNF grammar allows only that text), llama-server's
own parser cuts the thinking out, and clients get it in both fields, streamed or not.

dsdeploy takes a model's chat template from its GGUF and has no option to replace it, so
the engine here is the real adapter with ``--chat-template-file`` added to its argv."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from dsdeploy.engines.llamacpp import LlamaCppEngine
from dsdeploy.engines.llamacpp_install import source_tree
from dsdeploy.engines.llamacpp_locate import locate
from dsdeploy.planner.launch_plan import LaunchPlan
from dsdeploy.runtime.pool import EnginePool, ModelSpec
from dsdeploy.runtime.supervisor import Supervisor
from dsdeploy.settings import Settings
from dsdeploy.store import Store
from tests.threaded_gateway import StubGateway, stub_gateway

pytestmark = pytest.mark.engine

R1 = "Let me add 2 and 3.\\n</think>\\n\\nThe answer is 5."
"""R1's output under its template, which ends the prompt with ``<think>\\n`` (GBNF-escaped)."""
R1_OPENING_AGAIN = "<think>\\nLet me add 2 and 3.\\n</think>\\n\\nThe answer is 5."
"""A model that writes ``<think>`` itself too: llama-server keeps it in the reasoning."""


@dataclass(frozen=True)
class TemplatedEngine(LlamaCppEngine):
    template: Path = Path()

    def argv(self, socket_path: Path) -> list[str]:
        return [*super().argv(socket_path), "--chat-template-file", str(self.template)]


@pytest.fixture(scope="module")
def r1_gateway(model_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StubGateway]:
    folder = tmp_path_factory.mktemp("r1-engine")
    settings = Settings()
    store = Store(model_home / "data" / "models")
    manifest = store.manifest("smollm2")
    assert manifest is not None
    gguf = store.weights_path(manifest)
    engine = TemplatedEngine(
        locate(settings.dirs, None, "auto").binary,
        gguf,
        "r1",
        LaunchPlan(threads=2, ctx_per_slot=1024, parallel=1),
        thinking="always",
        template=source_tree(settings.dirs) / "models/templates/llama-cpp-deepseek-r1.jinja",
    )

    def make() -> Supervisor:
        return Supervisor(
            engine,
            "r1",
            folder / "engine.log",
            ready_timeout_s=120,
            backoff_max_s=1,
            health_interval_s=5,
            health_failures=3,
            environ=os.environ,
        )

    pool = EnginePool(
        [ModelSpec("r1", make, 2**28, slots=1, pinned=True, preload=True)],
        budget_bytes=2**30,
        keep_alive_s=None,
        load_wait_s=120,
    )
    with stub_gateway(folder, pool=pool) as gateway:
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
