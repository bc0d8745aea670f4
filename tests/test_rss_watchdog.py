"""An engine whose resident memory stays above its bound is replaced through a reload, with
no request failing; one that starts above an absolute bound is reported, not replaced in a
loop — on stub engines that really grow (``--grow-mib``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from dsdeploy.errors import ConfigError
from dsdeploy.runtime.pool import EnginePool, ModelSpec
from dsdeploy.runtime.reload import ReloadOutcome
from dsdeploy.runtime.supervisor import Supervisor
from dsdeploy.runtime.watchdog import RssBound, RssWatchdog
from tests.stub_engine import StubEngine, stub_supervisor

pytestmark = pytest.mark.anyio

MIB = 2**20
GROWING = StubEngine(grow_mib=40, token_delay_s=0.01)


def growing_pool(folder: Path, engine: StubEngine = GROWING) -> EnginePool:
    def make() -> Supervisor:
        return stub_supervisor(engine, folder)

    spec = ModelSpec("a", make, 100 * MIB, slots=4, pinned=True, preload=True)
    return EnginePool(
        [spec], budget_bytes=1000 * MIB, keep_alive_s=None, load_wait_s=30, respec=lambda s: s
    )


async def stream_until(stop: asyncio.Event, pool: EnginePool, failures: list[str]) -> int:
    """Streamed completions, one after another, through whichever engine the pool leases."""
    answered = 0
    while not stop.is_set():
        async with pool.lease("a") as upstream:
            transport = httpx.AsyncHTTPTransport(uds=str(upstream.socket_path))
            async with httpx.AsyncClient(transport=transport, base_url="http://engine") as c:
                body = {"model": "a", "prompt": "hi", "max_tokens": 8, "stream": True}
                async with c.stream("POST", "/v1/completions", json=body) as response:
                    text = (await response.aread()).decode()
        if response.status_code != 200 or "error" in text:
            failures.append(f"{response.status_code}: {text[:200]}")
        answered += 1
    return answered


async def test_an_engine_that_keeps_growing_is_replaced_and_no_request_fails(
    tmp_path: Path,
) -> None:
    pool = growing_pool(tmp_path)
    outcomes: list[ReloadOutcome] = []
    watchdog = RssWatchdog(
        pool, RssBound(factor=1.5), interval_s=0.2, strikes=2, report=outcomes.append
    )
    await pool.start()
    watchdog.start()
    try:
        first = pool.running()["a"].pid
        stop, failures = asyncio.Event(), []
        clients = [asyncio.create_task(stream_until(stop, pool, failures)) for _ in range(2)]
        deadline = asyncio.get_running_loop().time() + 60
        while not outcomes and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
        stop.set()
        answered = sum(await asyncio.gather(*clients))
        assert outcomes, "the growing engine was never replaced"
        assert (outcomes[0].mode, outcomes[0].error) == ("blue-green", "")
        assert pool.running()["a"].pid != first
        assert watchdog.replacements["a"] >= 1
        assert failures == [] and answered > 0
    finally:
        await watchdog.stop()
        await pool.stop()


async def test_an_engine_that_starts_above_an_absolute_bound_is_reported_not_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pool = growing_pool(tmp_path, StubEngine())
    outcomes: list[ReloadOutcome] = []
    watchdog = RssWatchdog(
        pool, RssBound(size=1 * MIB), interval_s=0.1, strikes=1, report=outcomes.append
    )
    await pool.start()
    watchdog.start()
    try:
        await asyncio.sleep(1.0)
        assert outcomes == [] and watchdog.replacements == {}
        started_above = [r for r in caplog.records if "above --engine-rss-limit" in r.message]
        assert len(started_above) == 1  # said once, not every check
    finally:
        await watchdog.stop()
        await pool.stop()


@pytest.mark.parametrize(
    ("text", "bound"),
    [("2x", RssBound(factor=2.0)), ("1.5X", RssBound(factor=1.5)), ("6G", RssBound(size=6 << 30))],
)
def test_the_bound_is_a_factor_a_size_or_off(text: str, bound: RssBound) -> None:
    assert RssBound.parse(text) == bound
    assert RssBound.parse("off") is None


@pytest.mark.parametrize("text", ["1x", "0.5x", "lots", "-3G"])
def test_a_bound_that_cannot_work_is_refused_in_one_line(text: str) -> None:
    with pytest.raises(ConfigError, match="engine-rss-limit"):
        RssBound.parse(text)
