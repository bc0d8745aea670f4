"""The vLLM adapter under the real supervisor and gateway, with a stand-in for vLLM (no
NVIDIA GPU here): a process that takes ``vllm serve``'s command line and speaks vLLM's HTTP
on the Unix socket given by ``--uds``. What these tests show holds for the adapter and the
wiring; whether real vLLM answers as the stand-in does is vLLM's part, not shown here."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from dsdeploy.engines.vllm import VllmEngine
from dsdeploy.errors import EngineStartFailed
from dsdeploy.planner.launch_plan import LaunchPlan
from dsdeploy.runtime.pool import EnginePool, ModelSpec
from dsdeploy.runtime.supervisor import Supervisor
from dsdeploy.settings import SecuritySettings
from tests.gateway_server import running_gateway
from tests.vllm_standin.__main__ import launcher, recorded_starts

MODEL = "deepseek-r1-distill-qwen-7b"
PLAN = LaunchPlan(
    threads=1, ctx_per_slot=64, parallel=4, kv_type="auto", gpu_memory_utilization=0.9
)
SECRET_ENV = {"HF_TOKEN": "hf_secret_token", "DSDEPLOY_METRICS_TOKEN": "also-secret"}


def vllm_engine(folder: Path) -> tuple[VllmEngine, Path]:
    """The real adapter, pointed at a ``vllm`` program that runs the stand-in."""
    record = folder / "starts.jsonl"
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    program = launcher(bin_dir, record)
    model_dir = folder / "model"
    model_dir.mkdir()
    engine = VllmEngine((str(program), "serve"), model_dir, MODEL, PLAN, folder / "cache")
    return engine, record


def supervisor_for(engine: VllmEngine, folder: Path) -> Supervisor:
    return Supervisor(
        engine,
        MODEL,
        folder / "engine.log",
        ready_timeout_s=30.0,
        backoff_max_s=1.0,
        health_interval_s=5.0,
        health_failures=3,
        environ=dict(os.environ) | SECRET_ENV,
    )


async def eventually(condition: Callable[[], object], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout_s} s"
        await asyncio.sleep(0.05)


@pytest.fixture
async def supervised(tmp_path: Path) -> AsyncIterator[tuple[Supervisor, Path]]:
    engine, record = vllm_engine(tmp_path)
    supervisor = supervisor_for(engine, tmp_path)
    await supervisor.start()
    try:
        yield supervisor, record
    finally:
        await supervisor.stop()


@pytest.mark.anyio
async def test_vllm_starts_with_the_adapters_argv_and_is_ready_on_its_socket(
    supervised: tuple[Supervisor, Path],
) -> None:
    supervisor, record = supervised
    assert supervisor.ready
    (start,) = recorded_starts(record)
    assert start["argv"] == list(supervisor.engine.launch(supervisor.socket_path, {}).argv[1:])
    assert "--uds" in start["argv"] and str(supervisor.socket_path) in start["argv"]
    transport = httpx.AsyncHTTPTransport(uds=str(supervisor.socket_path))
    async with httpx.AsyncClient(transport=transport, base_url="http://engine") as client:
        models = (await client.get("/v1/models")).json()
    assert [card["id"] for card in models["data"]] == [MODEL]


@pytest.mark.anyio
async def test_vllm_process_environment_has_no_token(
    supervised: tuple[Supervisor, Path],
) -> None:
    supervisor, _ = supervised
    assert supervisor.pid is not None
    raw = Path(f"/proc/{supervisor.pid}/environ").read_bytes()
    env = dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)
    assert "HF_TOKEN" not in env and "DSDEPLOY_METRICS_TOKEN" not in env
    assert b"hf_secret_token" not in raw
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["VLLM_NO_USAGE_STATS"] == "1"
    assert env["VLLM_CACHE_ROOT"].endswith("/cache/vllm")


@pytest.mark.anyio
async def test_a_killed_vllm_is_restarted_with_the_same_command_line(
    supervised: tuple[Supervisor, Path],
) -> None:
    supervisor, record = supervised
    first = supervisor.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    await eventually(lambda: supervisor.restarts == 1 and supervisor.ready)
    starts = recorded_starts(record)
    assert [s["pid"] for s in starts] == [first, supervisor.pid]
    assert starts[0]["argv"] == starts[1]["argv"]
    assert "killed by SIGKILL" in supervisor.last_exit


@pytest.mark.anyio
async def test_a_vllm_that_refuses_its_command_line_fails_the_start_with_the_fix(
    tmp_path: Path,
) -> None:
    engine, _ = vllm_engine(tmp_path)
    # The stand-in, like vLLM's own parser, refuses an option it does not know.
    older = VllmEngine((*engine.program, "--no-such-flag"), engine.model_dir, MODEL, PLAN)
    with pytest.raises(EngineStartFailed, match="does not know an option dsdeploy passes"):
        await supervisor_for(older, tmp_path).start()


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[openai.OpenAI, str]]:
    engine, _ = vllm_engine(tmp_path)

    def make() -> Supervisor:
        return supervisor_for(engine, tmp_path)

    spec = ModelSpec(MODEL, make, 2**20, slots=PLAN.parallel, pinned=True, preload=True)
    pool = EnginePool([spec], budget_bytes=2**30, keep_alive_s=None, load_wait_s=30)
    with running_gateway(tmp_path, SecuritySettings(), pool=pool) as port:
        base = f"http://127.0.0.1:{port}"
        yield openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0), base


def test_gateway_serves_chat_and_streams_through_vllm(
    gateway: tuple[openai.OpenAI, str],
) -> None:
    client, _ = gateway
    assert [m.id for m in client.models.list()] == [MODEL]
    hello: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there"}]
    answer = client.chat.completions.create(model=MODEL, messages=hello, max_tokens=3)
    assert answer.choices[0].message.content == "tok0 tok1 tok2"
    assert answer.usage is not None and answer.usage.completion_tokens == 3
    stream = client.chat.completions.create(
        model=MODEL,
        messages=hello,
        max_tokens=4,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "tok0 tok1 tok2 tok3"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4
    completion = client.completions.create(model=MODEL, prompt="once upon", max_tokens=2)
    assert completion.choices[0].text == "tok0 tok1"


def test_gateway_answers_vllms_errors_in_openai_shape(
    gateway: tuple[openai.OpenAI, str],
) -> None:
    client, _ = gateway
    long_prompt = " ".join(["word"] * 70)  # the plan's max model len is 64
    with pytest.raises(openai.BadRequestError) as too_long:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": long_prompt}], max_tokens=8
        )
    assert too_long.value.code == "context_length_exceeded"
    assert "maximum context length is 64 tokens" in too_long.value.message
    for trigger, status in (("standin:legacy-error", 400), ("standin:fastapi-422", 400)):
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": trigger}], max_tokens=1
            )
        assert refused.value.status_code == status
    with pytest.raises(openai.InternalServerError) as failed:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "standin:server-error"}]
        )
    assert failed.value.status_code == 502
    assert "EngineCore" not in failed.value.message


def test_gateway_metrics_read_vllms_own_gauges(gateway: tuple[openai.OpenAI, str]) -> None:
    client, base = gateway
    client.models.list()
    text = httpx.get(base + "/metrics").text
    assert f'dsdeploy_engine_kv_cache_usage_ratio{{model="{MODEL}"}} 0.25' in text
    assert f'dsdeploy_engine_slots_busy{{model="{MODEL}"}} 0.0' in text
    assert f'dsdeploy_engine_requests_deferred{{model="{MODEL}"}} 0.0' in text
