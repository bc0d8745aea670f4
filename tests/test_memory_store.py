"""The in-memory limits store: exact moving-window counts, expired entries pruned, and no
request ever waiting for a worker thread."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from limits import RateLimitItemPerMinute
from limits.aio.strategies import MovingWindowRateLimiter

from dsdeploy.security.limits import open_storage
from dsdeploy.security.memory_store import LoopPrunedMemoryStorage

T = TypeVar("T")


class NoThreads(ThreadPoolExecutor):
    """The loop's default executor in these tests: notes (and refuses) every submission,
    background tasks' included."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.submitted: list[Any] = []

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.submitted.append(fn)
        raise RuntimeError("no worker threads here")


def on_a_loop_without_threads(body: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``body``'s result, once it and anything it scheduled ran without a worker thread."""
    executor = NoThreads()

    async def main() -> T:
        asyncio.get_running_loop().set_default_executor(executor)
        result = await body()
        await asyncio.sleep(0.05)  # the store's own background tasks, if it made any
        return result

    result = asyncio.run(main())
    assert executor.submitted == []
    return result


def test_the_default_store_is_the_loop_pruned_one() -> None:
    assert isinstance(open_storage(None), LoopPrunedMemoryStorage)


def test_a_burst_of_hits_is_counted_exactly_without_worker_threads() -> None:
    storage = LoopPrunedMemoryStorage()
    window = MovingWindowRateLimiter(storage)
    item = RateLimitItemPerMinute(60)

    async def burst() -> list[bool]:
        return await asyncio.gather(*(window.hit(item, "key") for _ in range(100)))

    admitted = on_a_loop_without_threads(burst)
    assert admitted.count(True) == 60


def test_counters_and_token_reservations_work_without_worker_threads() -> None:
    storage = LoopPrunedMemoryStorage()

    async def count() -> int:
        await storage.incr("tokens", 60, 500)
        await storage.incr("tokens", 60, 250)
        await storage.decr("tokens", 100)
        return await storage.get("tokens")

    assert on_a_loop_without_threads(count) == 650


def test_pruning_drops_expired_entries_and_counters_and_keeps_live_ones() -> None:
    storage = LoopPrunedMemoryStorage()
    window = MovingWindowRateLimiter(storage)
    item = RateLimitItemPerMinute(10)

    async def fill() -> None:
        for _ in range(3):
            await window.hit(item, "old")
        await storage.incr("counter", 60)

    asyncio.run(fill())
    later = time.time() + 61
    asyncio.run(window.hit(item, "new"))
    storage.prune(later - 1)  # "new" is 1 s old then, "old" a minute and more
    assert "old" not in " ".join(storage.events)
    assert len(next(iter(storage.events.values()))) == 1
    assert "counter" not in storage.storage


def test_pruning_runs_at_most_once_a_second() -> None:
    storage = LoopPrunedMemoryStorage()
    window = MovingWindowRateLimiter(storage)
    item = RateLimitItemPerMinute(1000)

    async def hits() -> None:
        for _ in range(50):
            await window.hit(item, "key")

    asyncio.run(hits())
    first = storage._pruned_at
    asyncio.run(hits())
    assert storage._pruned_at == first  # the same second: no second pass
