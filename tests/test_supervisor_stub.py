"""The supervisor restarts an engine that dies or hangs, says why, stops its whole process
group, and hands it only the allowlisted environment — shown on the stub engine, in seconds."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import psutil
import pytest

from dsdeploy.engines.base import ENV_ALLOWLIST
from dsdeploy.errors import EngineStartFailed
from tests.conftest import gone
from tests.stub_engine import (
    StubEngine,
    engine_client,
    recorded,
    stub_supervisor,
    supervised,
)

pytestmark = pytest.mark.anyio

PROMPT = {"model": "stub", "prompt": "hi", "max_tokens": 1}


async def eventually(condition: Callable[[], object], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout_s} s"
        await asyncio.sleep(0.02)


def engine_pids(record: Path) -> list[int]:
    """Every engine process started so far, oldest first."""
    return [int(str(event["pid"])) for event in recorded(record, "listening")]


@pytest.mark.parametrize(
    ("fail_with", "explained"),
    [
        ("3", "it exited with code 3"),
        ("SIGILL", "killed by SIGILL: the engine uses a CPU instruction this machine does not"),
    ],
)
async def test_engine_that_dies_is_restarted_and_its_death_explained(
    tmp_path: Path, fail_with: str, explained: str
) -> None:
    record = tmp_path / "requests.jsonl"
    engine = StubEngine(record=record, fail_after=0, fail_with=fail_with)
    async with supervised(engine, tmp_path) as supervisor, engine_client(supervisor) as client:
        with pytest.raises(httpx.TransportError):
            await client.post("/v1/completions", json=PROMPT)
        await eventually(lambda: supervisor.state == "restarting")
        reason = supervisor.unavailable_reason()
        assert explained in reason
        assert "is restarting" in reason
        await eventually(lambda: supervisor.ready)
        assert (await client.get("/health")).status_code == 200
    assert supervisor.restarts == 1
    assert len(set(engine_pids(record))) == 2


async def hang_by_sigstop(pid: int, client: httpx.AsyncClient) -> None:
    os.kill(pid, signal.SIGSTOP)


async def hang_by_deadlock(pid: int, client: httpx.AsyncClient) -> None:
    """The stub's own hang: its event loop blocks, as a deadlocked engine's would."""
    with pytest.raises(httpx.ReadTimeout):
        await client.post("/v1/completions", json=PROMPT, timeout=0.2)


@pytest.mark.parametrize("hang", [hang_by_sigstop, hang_by_deadlock])
async def test_hung_engine_is_killed_and_restarted_after_its_failed_checks(
    tmp_path: Path, hang: Callable[[int, httpx.AsyncClient], Awaitable[None]]
) -> None:
    interval, failures = 0.3, 3
    record = tmp_path / "requests.jsonl"
    engine = StubEngine(record=record, fail_after=0, fail_with="hang")
    async with (
        supervised(
            engine, tmp_path, health_interval_s=interval, health_failures=failures
        ) as supervisor,
        engine_client(supervisor) as client,
    ):
        [first] = engine_pids(record)
        hung = psutil.Process(first)
        hung_at = time.monotonic()
        await hang(first, client)
        await eventually(lambda: not supervisor.ready)
        detected = time.monotonic() - hung_at
        assert "failed 3 health checks in a row" in supervisor.unavailable_reason()
        assert "restarting" in supervisor.unavailable_reason()
        assert gone(hung, timeout=1)
        await eventually(lambda: supervisor.ready)
        assert (await client.get("/health")).status_code == 200
    # each check waits its whole timeout, so three failures take three intervals at least
    assert interval * failures * 0.9 <= detected <= interval * (failures + 1) + 2.0
    assert len(set(engine_pids(record))) == 2


async def test_busy_engine_passes_its_checks_and_is_left_running(tmp_path: Path) -> None:
    record = tmp_path / "requests.jsonl"
    engine = StubEngine(record=record, token_delay_s=0.02)
    async with (
        supervised(engine, tmp_path, health_interval_s=0.1, health_failures=2) as supervisor,
        engine_client(supervisor) as client,
    ):
        body = {**PROMPT, "max_tokens": 60}
        reply = (await client.post("/v1/completions", json=body)).json()
        assert reply["usage"]["completion_tokens"] == 60
        assert supervisor.ready
    assert supervisor.restarts == 0
    assert len(engine_pids(record)) == 1


async def test_stop_ends_the_engines_whole_process_group(tmp_path: Path) -> None:
    record = tmp_path / "requests.jsonl"
    async with supervised(StubEngine(record=record, spawn_child=True), tmp_path):
        await eventually(lambda: recorded(record, "child"))
        [started] = recorded(record, "child")
        engine = psutil.Process(int(str(started["pid"])))
        child = psutil.Process(int(str(started["child"])))
        assert os.getpgid(child.pid) == engine.pid
    alive = [process for process in (engine, child) if not gone(process)]
    for process in alive:
        process.kill()
    assert alive == []


async def test_engine_environment_holds_only_the_allowlist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    monkeypatch.setenv("DSDEPLOY_HF_TOKEN", "hf_secret")
    monkeypatch.setenv("LANG", "C.UTF-8")
    record = tmp_path / "requests.jsonl"
    async with supervised(StubEngine(record=record), tmp_path, environ=os.environ):
        [pid] = engine_pids(record)
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    names = {entry.split(b"=", 1)[0].decode() for entry in environ.split(b"\0") if entry}
    assert b"hf_secret" not in environ
    assert not [name for name in names if name.startswith("DSDEPLOY_")]
    assert names - {"PYTHONPATH"} <= set(ENV_ALLOWLIST)  # PYTHONPATH: the stub's own
    assert {"PATH", "LANG"} <= names


async def test_engine_that_cannot_load_fails_to_start_with_its_reason(tmp_path: Path) -> None:
    error = "error: failed to load model '/models/x.gguf'"
    supervisor = stub_supervisor(StubEngine(load_error=error), tmp_path)
    with pytest.raises(EngineStartFailed) as failed:
        await supervisor.start()
    message = str(failed.value)
    assert "stub stopped while loading stub: it exited with code 1" in message
    assert "run `dsdeploy pull` again" in message
    assert failed.value.log_tail[-1] == error
    assert supervisor.state == "stopped"
