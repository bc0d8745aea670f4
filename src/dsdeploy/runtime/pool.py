"""Every served model behind one owner: engines start on a model's first request, stay up
while used, are stopped after an idle time, and are evicted least-recently-used when a
model that must load would not fit the memory budget next to them.

Nothing is stopped under a request: a lease counts the request in flight on the engine it
got, eviction and keep-alive only take engines with none, and a swap (blue-green reload)
puts the new engine in place first and stops the old one once its last lease ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

import psutil

from dsdeploy.errors import EngineStartFailed, EngineUnavailable, ModelNotFound
from dsdeploy.runtime.supervisor import Supervisor

log = logging.getLogger("dsdeploy.runtime")

REAP_INTERVAL_S = 1.0
DRAIN_POLL_S = 0.05


@dataclass(frozen=True)
class ModelSpec:
    """A servable model: how to make its engine's supervisor, and what the plan says it needs."""

    name: str
    make_supervisor: Callable[[], Supervisor]
    planned_bytes: int
    slots: int
    pinned: bool = False
    preload: bool = False


@dataclass
class Running:
    """One started engine of a model and the requests it is serving now."""

    supervisor: Supervisor
    in_flight: int = 0
    last_used: float = field(default_factory=time.monotonic)

    @property
    def idle_s(self) -> float:
        return 0.0 if self.in_flight else time.monotonic() - self.last_used


@dataclass
class ModelState:
    spec: ModelSpec
    running: Running | None = None
    loading: asyncio.Task[Running] | None = None
    waiting: int = 0
    """Requests waiting for this model's engine to load."""


class PoolListener(Protocol):
    """Told of loads and unloads as they happen (metrics), off the request path."""

    def model_loaded(self, model: str, seconds: float) -> None: ...

    def model_unloaded(self, model: str, reason: str) -> None:
        """``reason``: ``memory`` (room for another model) or ``idle`` (keep-alive)."""
        ...


def process_tree(pid: int | None) -> list[psutil.Process]:
    """The engine and its children (vLLM runs workers)."""
    if pid is None:
        return []
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def process_tree_rss(pid: int | None) -> int | None:
    """Resident memory of the engine and its children."""
    try:
        return sum(p.memory_info().rss for p in process_tree(pid)) if pid else None
    except psutil.Error:
        return None


def process_tree_cpu_s(pid: int | None) -> float | None:
    """CPU seconds (user + system) the engine and its children have used."""
    try:
        times = [p.cpu_times() for p in process_tree(pid)]
    except psutil.Error:
        return None
    return sum(t.user + t.system for t in times) if pid else None


def model_status(state: ModelState) -> dict[str, object]:
    running = state.running
    if running is None:
        phase = "loading" if state.loading is not None else "not loaded"
    elif running.supervisor.ready:
        phase = "ready"
    elif running.supervisor.state == "ready":  # it died; the watcher has not seen it yet
        phase = "restarting"
    else:
        phase = running.supervisor.state
    return {
        "model": state.spec.name,
        "state": phase,
        "pinned": state.spec.pinned,
        "planned_bytes": state.spec.planned_bytes,
        "rss_bytes": process_tree_rss(running.supervisor.pid) if running else None,
        "cpu_s": process_tree_cpu_s(running.supervisor.pid) if running else None,
        "slots": state.spec.slots,
        "in_flight": running.in_flight if running else 0,
        "waiting": state.waiting,
        "idle_s": round(running.idle_s, 1) if running else None,
        "restarts": running.supervisor.restarts if running else 0,
        "recovery_s": running.supervisor.last_recovery_s if running else None,
    }


def gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


class EnginePool:
    """The runtime's owner of engines; the gateway sees it as an ``UpstreamPool``."""

    def __init__(
        self,
        models: list[ModelSpec],
        *,
        budget_bytes: int,
        keep_alive_s: float | None,
        load_wait_s: float,
    ) -> None:
        self._models = {spec.name: ModelState(spec) for spec in models}
        self.budget_bytes = budget_bytes
        self.keep_alive_s = keep_alive_s
        """None: loaded engines stay until evicted or the pool stops."""
        self.load_wait_s = load_wait_s
        self._budget_lock = asyncio.Lock()
        self._reaper: asyncio.Task[None] | None = None
        self._stopping: set[asyncio.Task[None]] = set()
        self._listeners: list[PoolListener] = []

    def add_listener(self, listener: PoolListener) -> None:
        self._listeners.append(listener)

    def model_names(self) -> list[str]:
        return sorted(self._models)

    def states(self) -> list[ModelState]:
        return [self._models[name] for name in self.model_names()]

    def status(self) -> list[dict[str, object]]:
        """What `dsdeploy ps` shows: each model's state, memory planned and measured, slots
        busy and idle time."""
        return [model_status(state) for state in self.states()]

    def running(self) -> dict[str, Supervisor]:
        """Each loaded model's engine (ready or not), for reading its own metrics."""
        return {s.spec.name: s.running.supervisor for s in self.states() if s.running}

    def health(self) -> tuple[bool, str]:
        """Serving is possible unless every pinned model's engine is down."""
        pinned = [s for s in self._models.values() if s.spec.pinned]
        down = [s for s in pinned if s.running is None or not s.running.supervisor.ready]
        if pinned and len(down) == len(pinned):
            first = down[0]
            reason = first.running.supervisor.unavailable_reason() if first.running else ""
            return False, reason or f"the engine for {first.spec.name} is not running"
        return True, ""

    async def start(self) -> None:
        """Load preloaded models now (failing loudly), then watch idle time."""
        for state in self._models.values():
            if state.spec.preload:
                await self._ensure_running(state, wait_s=None)
        if self.keep_alive_s is not None:
            self._reaper = asyncio.create_task(self._reap_idle(), name="engine-reaper")

    async def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        for state in self._models.values():
            if state.loading is not None:
                state.loading.cancel()
                with contextlib.suppress(BaseException):
                    await state.loading
            if state.running is not None:
                await state.running.supervisor.stop()
                state.running = None
        await asyncio.gather(*self._stopping, return_exceptions=True)

    @contextlib.asynccontextmanager
    async def lease(self, model: str) -> AsyncIterator[Supervisor]:
        state = self._models.get(model)
        if state is None:
            raise ModelNotFound(model, self.model_names())
        running = await self._ensure_running(state, wait_s=self.load_wait_s)
        running.in_flight += 1
        try:
            yield running.supervisor
        finally:
            running.in_flight -= 1
            running.last_used = time.monotonic()

    async def swap(self, model: str, replacement: Supervisor) -> None:
        """Start ``replacement`` beside the running engine, put it in place, then drain and
        stop the old one; requests never see the model missing."""
        state = self._models[model]
        await replacement.start()
        old, state.running = state.running, Running(replacement)
        if old is not None:
            await self._drain_and_stop(old)

    async def _ensure_running(self, state: ModelState, wait_s: float | None) -> Running:
        if state.running is None and state.loading is None:
            async with self._budget_lock:  # one decision at a time about who may load
                if state.running is None and state.loading is None:
                    await self._make_room(state.spec)
                    state.loading = asyncio.create_task(
                        self._load(state), name=f"load-{state.spec.name}"
                    )
                    # A waiter that gave up leaves the outcome unread; read it here.
                    state.loading.add_done_callback(
                        lambda task: task.cancelled() or task.exception()
                    )
        if state.running is not None:
            return state.running
        assert state.loading is not None
        state.waiting += 1
        try:
            return await asyncio.wait_for(asyncio.shield(state.loading), wait_s)
        except asyncio.TimeoutError:
            raise EngineUnavailable(
                f"the model {state.spec.name!r} is still loading; retry in a few seconds"
            ) from None
        finally:
            state.waiting -= 1

    async def _load(self, state: ModelState) -> Running:
        supervisor = state.spec.make_supervisor()
        started = time.monotonic()
        try:
            await supervisor.start()
        except EngineStartFailed as failure:
            log.error("loading %s failed: %s", state.spec.name, failure)
            raise EngineUnavailable(
                f"the engine for {state.spec.name!r} failed to load the model; the operator "
                "log says why"
            ) from None
        finally:
            state.loading = None
        state.running = Running(supervisor)
        log.info("loaded %s (planned %s)", state.spec.name, gib(state.spec.planned_bytes))
        for listener in self._listeners:
            listener.model_loaded(state.spec.name, time.monotonic() - started)
        return state.running

    def _reserved_bytes(self) -> int:
        return sum(
            s.spec.planned_bytes
            for s in self._models.values()
            if s.running is not None or s.loading is not None
        )

    async def _make_room(self, spec: ModelSpec) -> None:
        """Stop least-recently-used idle engines until ``spec`` fits the budget; refuse,
        stopping nothing, when it cannot fit even alone or only busy engines are left.
        Called with the budget lock held."""
        if spec.planned_bytes > self.budget_bytes:
            raise EngineUnavailable(
                f"the model {spec.name!r} needs {gib(spec.planned_bytes)}, more than this "
                f"server's memory budget of {gib(self.budget_bytes)}: it cannot be loaded"
            )
        needed = self._reserved_bytes() + spec.planned_bytes - self.budget_bytes
        chosen = []
        for victim in self._eviction_order():
            if needed <= 0:
                break
            chosen.append(victim)
            needed -= victim.spec.planned_bytes
        if needed > 0:
            raise EngineUnavailable(
                f"the model {spec.name!r} needs {gib(spec.planned_bytes)} and the models "
                "in use leave too little of the memory budget; retry when they are idle"
            )
        for victim in chosen:
            log.info("unloading %s (idle) to make room for %s", victim.spec.name, spec.name)
            await self._unload(victim, "memory")

    def _eviction_order(self) -> list[ModelState]:
        idle = [
            s
            for s in self._models.values()
            if s.running is not None and s.running.in_flight == 0 and not s.spec.pinned
        ]
        return sorted(idle, key=lambda s: s.running.last_used if s.running else 0.0)

    async def _unload(self, state: ModelState, reason: str) -> None:
        running, state.running = state.running, None
        if running is not None:
            for listener in self._listeners:
                listener.model_unloaded(state.spec.name, reason)
            await self._stop_engine(running.supervisor)

    async def _drain_and_stop(self, running: Running) -> None:
        while running.in_flight:
            await asyncio.sleep(DRAIN_POLL_S)
        await self._stop_engine(running.supervisor)

    async def _stop_engine(self, supervisor: Supervisor) -> None:
        """Stops run to the end even if their caller is cancelled; ``stop`` waits for them."""
        task = asyncio.create_task(supervisor.stop(), name="engine-stop")
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)
        await asyncio.shield(task)

    async def _reap_idle(self) -> None:
        assert self.keep_alive_s is not None
        while True:
            await asyncio.sleep(REAP_INTERVAL_S)
            for state in self._eviction_order():
                if state.running is not None and state.running.idle_s > self.keep_alive_s:
                    log.info("unloading %s after %.0f s idle", state.spec.name, self.keep_alive_s)
                    await self._unload(state, "idle")
