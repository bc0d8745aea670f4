"""Run one engine as a child process: start it, wait until it answers, restart it with
backoff when it dies or hangs, and stop it for good when dsdeploy stops.

The engine listens on a Unix socket in a fresh folder only this user can open (mode 0700),
so nothing on the machine reaches it except through the gateway. The socket's path stays
the same across restarts.

No orphan engines: the child is in its own session (Ctrl-C reaches only us, and we stop it
gracefully), and on Linux the kernel kills it if we die without cleaning up (PDEATHSIG).

A hung engine (deadlocked, stopped, stuck in the kernel) still runs as far as the kernel is
concerned, so a ready engine is also asked for its health every few seconds; one that fails
several checks in a row is killed with its whole process group and restarted like a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx

from dsdeploy.engines.base import Engine, EngineCapabilities, EngineFailure, MemoryWeights
from dsdeploy.engines.exit_status import explain_signal, signal_name
from dsdeploy.errors import EngineStartFailed, WeightsCryptoError

log = logging.getLogger("dsdeploy.runtime.supervisor")

PR_SET_PDEATHSIG = 1
POLL_S = 0.2
HEALTHY_RESETS_BACKOFF_S = 60.0
STOP_GRACE_S = 10.0


def die_with_parent(core_dumps: bool = True) -> Callable[[], None] | None:
    """A preexec hook that makes the kernel SIGKILL the child when this process dies, and,
    without ``core_dumps``, keeps a crashing child from writing its memory (decrypted
    weights) to a core file: the limit and the dump filter both survive exec.

    The signal follows the thread that forks, so spawn only from the event-loop thread."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)
        if not core_dumps:
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            dump_filter = os.open("/proc/self/coredump_filter", os.O_WRONLY)
            os.write(dump_filter, b"0")  # a core_pattern pipe (systemd) ignores RLIMIT_CORE
            os.close(dump_filter)

    return arm


def log_tail(path: Path, offset: int, lines: int = 20) -> list[str]:
    """The last non-blank lines the engine wrote since ``offset``."""
    with path.open("rb") as handle:
        handle.seek(offset)
        text = handle.read().decode(errors="replace")
    return [line for line in text.splitlines() if line.strip()][-lines:]


class Supervisor:
    """Owns one engine process; the gateway sees it as an upstream that may be unavailable."""

    def __init__(
        self,
        engine: Engine,
        model_name: str,
        log_path: Path,
        *,
        ready_timeout_s: float,
        backoff_max_s: float,
        health_interval_s: float,
        health_failures: int,
        planned_bytes: int | None = None,
        environ: Mapping[str, str] | None = None,
        weights: MemoryWeights | None = None,
    ) -> None:
        self.engine = engine
        self.weights = weights
        """Decrypted weights the engine reads: loaded at start, released at stop."""
        self._loading_weights: asyncio.Future[None] | None = None
        self.environ = dict(environ or {})
        """dsdeploy's environment, of which the engine gets only its allowlist."""
        self.planned_bytes = planned_bytes
        """The plan's memory for this engine, quoted when the kernel kills it for memory."""
        self.last_exit = ""
        """Why the engine last stopped on its own, for clients and the operator."""
        self.model_name = model_name
        self.log_path = log_path
        self.ready_timeout_s = ready_timeout_s
        self.backoff_max_s = backoff_max_s
        self.health_interval_s = health_interval_s
        """Seconds between health checks of a ready engine, and each check's timeout."""
        self.health_failures = health_failures
        """Failed checks in a row after which a running engine is deemed hung."""
        self.state = "stopped"
        self.restarts = 0
        self.last_recovery_s: float | None = None
        """Seconds the last restart took, from the engine seen dead (or killed as hung) to
        ready again; None before any."""
        self._proc: subprocess.Popen[bytes] | None = None
        self._rundir: Path | None = None
        self._watcher: asyncio.Task[None] | None = None

    @property
    def capabilities(self) -> EngineCapabilities:
        return self.engine.capabilities

    def translate_error(self, status: int, payload: bytes) -> EngineFailure | None:
        return self.engine.translate_error(status, payload)

    @property
    def socket_path(self) -> Path:
        if self._rundir is None:
            raise RuntimeError("the supervisor has not been started")
        return self._rundir / "engine.sock"

    @property
    def pid(self) -> int | None:
        """The engine process's id while it runs (it leads its own process group)."""
        return self._proc.pid if self._running() and self._proc is not None else None

    @property
    def ready(self) -> bool:
        """Whether the engine takes requests now. Asks the kernel whether the process still
        runs, so a crash shows at once, not at the watcher's next poll."""
        return self.state == "ready" and self._running()

    def _running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def unavailable_reason(self) -> str:
        if self.state == "restarting" or (self.state == "ready" and not self._running()):
            why = f" ({self.last_exit})" if self.last_exit else ""
            return (
                f"the {self.engine.name} engine stopped unexpectedly{why} and is restarting; "
                "retry in a few seconds"
            )
        if self.state == "ready":
            return f"the {self.engine.name} engine is not answering; retry in a few seconds"
        return f"the {self.engine.name} engine is {self.state}; see {self.log_path}"

    async def start(self) -> None:
        """Start the engine and return once it answers; raise EngineStartFailed if it never does."""
        if self._watcher is not None:
            return
        self.state = "starting"
        self._rundir = Path(tempfile.mkdtemp(prefix="dsdeploy-"))
        try:
            await self._load_weights()
            await self._launch()
        except BaseException:
            await self.stop()
            raise
        self._watcher = asyncio.create_task(self._watch(), name="engine-watch")

    async def stop(self) -> None:
        self.state = "stopping"
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        await self._terminate()
        self._release_weights()
        if self._rundir is not None:
            shutil.rmtree(self._rundir, ignore_errors=True)
            self._rundir = None
        self.state = "stopped"

    async def _load_weights(self) -> None:
        """Decrypt in a worker thread: a large model takes seconds, and the gateway keeps
        serving the other models meanwhile."""
        if self.weights is None:
            return
        self._loading_weights = asyncio.ensure_future(asyncio.to_thread(self.weights.load))
        try:
            await asyncio.shield(self._loading_weights)
        except (WeightsCryptoError, OSError) as exc:
            raise EngineStartFailed(f"cannot load {self.model_name}: {exc}", []) from None

    def _release_weights(self) -> None:
        """Close the memfd, after a decryption still running in its thread, if any (the
        descriptor's number must not be reused while that thread writes to it)."""
        weights, loading = self.weights, self._loading_weights
        if weights is None:
            return
        if loading is None or loading.done():
            weights.release()
            return

        def release_when_loaded(done: asyncio.Future[None]) -> None:
            if not done.cancelled():
                done.exception()  # read, so that asyncio does not report it as lost
            weights.release()

        loading.add_done_callback(release_when_loaded)

    async def _launch(self) -> None:
        self.socket_path.unlink(missing_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        spec = self.engine.launch(self.socket_path, self.environ)
        with self.log_path.open("ab") as sink:
            self._proc = subprocess.Popen(
                spec.argv,
                env=spec.env,
                pass_fds=spec.pass_fds,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # prctl and setrlimit only, no locks taken
                preexec_fn=die_with_parent(core_dumps=self.weights is None),  # noqa: PLW1509
            )
        failure = await self._wait_ready(self._proc)
        if failure is not None:
            await self._terminate()
            tail = log_tail(self.log_path, offset)
            if signal_name(self._proc.returncode or 0) is None:
                failure = f"{failure}; {self.engine.explain_failure(tail)}"
            raise EngineStartFailed(failure, tail)
        self.state = "ready"

    async def _wait_ready(self, proc: subprocess.Popen[bytes]) -> str | None:
        """None once the engine answers its health check, else why it never will."""
        deadline = time.monotonic() + self.ready_timeout_s
        async with self._engine_client(timeout_s=5.0) as client:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    why = explain_signal(
                        proc.returncode, loading=True, planned_bytes=self.planned_bytes
                    )
                    return (
                        f"{self.engine.name} stopped while loading {self.model_name}: {why}; "
                        f"its log is {self.log_path}"
                    )
                if await self._healthy(client):
                    return None
                await asyncio.sleep(POLL_S / 2)
        return (
            f"{self.engine.name} did not become ready within {self.ready_timeout_s:.0f} s; "
            f"raise DSDEPLOY_READY_TIMEOUT_S or see {self.log_path}"
        )

    def _engine_client(self, timeout_s: float) -> httpx.AsyncClient:
        transport = httpx.AsyncHTTPTransport(uds=str(self.socket_path))
        return httpx.AsyncClient(transport=transport, base_url="http://engine", timeout=timeout_s)

    async def _healthy(self, client: httpx.AsyncClient) -> bool:
        try:
            return (await client.get(self.engine.health_path)).status_code == 200
        except httpx.TransportError:  # refused, reset, or timed out
            return False

    async def _until_hung(self, proc: subprocess.Popen[bytes]) -> str | None:
        """Wait while the engine runs, checking its health every interval. Returns why it
        is deemed hung once it has failed ``health_failures`` checks in a row, or None
        when it exits."""
        misses = 0
        due = time.monotonic()
        async with self._engine_client(timeout_s=self.health_interval_s) as client:
            while misses < self.health_failures:
                # Checks keep their cadence: a check that timed out is followed at once.
                due = max(due + self.health_interval_s, time.monotonic())
                while proc.poll() is None and time.monotonic() < due:
                    await asyncio.sleep(min(POLL_S, self.health_interval_s))
                if proc.poll() is not None:
                    return None
                misses = 0 if await self._healthy(client) else misses + 1
        return (
            f"it failed {misses} health checks in a row, {self.health_interval_s:g} s apart, "
            "and was killed as hung"
        )

    async def _ended(self, proc: subprocess.Popen[bytes]) -> str:
        """Wait until the engine exits, or kill it once it hangs; say why it ended."""
        hung = await self._until_hung(proc)
        if hung is None:
            return explain_signal(proc.returncode, loading=False, planned_bytes=self.planned_bytes)
        self.last_exit = hung  # before the kill, so that /health never says less
        log.error("engine hung: %s", hung)
        await self._terminate(grace_s=0.0)
        return hung

    async def _watch(self) -> None:
        """Restart the engine whenever it exits or hangs, waiting longer after each quick
        failure."""
        failures = 0
        down_since: float | None = None
        while self._proc is not None:
            started = time.monotonic()
            self.last_exit = await self._ended(self._proc)
            down_since = down_since or time.monotonic()  # kept across failed restarts
            self.state = "restarting"
            self.restarts += 1
            if time.monotonic() - started > HEALTHY_RESETS_BACKOFF_S:
                failures = 0
            delay = min(self.backoff_max_s, 0.5 * 2**failures)
            failures += 1
            log.warning("engine stopped: %s; restarting in %.1f s", self.last_exit, delay)
            await asyncio.sleep(delay)
            try:
                await self._launch()
                self.last_recovery_s, down_since = time.monotonic() - down_since, None
                log.warning(
                    "engine ready again after %.1f s (restart %d)",
                    self.last_recovery_s,
                    self.restarts,
                )
            except EngineStartFailed as failure:
                log.error("engine restart failed: %s", failure)

    async def _terminate(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop the engine's whole process group: SIGTERM, then SIGKILL after ``grace_s``
        (at once when it is 0: a hung engine would not act on SIGTERM)."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        # The engine leads its own process group: its workers (vLLM's) stop with it.
        if grace_s > 0:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
                os.killpg(proc.pid, signal.SIGCONT)  # a stopped engine acts on SIGTERM once resumed
            deadline = time.monotonic() + grace_s
            while proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(POLL_S / 4)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        while proc.poll() is None:  # not wait(): one stuck in the kernel would block the loop
            await asyncio.sleep(POLL_S / 4)
