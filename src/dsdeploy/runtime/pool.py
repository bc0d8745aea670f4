"""Every served model behind one owner: engines start on a model's first request, stay up
while used, are stopped after an idle time, and are evicted least-recently-used when a
model that must load would not fit the memory budget next to them.

Nothing is stopped under a request: a lease counts the request in flight on the engine it
got, eviction and keep-alive only take engines with none, and a reload puts the new engine
in place first and stops the old one once its last lease ends (or the drain bound passes).
When the budget cannot hold both engines, a reload stops the old one first and requests
wait for the new one as they wait for any load.
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

from dsdeploy.errors import DsdeployError, EngineStartFailed, EngineUnavailable, ModelNotFound
from dsdeploy.runtime.reload import ReloadMode, ReloadOutcome
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
    adapters: tuple[str, ...] = ()
    """Names of LoRA adapters this model's engine loads: each is served by that engine,
    selected per request (``gateway.adapters``), never by an engine of its own."""


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
    reload: asyncio.Task[ReloadOutcome] | None = None
    generation: int = 0
    """Engines this model has had put in place by reloads."""
    extra_bytes: int = 0
    """Planned memory of this model's second engine: a replacement starting beside the
    running one, or an old one draining."""


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
        "reloading": state.reload is not None,
        "generation": state.generation,
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
        drain_timeout_s: float = 30.0,
        respec: Callable[[ModelSpec], ModelSpec] | None = None,
    ) -> None:
        """``respec`` rebuilds a model's spec from what defines its engine now (manifest,
        files, engine binary) for a reload; without it a reload restarts the same spec."""
        self._models = {spec.name: ModelState(spec) for spec in models}
        self._adapters = {adapter: spec.name for spec in models for adapter in spec.adapters}
        self.budget_bytes = budget_bytes
        self.keep_alive_s = keep_alive_s
        """None: loaded engines stay until evicted or the pool stops."""
        self.load_wait_s = load_wait_s
        self.drain_timeout_s = drain_timeout_s
        """Longest an engine being replaced is left to finish its requests."""
        self._respec = respec or (lambda spec: spec)
        self._budget_lock = asyncio.Lock()
        self._reaper: asyncio.Task[None] | None = None
        self._stopping: set[asyncio.Task[None]] = set()
        self._listeners: list[PoolListener] = []

    def add_listener(self, listener: PoolListener) -> None:
        self._listeners.append(listener)

    def model_names(self) -> list[str]:
        """Every servable name: models and the adapters their engines load."""
        return sorted([*self._models, *self._adapters])

    def states(self) -> list[ModelState]:
        return [self._models[name] for name in sorted(self._models)]

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
            if state.reload is not None:
                state.reload.cancel()
                with contextlib.suppress(BaseException):
                    await state.reload
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
        state = self._models.get(self._adapters.get(model, model))
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

    def loaded_names(self) -> list[str]:
        """Models with an engine running or loading: what a reload of everything reloads."""
        return [s.spec.name for s in self.states() if s.running or s.loading]

    async def reload(self, model: str) -> ReloadOutcome:
        """Replace the model's engine with one built from its spec as it is now; one
        reload per model at a time (another one is refused, not queued). The reload goes
        on if the caller stops waiting; only ``stop`` cancels it."""
        state = self._models.get(model)
        if state is None:
            raise ModelNotFound(model, self.model_names())
        if state.reload is not None:
            return ReloadOutcome(
                model, "refused", 0.0, error="a reload of this model is already under way"
            )
        task = asyncio.create_task(self._reload(state), name=f"reload-{model}")
        state.reload = task

        def finished(done: asyncio.Task[ReloadOutcome]) -> None:
            state.reload = None
            if not done.cancelled():
                done.exception()  # read, so that a caller who left leaves nothing unread

        task.add_done_callback(finished)
        return await asyncio.shield(task)

    async def _reload(self, state: ModelState) -> ReloadOutcome:
        started = time.monotonic()
        name = state.spec.name

        def outcome(
            mode: ReloadMode, serving_at: float | None = None, gap_s: float = 0.0, error: str = ""
        ) -> ReloadOutcome:
            if error:
                log.error("reloading %s failed (%s): %s", name, mode, error)
            seconds = round(time.monotonic() - started, 2)
            serving = 0.0 if serving_at is None else round(serving_at - started, 2)
            return ReloadOutcome(name, mode, seconds, round(gap_s, 2), serving, error)

        try:
            spec = await asyncio.to_thread(self._respec, state.spec)
        except DsdeployError as exc:
            return outcome("refused", error=f"{exc}; the running engine stays")
        if state.loading is not None:  # a load of the old spec: replace what it loads
            with contextlib.suppress(DsdeployError):
                await asyncio.shield(state.loading)
        if state.running is None:
            state.spec = spec
            return outcome("not loaded")
        async with self._budget_lock:
            mode = self._reload_mode(state, spec)
            if mode == "blue-green":
                state.extra_bytes = spec.planned_bytes
        if mode == "blue-green":
            return outcome(mode, *await self._blue_green(state, spec))
        if mode == "stop-start":
            log.warning(
                "%s: the memory budget (%s) cannot hold the old and the new engine together; "
                "stopping the old one first",
                name,
                gib(self.budget_bytes),
            )
            return outcome(mode, *await self._stop_start(state, spec))
        return outcome(
            mode,
            error=f"the new engine needs {gib(spec.planned_bytes)}, more than the memory "
            f"budget of {gib(self.budget_bytes)} leaves beside the other loaded models; "
            "unload them or raise --memory-budget; the running engine stays",
        )

    def _reload_mode(self, state: ModelState, spec: ModelSpec) -> ReloadMode:
        """Blue-green when the budget holds everything loaded plus the new engine;
        stop-start when it holds the new one in place of the old; else refused."""
        others = self._reserved_bytes() - state.spec.planned_bytes
        if others + state.spec.planned_bytes + spec.planned_bytes <= self.budget_bytes:
            return "blue-green"
        if others + spec.planned_bytes <= self.budget_bytes:
            return "stop-start"
        return "refused"

    async def _blue_green(
        self, state: ModelState, spec: ModelSpec
    ) -> tuple[float | None, float, str]:
        """Start the new engine beside the old (whose memory is reserved), put it in
        place, drain and stop the old one. Returns when the new one took requests, no gap,
        and why it did not (the old one still serving)."""
        started = time.monotonic()
        try:
            replacement = spec.make_supervisor()
            await replacement.start()
        except DsdeployError as exc:  # the model check refused, or it never got ready
            state.extra_bytes = 0
            return None, 0.0, f"the new engine did not start: {exc}; the running engine stays"
        except BaseException:
            state.extra_bytes = 0
            raise
        old, state.running = state.running, Running(replacement)
        serving_at = time.monotonic()
        old_bytes, state.spec = state.spec.planned_bytes, spec
        state.generation += 1
        state.extra_bytes = old_bytes if old is not None else 0
        for listener in self._listeners:
            listener.model_loaded(spec.name, time.monotonic() - started)
        try:
            if old is not None:
                await self._drain_and_stop(old)
        finally:
            state.extra_bytes = 0
        return serving_at, 0.0, ""

    async def _stop_start(
        self, state: ModelState, spec: ModelSpec
    ) -> tuple[float | None, float, str]:
        """Take the old engine out of service (requests from now on wait for the load),
        drain and stop it, then load the new one. Returns when it took requests, the
        seconds without an engine, and why the new one failed, if it did (then the old
        spec is loaded again)."""
        old, old_spec = state.running, state.spec
        assert old is not None
        detached = time.monotonic()
        state.running, state.spec = None, spec
        state.extra_bytes = old_spec.planned_bytes  # until the old one has stopped
        state.loading = asyncio.create_task(self._stop_then_load(state, old), name="reload")
        state.loading.add_done_callback(lambda task: task.cancelled() or task.exception())
        try:
            await asyncio.shield(state.loading)
        except DsdeployError as exc:  # the model check refused, or it never got ready
            state.spec = old_spec
            with contextlib.suppress(DsdeployError):
                await self._ensure_running(state, wait_s=None)
            why = exc.__cause__ or exc
            again = "the old spec was loaded again" if state.running else "it is not loaded"
            gap_s = time.monotonic() - detached
            return None, gap_s, f"the new engine did not start: {why}; {again}"
        state.generation += 1
        serving_at = time.monotonic()
        return serving_at, serving_at - detached, ""

    async def _stop_then_load(self, state: ModelState, old: Running) -> Running:
        try:
            await self._drain_and_stop(old)
        finally:
            state.extra_bytes = 0
        return await self._load(state)

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
        started = time.monotonic()
        try:
            supervisor = state.spec.make_supervisor()  # checks the model files first
            await supervisor.start()
        except EngineStartFailed as failure:
            log.error("loading %s failed: %s", state.spec.name, failure)
            raise EngineUnavailable(  # the cause is for the operator (a reload's outcome)
                f"the engine for {state.spec.name!r} failed to load the model; the operator "
                "log says why"
            ) from failure
        finally:
            state.loading = None
        state.running = Running(supervisor)
        log.info("loaded %s (planned %s)", state.spec.name, gib(state.spec.planned_bytes))
        for listener in self._listeners:
            listener.model_loaded(state.spec.name, time.monotonic() - started)
        return state.running

    def _reserved_bytes(self) -> int:
        return sum(
            s.spec.planned_bytes + s.extra_bytes
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
            if s.running is not None
            and s.running.in_flight == 0
            and not s.spec.pinned
            and s.reload is None  # its engine is about to be replaced, not unloaded
        ]
        return sorted(idle, key=lambda s: s.running.last_used if s.running else 0.0)

    async def _unload(self, state: ModelState, reason: str) -> None:
        running, state.running = state.running, None
        if running is not None:
            for listener in self._listeners:
                listener.model_unloaded(state.spec.name, reason)
            await self._stop_engine(running.supervisor)

    async def _drain_and_stop(self, running: Running) -> None:
        """Let the engine's requests finish, for ``drain_timeout_s`` at most, then stop it
        (stopped even if the wait is cancelled: nobody else holds it any more)."""
        deadline = time.monotonic() + self.drain_timeout_s
        try:
            while running.in_flight and time.monotonic() < deadline:
                await asyncio.sleep(DRAIN_POLL_S)
            if running.in_flight:
                log.warning(
                    "stopping a replaced engine with %d requests still in flight after %.0f s "
                    "(drain_timeout_s)",
                    running.in_flight,
                    self.drain_timeout_s,
                )
        finally:
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
