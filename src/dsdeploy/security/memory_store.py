"""The ``limits`` in-memory store, pruned on the event loop instead of in worker threads.

``limits.aio.storage.MemoryStorage`` schedules a pruning pass after every hit, and that pass
takes each moving window's lock and bisects its entries in ``asyncio.to_thread``. A request
that arrives meanwhile waits for the lock, that is for a thread hand-off; when the engine's
threads hold every core, each hand-off waits for the scheduler. Sixteen requests arriving
together spent 16–22 ms in the limits stage that way (``benchmarks/limits_overhead.py``,
"16 at once"), against about 0.25 ms for one alone.

This store keeps the library's counting and its moving-window arithmetic and only replaces
the pruning: at most once per ``PRUNE_EVERY_S``, inline (a bisect and a slice per key, no
lock needed: nothing else runs on the loop meanwhile). Entries past their window are
ignored by the window arithmetic anyway, so pruning later changes memory, never a count.
"""

from __future__ import annotations

import bisect
import time

from limits.aio.storage import MemoryStorage

PRUNE_EVERY_S = 1.0


class LoopPrunedMemoryStorage(MemoryStorage):
    """``async+memory://`` without the worker-thread pruning; used by one event loop."""

    STORAGE_SCHEME = ["async+loop-memory"]

    def __init__(self) -> None:
        super().__init__()
        self._pruned_at = 0.0

    async def _MemoryStorage__schedule_expiry(self) -> None:  # noqa: N802 (the library's hook)
        """Called by the library before every count; replaces its per-hit pruning task."""
        now = time.time()
        if now - self._pruned_at >= PRUNE_EVERY_S:
            self._pruned_at = now
            self.prune(now)

    def prune(self, now: float) -> None:
        """Drop moving-window entries that expired and counters past their expiry."""
        for key, entries in list(self.events.items()):
            # Newest first: entries still live form a prefix.
            live = bisect.bisect_left(entries, -now, key=lambda entry: -entry.expiry)
            if live:
                self.events[key] = entries[:live]
            else:
                del self.events[key]
                self.locks.pop(key, None)
        for key, expiry in list(self.expirations.items()):
            if expiry <= now:
                self.storage.pop(key, None)
                del self.expirations[key]
                self.locks.pop(key, None)
