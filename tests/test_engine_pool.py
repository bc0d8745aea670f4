"""The engine pool loads models on demand, keeps within its memory budget by stopping idle
engines least-recently-used first, never stops an engine under a request, refuses a model
that cannot fit, unloads idle engines, and swaps an engine without a gap — on stub engines."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from dsdeploy.errors import EngineUnavailable, ModelNotFound
from dsdeploy.runtime.pool import EnginePool, ModelSpec
from dsdeploy.runtime.supervisor import Supervisor
from tests.stub_engine import StubEngine, stub_supervisor

pytestmark = pytest.mark.anyio

MIB = 2**20


def spec(folder: Path, name: str, planned_mib: int, **options: bool) -> ModelSpec:
    (folder / name).mkdir(parents=True, exist_ok=True)

    def make() -> Supervisor:
        return stub_supervisor(StubEngine(), folder / name)

    return ModelSpec(name, make, planned_mib * MIB, slots=2, **options)


def pool_of(
    *specs: ModelSpec, budget_mib: int = 1000, keep_alive_s: float | None = None
) -> EnginePool:
    return EnginePool(
        list(specs), budget_bytes=budget_mib * MIB, keep_alive_s=keep_alive_s, load_wait_s=30
    )


def states(pool: EnginePool) -> dict[str, object]:
    return {row["model"]: row["state"] for row in pool.status()}


async def test_a_model_loads_on_its_first_lease_only(tmp_path: Path) -> None:
    pool = pool_of(spec(tmp_path, "a", 100), spec(tmp_path, "b", 100))
    await pool.start()
    try:
        assert states(pool) == {"a": "not loaded", "b": "not loaded"}
        async with pool.lease("a") as upstream:
            assert upstream.ready
        assert states(pool) == {"a": "ready", "b": "not loaded"}
    finally:
        await pool.stop()


async def test_concurrent_first_leases_start_one_engine(tmp_path: Path) -> None:
    pool = pool_of(spec(tmp_path, "a", 100))
    await pool.start()
    seen = []

    async def use() -> None:
        async with pool.lease("a") as upstream:
            seen.append(upstream)

    try:
        await asyncio.gather(*(use() for _ in range(4)))
    finally:
        await pool.stop()
    assert len({id(upstream) for upstream in seen}) == 1


async def test_unknown_model_is_model_not_found(tmp_path: Path) -> None:
    pool = pool_of(spec(tmp_path, "a", 100))
    with pytest.raises(ModelNotFound):
        async with pool.lease("zzz"):
            pass


async def test_loading_past_the_budget_stops_the_least_recently_used_idle_engine(
    tmp_path: Path,
) -> None:
    pool = pool_of(*(spec(tmp_path, n, 100) for n in "abc"), budget_mib=250)
    await pool.start()
    try:
        for name in "ab":
            async with pool.lease(name):
                pass
        async with pool.lease("c"):
            pass
        assert states(pool) == {"a": "not loaded", "b": "ready", "c": "ready"}
    finally:
        await pool.stop()


async def test_an_engine_under_a_request_is_never_evicted(tmp_path: Path) -> None:
    pool = pool_of(spec(tmp_path, "a", 100), spec(tmp_path, "b", 100), budget_mib=150)
    await pool.start()
    try:
        async with pool.lease("a"):
            with pytest.raises(EngineUnavailable, match="retry when they are idle"):
                async with pool.lease("b"):
                    pass
            assert states(pool)["a"] == "ready"
        async with pool.lease("b"):
            pass
        assert states(pool) == {"a": "not loaded", "b": "ready"}
    finally:
        await pool.stop()


async def test_a_model_bigger_than_the_budget_is_refused_and_nothing_is_stopped(
    tmp_path: Path,
) -> None:
    pool = pool_of(spec(tmp_path, "a", 100), spec(tmp_path, "huge", 900), budget_mib=500)
    await pool.start()
    try:
        async with pool.lease("a"):
            pass
        with pytest.raises(EngineUnavailable, match="more than this server's memory budget"):
            async with pool.lease("huge"):
                pass
        assert states(pool) == {"a": "ready", "huge": "not loaded"}
    finally:
        await pool.stop()


async def test_pinned_models_load_at_start_and_are_never_evicted(tmp_path: Path) -> None:
    pool = pool_of(
        spec(tmp_path, "a", 100, pinned=True, preload=True),
        spec(tmp_path, "b", 100),
        budget_mib=150,
    )
    await pool.start()
    try:
        assert states(pool)["a"] == "ready"
        with pytest.raises(EngineUnavailable):
            async with pool.lease("b"):
                pass
        assert states(pool)["a"] == "ready"
    finally:
        await pool.stop()


async def test_idle_engines_unload_after_keep_alive(tmp_path: Path) -> None:
    pool = pool_of(spec(tmp_path, "a", 100), keep_alive_s=0.2)
    await pool.start()
    try:
        async with pool.lease("a"):
            await asyncio.sleep(1.5)  # busy longer than keep-alive: stays
            assert states(pool)["a"] == "ready"
        for _ in range(60):
            if states(pool)["a"] == "not loaded":
                break
            await asyncio.sleep(0.1)
        assert states(pool)["a"] == "not loaded"
    finally:
        await pool.stop()


async def test_a_model_that_loads_slower_than_the_wait_is_a_retryable_503(
    tmp_path: Path,
) -> None:
    (tmp_path / "slow").mkdir()
    slow = ModelSpec(
        "slow", lambda: stub_supervisor(StubEngine(load_delay_s=3), tmp_path / "slow"), MIB, 1
    )
    pool = EnginePool([slow], budget_bytes=10 * MIB, keep_alive_s=None, load_wait_s=0.5)
    await pool.start()
    try:
        with pytest.raises(EngineUnavailable, match="still loading"):
            async with pool.lease("slow"):
                pass
        await asyncio.sleep(4)
        async with pool.lease("slow") as upstream:
            assert upstream.ready
    finally:
        await pool.stop()


async def test_swap_serves_the_new_engine_and_stops_the_old_after_its_last_request(
    tmp_path: Path,
) -> None:
    pool = pool_of(spec(tmp_path, "a", 100))
    await pool.start()
    try:
        async with pool.lease("a") as old:
            replacement = stub_supervisor(StubEngine(), tmp_path / "a")
            swapping = asyncio.create_task(pool.swap("a", replacement))
            for _ in range(100):
                if replacement.ready:
                    break
                await asyncio.sleep(0.05)
            async with pool.lease("a") as new:
                assert new is replacement
            assert old.ready and not swapping.done()  # draining: the old one still serves
        await swapping
        assert not old.ready
    finally:
        await pool.stop()


async def test_an_adapter_name_is_served_by_its_base_engine(tmp_path: Path) -> None:
    base = replace(spec(tmp_path, "a", 100), adapters=("a-fmt", "a-tone"))
    pool = pool_of(base)
    await pool.start()
    try:
        assert pool.model_names() == ["a", "a-fmt", "a-tone"]
        async with pool.lease("a-fmt") as adapter, pool.lease("a") as model:
            assert adapter is model
        assert states(pool) == {"a": "ready"}  # one engine, listed once
    finally:
        await pool.stop()
