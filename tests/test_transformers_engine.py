"""The transformers engine end to end: each tiny architecture (random weights, DeepSeek's
real tokenizer and chat templates) stored, checked, planned and served by
``serve --engine transformers``'s own wiring behind the gateway, answering the ``openai``
client streamed and not; a rigged checkpoint shows R1's thinking split by the gateway, stop
strings, length cuts and requests batched together."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from benchmarks.tiny_checkpoints import TINY_ARCHITECTURES
from rich.console import Console

from dsdeploy.engines.llamacpp_install import source_tree
from dsdeploy.modelfile import ModelInfo
from dsdeploy.planner.placement import Machine
from dsdeploy.runtime.pool import EnginePool
from dsdeploy.served_transformers import transformers_model_spec
from dsdeploy.settings import EngineSettings, Settings
from dsdeploy.store import HashingWriter, Manifest, Store, StoredFile
from tests.conftest import SHARED_CACHE
from tests.test_reasoning_engine import ask, r1_gateway
from tests.threaded_gateway import StubGateway, stub_gateway
from tests.transformers_checkpoints import rigged_checkpoint, transformers_checkpoint

__all__ = ["r1_gateway"]

GIB = 2**30
CPU_ONLY = Machine(ram_available=12 * GIB, physical_cores=2, cpu_bandwidth=20e9)
PROMPT_END = "<｜Assistant｜><think>\n"
"""Where DeepSeek-R1's template leaves the prompt: the answer starts inside the thought."""
THOUGHT = "Adding two and three gives five.\n"
ANSWER = "The answer is 5."
R1_OUTPUT = f"{THOUGHT}</think>\n\n{ANSWER}"
QUESTION = [{"role": "user", "content": "What is 2 + 3?"}]


def store_checkpoint(store: Store, name: str, folder: Path) -> Manifest:
    entries = []
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        data = path.read_bytes()
        partial = store.new_partial()
        writer = HashingWriter(partial)
        writer.write(data)
        store.commit_blob(partial, writer.close(), None)
        digest = hashlib.sha256(data).hexdigest()
        entries.append(StoredFile(path=path.name, sha256=digest, size=len(data)))
    manifest = Manifest(
        name=name,
        source=f"local:{folder}",
        format="safetensors",
        files=entries,
        info=ModelInfo(architecture="tiny", context_length=4096, embedding_model=False),
        pulled_at="2026-01-01T00:00:00+00:00",
    )
    store.write_manifest(manifest)
    return manifest


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StubGateway]:
    work = tmp_path_factory.mktemp("transformers-engine")
    engine = EngineSettings(ctx_size=256, parallel=4, threads=1, ready_timeout_s=300)
    settings = Settings(home=work / "home", cache_dir=SHARED_CACHE, engine=engine)
    templates = source_tree(settings.dirs) / "models" / "templates"
    folders = {f"tiny-{a}": transformers_checkpoint(a, work, templates) for a in TINY_ARCHITECTURES}
    folders["tiny-r1"] = rigged_checkpoint(work, templates, PROMPT_END, R1_OUTPUT)
    store = Store(settings.dirs.models)
    console = Console(file=io.StringIO())
    specs = [
        transformers_model_spec(
            settings, store, store_checkpoint(store, name, folder), CPU_ONLY, console, pinned=False
        )
        for name, folder in folders.items()
    ]
    pool = EnginePool(specs, budget_bytes=12 * GIB, keep_alive_s=None, load_wait_s=300)
    with stub_gateway(work, pool=pool) as gateway:
        # Every engine starts at once (each loads torch: tens of seconds on a busy machine).
        client = openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key="unused", timeout=300)
        with ThreadPoolExecutor(len(folders)) as starting:
            list(starting.map(lambda name: first_answer(client, name), folders))
        yield gateway


def first_answer(client: openai.OpenAI, name: str) -> None:
    client.chat.completions.create(model=name, messages=QUESTION, max_tokens=1)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def client(served: StubGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{served.base_url}/v1", api_key="unused", timeout=300)


@pytest.mark.parametrize("architecture", TINY_ARCHITECTURES)
def test_each_tiny_architecture_answers_the_openai_client(
    client: openai.OpenAI, architecture: str
) -> None:
    name = f"tiny-{architecture}"
    answer = client.chat.completions.create(
        model=name,
        messages=QUESTION,
        max_tokens=4,
        temperature=0,  # type: ignore[arg-type]
    )
    assert answer.model == name
    (choice,) = answer.choices
    assert isinstance(choice.message.content, str) and choice.message.role == "assistant"
    assert choice.finish_reason in ("stop", "length")
    usage = answer.usage
    assert usage is not None and usage.prompt_tokens > 5
    assert 1 <= usage.completion_tokens <= 4
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    if choice.finish_reason == "length":
        assert usage.completion_tokens == 4


@pytest.mark.parametrize("architecture", TINY_ARCHITECTURES)
def test_each_tiny_architecture_streams_to_the_openai_client(
    client: openai.OpenAI, architecture: str
) -> None:
    name = f"tiny-{architecture}"
    chunks = list(
        client.chat.completions.create(
            model=name,
            messages=QUESTION,  # type: ignore[arg-type]
            max_tokens=4,
            temperature=0.8,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert all(chunk.model == name for chunk in chunks)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] in ("stop", "length") and not any(finishes[:-1])
    usage = chunks[-1].usage
    assert usage is not None and not chunks[-1].choices
    assert 1 <= usage.completion_tokens <= 4 and usage.prompt_tokens > 5


def test_r1_thinking_is_split_from_the_answer_by_the_gateway(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model="tiny-r1",
        messages=QUESTION,
        max_tokens=64,  # type: ignore[arg-type]
    )
    message = answer.choices[0].message.model_dump()
    assert message["reasoning_content"] == message["reasoning"] == THOUGHT
    assert message["content"] == ANSWER
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and answer.usage.completion_tokens == 16  # with the EOS
    details = answer.usage.completion_tokens_details
    assert details is not None and 0 < (details.reasoning_tokens or 0) < 16


def test_streamed_r1_thinking_has_the_same_split(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="tiny-r1",
        messages=QUESTION,  # type: ignore[arg-type]
        max_tokens=64,
        stream=True,
        stream_options={"include_usage": True},
    )
    deltas = [c.choices[0].delta.model_dump() for c in stream if c.choices]
    reasoning = "".join(d.get("reasoning_content") or "" for d in deltas)
    assert reasoning == "".join(d.get("reasoning") or "" for d in deltas) == THOUGHT
    assert "".join(d.get("content") or "" for d in deltas) == ANSWER


def test_a_stop_string_ends_the_answer_before_it(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model="tiny-r1",
        messages=QUESTION,  # type: ignore[arg-type]
        max_tokens=64,
        stop=[" three"],
    )
    message = answer.choices[0].message.model_dump()
    assert message["reasoning_content"] == "Adding two and"
    assert answer.choices[0].finish_reason == "stop"


def test_max_tokens_cuts_the_answer_with_finish_reason_length(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model="tiny-r1",
        messages=QUESTION,
        max_tokens=3,  # type: ignore[arg-type]
    )
    assert answer.choices[0].finish_reason == "length"
    assert answer.usage is not None and answer.usage.completion_tokens == 3
    assert answer.choices[0].message.model_dump()["reasoning_content"] == "Adding two and"


def test_requests_batched_together_each_get_their_whole_answer(client: openai.OpenAI) -> None:
    def ask(_: int) -> str | None:
        answer = client.chat.completions.create(
            model="tiny-r1",
            messages=QUESTION,
            max_tokens=64,  # type: ignore[arg-type]
        )
        return answer.choices[0].message.content

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(ask, range(4))) == [ANSWER] * 4


def split(response: httpx.Response, stream: bool) -> tuple[str, str, str]:
    """(reasoning_content, reasoning, content) of an answer, streamed or not."""
    assert response.status_code == 200, response.text
    if not stream:
        message = response.json()["choices"][0]["message"]
        return message["reasoning_content"], message["reasoning"], message["content"]
    chunks = [
        json.loads(line[6:])
        for line in response.text.split("\n")
        if line.startswith("data: ") and line != "data: [DONE]"
    ]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    fields = ("reasoning_content", "reasoning", "content")
    joined = ["".join(d.get(f) or "" for d in deltas) for f in fields]
    return joined[0], joined[1], joined[2]


@pytest.mark.engine
@pytest.mark.parametrize("stream", [False, True])
def test_llama_cpp_and_transformers_split_the_same_r1_answer_alike(
    r1_gateway: StubGateway, served: StubGateway, stream: bool
) -> None:
    """The same answer under the same R1 template: forced by a grammar in llama-server
    (which parses it), written by the rigged checkpoint in transformers (the gateway
    parses it)."""
    grammar_text = R1_OUTPUT.replace("\n", "\\n")
    via_llama = split(ask(r1_gateway, grammar_text, stream), stream)
    body: dict[str, object] = {"model": "tiny-r1", "messages": QUESTION, "max_tokens": 64}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    url = f"{served.base_url}/v1/chat/completions"
    via_transformers = split(httpx.post(url, json=body, timeout=300), stream)
    assert via_llama == via_transformers == (THOUGHT, THOUGHT, ANSWER)


def test_the_engines_own_request_counts_reach_the_gateways_metrics(served: StubGateway) -> None:
    text = httpx.get(f"{served.base_url}/metrics", timeout=60).text
    for architecture in ("r1", "deepseek-v3"):
        labels = f'{{model="tiny-{architecture}"}}'
        assert f"dsdeploy_engine_slots_busy{labels} 0.0" in text
        assert f"dsdeploy_engine_requests_deferred{labels} 0.0" in text


def test_a_prompt_longer_than_the_context_is_a_400_naming_the_limit(
    client: openai.OpenAI,
) -> None:
    long = [{"role": "user", "content": "two and three " * 200}]
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="tiny-r1", messages=long, max_tokens=8)  # type: ignore[arg-type]
    assert refused.value.code == "context_length_exceeded"
    assert "256" in refused.value.message
