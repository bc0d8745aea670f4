"""Replace an engine whose resident memory keeps growing past a bound, before the kernel's
OOM killer or swap does it in the middle of requests: slow growth in a long-running engine
(a leak, fragmentation, a prompt cache that only fills) is why operators restart from cron.

The replacement is a reload (``EnginePool.reload``): blue-green where the memory budget
holds both engines, so no request fails. The bound is a size, or a factor of the engine's
own resident memory when it was first seen ready; an engine that starts above an absolute
bound is reported once and left alone, since a new one would only be replaced again.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from dsdeploy.errors import ConfigError
from dsdeploy.planner.machine import parse_size
from dsdeploy.runtime.pool import EnginePool, gib, process_tree_rss
from dsdeploy.runtime.reload import ReloadOutcome

log = logging.getLogger("dsdeploy.runtime.watchdog")

FACTOR = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*x\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class RssBound:
    """``factor`` × the engine's RSS when first seen ready, or an absolute ``size``."""

    factor: float | None = None
    size: int | None = None

    @classmethod
    def parse(cls, text: str) -> RssBound | None:
        """``2x`` (a factor, > 1), ``6G`` (a size) or ``off`` (None)."""
        if text.strip().lower() == "off":
            return None
        match = FACTOR.match(text)
        if match:
            factor = float(match[1])
            if factor <= 1:
                raise ConfigError(f"--engine-rss-limit {text}: a factor must be above 1 (e.g. 2x)")
            return cls(factor=factor)
        try:
            return cls(size=parse_size(text))
        except ConfigError:
            raise ConfigError(
                f"--engine-rss-limit {text!r}: give a factor (2x), a size (6G) or off"
            ) from None

    def limit(self, first_rss: int) -> int:
        return int(first_rss * self.factor) if self.factor is not None else int(self.size or 0)


@dataclass
class Watched:
    """One engine process as the watchdog has seen it."""

    pid: int
    first_rss: int
    over: int = 0
    """Samples in a row above the bound."""
    reported: bool = False


def sample_rss(pids: dict[str, int | None]) -> dict[str, tuple[int, int]]:
    """Each model's engine pid and resident bytes, for the engines that could be read."""
    samples = {}
    for model, pid in pids.items():
        rss = process_tree_rss(pid)
        if pid is not None and rss is not None:
            samples[model] = (pid, rss)
    return samples


class RssWatchdog:
    """Samples every loaded engine's process-tree RSS each ``interval_s``; ``strikes``
    samples in a row above the bound reload that model. Without a bound it does nothing."""

    def __init__(
        self,
        pool: EnginePool,
        bound: RssBound | None,
        *,
        interval_s: float,
        strikes: int = 3,
        report: Callable[[ReloadOutcome], None] | None = None,
    ) -> None:
        self.pool = pool
        self.bound = bound
        self.interval_s = interval_s
        self.strikes = strikes
        self.report = report
        self.replacements: dict[str, int] = {}
        self._seen: dict[str, Watched] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.bound is not None:
            self._task = asyncio.create_task(self._run(self.bound), name="rss-watchdog")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self, bound: RssBound) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            ready = {m: s.pid for m, s in self.pool.running().items() if s.ready}
            # psutil finds children by reading every process's /proc entry: not on the loop.
            samples = await asyncio.to_thread(sample_rss, ready)
            for model in self._over_bound(bound, samples):
                await self._replace(model)

    def _over_bound(self, bound: RssBound, samples: dict[str, tuple[int, int]]) -> list[str]:
        """The models whose engines stayed above their bound long enough."""
        for gone in self._seen.keys() - samples.keys():  # unloaded, or not ready now
            del self._seen[gone]
        due = []
        for model, (pid, rss) in samples.items():
            seen = self._seen.get(model)
            if seen is None or seen.pid != pid:  # a new engine: a new baseline
                seen = self._seen[model] = Watched(pid, rss)
            limit = bound.limit(seen.first_rss)
            if seen.first_rss > limit:
                if not seen.reported:
                    seen.reported = True
                    log.error(
                        "%s's engine started at %s resident, above --engine-rss-limit %s: "
                        "raise the limit; the engine is not replaced for it",
                        model,
                        gib(seen.first_rss),
                        gib(limit),
                    )
                continue
            seen.over = seen.over + 1 if rss > limit else 0
            if seen.over >= self.strikes:
                log.warning(
                    "%s's engine is at %s resident (started at %s), above its bound of %s "
                    "for %d checks in a row: replacing it",
                    model,
                    gib(rss),
                    gib(seen.first_rss),
                    gib(limit),
                    seen.over,
                )
                del self._seen[model]
                due.append(model)
        return due

    async def _replace(self, model: str) -> None:
        outcome = await self.pool.reload(model)
        if not outcome.error:
            self.replacements[model] = self.replacements.get(model, 0) + 1
        if self.report is not None:
            self.report(outcome)
