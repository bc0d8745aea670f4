"""A reload replaces a model's engine with one built from its spec as it is now: beside the
old one when the memory budget holds both, in its place when it does not (requests wait for
the new one), never at all when the new one cannot start — on stub engines."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from dsdeploy.errors import ModelFileRejected
from dsdeploy.runtime.pool import EnginePool, ModelSpec
from dsdeploy.runtime.supervisor import Supervisor
from tests.stub_engine import StubEngine, stub_supervisor

pytestmark = pytest.mark.anyio

MIB = 2**20


def stub_spec(folder: Path, engine: StubEngine | None = None) -> ModelSpec:
    """Model ``a`` planned at 100 MiB, its engine's log in ``folder`` (which version)."""
    folder.mkdir(parents=True, exist_ok=True)

    def make() -> Supervisor:
        return stub_supervisor(engine or StubEngine(), folder)

    return ModelSpec("a", make, 100 * MIB, slots=2)


def reloading_to(spec: ModelSpec) -> Callable[[ModelSpec], ModelSpec]:
    """A respec that finds ``spec`` (a new version) in place of the current one."""
    return lambda current: spec


def pool_of(
    first: ModelSpec,
    respec: Callable[[ModelSpec], ModelSpec],
    *,
    budget_mib: int = 1000,
    drain_timeout_s: float = 30,
) -> EnginePool:
    return EnginePool(
        [first],
        budget_bytes=budget_mib * MIB,
        keep_alive_s=None,
        load_wait_s=30,
        drain_timeout_s=drain_timeout_s,
        respec=respec,
    )


async def current(pool: EnginePool) -> Supervisor:
    async with pool.lease("a") as upstream:
        assert isinstance(upstream, Supervisor)
        return upstream


def row(pool: EnginePool) -> dict[str, object]:
    return pool.status()[0]


async def test_blue_green_reload_serves_the_new_engine_and_stops_the_old(tmp_path: Path) -> None:
    pool = pool_of(stub_spec(tmp_path / "v1"), reloading_to(stub_spec(tmp_path / "v2")))
    await pool.start()
    try:
        old = await current(pool)
        outcome = await pool.reload("a")
        new = await current(pool)
        assert (outcome.mode, outcome.error) == ("blue-green", "")
        assert 0 < outcome.serving_s <= outcome.seconds
        assert new is not old and new.ready and not old.ready
        assert new.log_path.parent.name == "v2"
        assert (row(pool)["generation"], row(pool)["reloading"]) == (1, False)
    finally:
        await pool.stop()


async def test_requests_in_flight_on_the_old_engine_finish_before_it_stops(
    tmp_path: Path,
) -> None:
    pool = pool_of(stub_spec(tmp_path / "v1"), reloading_to(stub_spec(tmp_path / "v2")))
    await pool.start()
    try:
        async with pool.lease("a") as old:
            reloading = asyncio.create_task(pool.reload("a"))
            while row(pool)["generation"] == 0:
                await asyncio.sleep(0.05)
            assert (await current(pool)) is not old  # new requests go to the new engine
            await asyncio.sleep(0.3)
            assert old.ready and not reloading.done()  # draining: the old one still serves
        assert (await reloading).mode == "blue-green"
        assert not old.ready
    finally:
        await pool.stop()


async def test_the_old_engine_is_stopped_after_the_drain_bound_even_with_requests_in_flight(
    tmp_path: Path,
) -> None:
    pool = pool_of(
        stub_spec(tmp_path / "v1"), reloading_to(stub_spec(tmp_path / "v2")), drain_timeout_s=0.5
    )
    await pool.start()
    try:
        async with pool.lease("a") as old:
            outcome = await pool.reload("a")
            assert outcome.error == ""
            assert not old.ready
    finally:
        await pool.stop()


async def test_a_new_engine_that_fails_to_load_leaves_the_old_one_serving(tmp_path: Path) -> None:
    broken = stub_spec(tmp_path / "v2", StubEngine(load_error="error: invalid magic"))
    found = [broken]
    pool = pool_of(stub_spec(tmp_path / "v1"), lambda spec: found[0], budget_mib=250)
    await pool.start()
    try:
        old = await current(pool)
        outcome = await pool.reload("a")
        assert outcome.mode == "blue-green"
        assert "stub stopped while loading" in outcome.error
        assert "the running engine stays" in outcome.error
        assert (await current(pool)) is old and old.ready
        assert row(pool)["generation"] == 0
        found[0] = stub_spec(tmp_path / "v3")  # the memory of the failed one was given back:
        assert (await pool.reload("a")).mode == "blue-green"  # both fit again
    finally:
        await pool.stop()


async def test_a_spec_that_cannot_be_rebuilt_starts_nothing(tmp_path: Path) -> None:
    def refuse(spec: ModelSpec) -> ModelSpec:
        raise ModelFileRejected("model.gguf", "the file ends inside its tensor data")

    pool = pool_of(stub_spec(tmp_path / "v1"), refuse)
    await pool.start()
    try:
        old = await current(pool)
        outcome = await pool.reload("a")
        assert outcome.mode == "refused"
        assert "the file ends inside its tensor data" in outcome.error
        assert (await current(pool)) is old and old.ready
    finally:
        await pool.stop()


async def test_a_budget_for_one_engine_stops_the_old_first_and_requests_wait_for_the_new(
    tmp_path: Path,
) -> None:
    slow = stub_spec(tmp_path / "v2", StubEngine(load_delay_s=1.0))
    pool = pool_of(stub_spec(tmp_path / "v1"), reloading_to(slow), budget_mib=150)
    await pool.start()
    try:
        old = await current(pool)
        reloading = asyncio.create_task(pool.reload("a"))
        while row(pool)["state"] != "loading":
            await asyncio.sleep(0.02)
        during_the_gap = await current(pool)  # waits for the load, as on-demand loading does
        outcome = await reloading
        assert during_the_gap is not old and during_the_gap.ready and not old.ready
        assert (outcome.mode, outcome.error) == ("stop-start", "")
        assert 1.0 <= outcome.gap_s <= outcome.seconds
        assert "without an engine" in outcome.summary()
    finally:
        await pool.stop()


async def test_a_failed_stop_start_reload_loads_the_old_spec_again(tmp_path: Path) -> None:
    broken = stub_spec(tmp_path / "v2", StubEngine(load_error="error: invalid magic"))
    pool = pool_of(stub_spec(tmp_path / "v1"), reloading_to(broken), budget_mib=150)
    await pool.start()
    try:
        await current(pool)
        outcome = await pool.reload("a")
        assert outcome.mode == "stop-start"
        assert "the old spec was loaded again" in outcome.error
        again = await current(pool)
        assert again.ready and again.log_path.parent.name == "v1"
    finally:
        await pool.stop()


async def test_a_model_not_loaded_only_gets_its_new_spec(tmp_path: Path) -> None:
    first = stub_spec(tmp_path / "v1")
    pool = EnginePool(
        [first, replace(first, name="b")],
        budget_bytes=1000 * MIB,
        keep_alive_s=None,
        load_wait_s=30,
        respec=reloading_to(stub_spec(tmp_path / "v2")),
    )
    await pool.start()
    try:
        outcome = await pool.reload("a")
        assert (outcome.mode, outcome.error) == ("not loaded", "")
        assert pool.loaded_names() == []
        assert (await current(pool)).log_path.parent.name == "v2"
    finally:
        await pool.stop()


async def test_a_second_reload_of_the_same_model_is_refused_while_one_runs(
    tmp_path: Path,
) -> None:
    slow = stub_spec(tmp_path / "v2", StubEngine(load_delay_s=1.0))
    pool = pool_of(stub_spec(tmp_path / "v1"), reloading_to(slow))
    await pool.start()
    try:
        await current(pool)
        first = asyncio.create_task(pool.reload("a"))
        await asyncio.sleep(0.1)
        assert row(pool)["reloading"] is True
        second = await pool.reload("a")
        assert (second.mode, second.error) == (
            "refused",
            "a reload of this model is already under way",
        )
        assert (await first).error == ""
    finally:
        await pool.stop()


async def test_stopping_the_pool_mid_reload_leaves_no_engine(tmp_path: Path) -> None:
    slow = stub_spec(tmp_path / "v2", StubEngine(load_delay_s=5.0))
    pool = pool_of(stub_spec(tmp_path / "v1"), reloading_to(slow))
    await pool.start()
    old = await current(pool)
    reloading = asyncio.create_task(pool.reload("a"))
    while not (tmp_path / "v2" / "engine.log").exists():
        await asyncio.sleep(0.05)
    await pool.stop()
    with pytest.raises(asyncio.CancelledError):
        await reloading
    assert not old.ready
    engines = [
        child
        for child in psutil.Process().children(recursive=True)
        if "tests.stub_server" in child.cmdline() and child.status() != psutil.STATUS_ZOMBIE
    ]
    assert engines == []
