"""``dsdeploy serve``: resolve the models, find or build the engine, plan each model, and put
the gateway in front of the pool that starts their engines."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Callable, Coroutine, Iterable
from types import FrameType
from typing import Any

from limits.aio.storage import Storage
from rich.console import Console
from sqlalchemy.exc import SQLAlchemyError

from dsdeploy.control.server import ControlSocket, control_app, reload_models
from dsdeploy.engine_setup import ensure_engine
from dsdeploy.engines.vllm_locate import require_vllm
from dsdeploy.errors import ConfigError
from dsdeploy.gateway.adapters import AdapterSelection, adapter_selections
from dsdeploy.gateway.app import create_app
from dsdeploy.gateway.audit import RequestAudit
from dsdeploy.gateway.auth import AuthConfig
from dsdeploy.gateway.hooks import Hook
from dsdeploy.gateway.limits import LimitsHook
from dsdeploy.gateway.server import GatewayServer, uvicorn_config
from dsdeploy.gateway.tls import check_tls_files
from dsdeploy.hardware import Hardware, probe
from dsdeploy.planner.machine import machine_for, parse_size
from dsdeploy.planner.placement import RAM_RESERVE
from dsdeploy.runtime.pool import EnginePool, ModelSpec
from dsdeploy.runtime.reload import ReloadOutcome
from dsdeploy.runtime.watchdog import RssBound, RssWatchdog
from dsdeploy.security.audit import AuditLog, audit_url
from dsdeploy.security.audit_writer import AuditWriter
from dsdeploy.security.auth_throttle import FailedAuthThrottle
from dsdeploy.security.exposure import auth_notice
from dsdeploy.security.key_cache import KeyCache
from dsdeploy.security.keys import KeyStore
from dsdeploy.security.limits import Limiter
from dsdeploy.security.redact import default_redactor
from dsdeploy.security.weights_memory import forbid_dumps
from dsdeploy.served_models import (
    model_spec,
    respecifier,
    served_names,
    stored_or_pulled,
    with_adapters,
)
from dsdeploy.served_transformers import transformers_model_spec
from dsdeploy.served_vllm import check_vllm_models, vllm_model_spec
from dsdeploy.settings import Settings
from dsdeploy.store import Store


def check_port_free(host: str, port: int) -> None:
    """Fail before the engine loads, not after, when the API port is taken."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port} ({exc.strerror}); pick another with --port"
            ) from None


def budget_bytes(settings: Settings, hardware: Hardware) -> int:
    if settings.serving.memory_budget is None:
        return hardware.ram_available - RAM_RESERVE
    return parse_size(settings.serving.memory_budget)


def prepare(settings: Settings, requested: list[str], console: Console) -> EnginePool:
    """Everything that can fail before a process starts: models, engine, plans, budget."""
    store = Store(settings.dirs.models)
    names = served_names(store, requested)
    unknown = sorted(set(settings.serving.preload + settings.serving.pin) - set(names))
    if unknown:
        raise ConfigError(f"--preload/--pin name models that are not served: {', '.join(unknown)}")
    if settings.engine.engine_kind == "vllm":
        return prepare_vllm(settings, store, names, console)
    if settings.engine.engine_kind == "transformers":
        return prepare_transformers(settings, store, names, console)
    manifests = [stored_or_pulled(settings, store, name, console) for name in names]
    if any(m.weights.encrypted is not None for m in manifests):
        # Before the key is read: from now on no core file, and no process of this user
        # (a compromised tool, a debugger) can read the key from this one's memory.
        forbid_dumps()
    installed = ensure_engine(settings, console)
    hardware = probe(settings.dirs.data)
    engines = with_adapters(store, manifests)
    single = len(engines) == 1  # nothing competes for memory: load it now and keep it
    specs = [
        model_spec(
            settings,
            store,
            manifest,
            installed,
            hardware,
            console,
            pinned=single or manifest.name in settings.serving.pin,
            preload=manifest.name in settings.serving.preload,
            adapters=adapters,
        )
        for manifest, adapters in engines
    ]
    return pool_of(specs, settings, hardware, respec=respecifier(settings, hardware, console))


def pool_of(
    specs: list[ModelSpec],
    settings: Settings,
    hardware: Hardware,
    *,
    keep_alive: bool = True,
    respec: Callable[[ModelSpec], ModelSpec] | None = None,
) -> EnginePool:
    """The pool every engine kind serves from; ``keep_alive=False``: never unload idle."""
    idle_s = settings.serving.keep_alive_s
    return EnginePool(
        specs,
        budget_bytes=budget_bytes(settings, hardware),
        keep_alive_s=None if not keep_alive or idle_s < 0 else idle_s,
        load_wait_s=settings.serving.load_wait_s,
        drain_timeout_s=settings.gateway.drain_timeout_s,
        respec=respec,
    )


def prepare_vllm(
    settings: Settings, store: Store, names: list[str], console: Console
) -> EnginePool:
    """One checkpoint on vLLM; refused in one line, before anything is pulled, where vLLM
    cannot run (no NVIDIA GPU, no vLLM) or cannot serve what was asked."""
    hardware = probe(settings.dirs.data)
    program = require_vllm(settings.engine.vllm, len(hardware.gpus))
    manifests = [stored_or_pulled(settings, store, name, console) for name in names]
    check_vllm_models(manifests)
    spec = vllm_model_spec(settings, store, manifests[0], program, hardware, console)
    return pool_of([spec], settings, hardware, keep_alive=False)


def prepare_transformers(
    settings: Settings, store: Store, names: list[str], console: Console
) -> EnginePool:
    """Checkpoints on the transformers engine, each checked and planned before any starts."""
    hardware = probe(settings.dirs.data)
    machine = machine_for(hardware, gpu=None, gpus=None, ram=None)
    manifests = [stored_or_pulled(settings, store, name, console) for name in names]
    single = len(manifests) == 1
    specs = [
        transformers_model_spec(
            settings, store, m, machine, console, pinned=single or m.name in settings.serving.pin
        )
        for m in manifests
    ]
    return pool_of(specs, settings, hardware)


def run_event_loop(main: Coroutine[Any, Any, None]) -> None:
    """uvloop where it is installed (it comes with uvicorn[standard]), asyncio otherwise."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def exit_quietly(signum: int, frame: FrameType | None) -> None:
    """A stop signal means a clean, successful exit once everything is shut down.

    In effect while the engines load and after the gateway has stopped; while it serves,
    uvicorn's handler drains instead (``GatewayServer``), then raises the signal again for
    this one, which ends ``main`` through its ``finally`` (the engines stop)."""
    raise SystemExit(0)


def not_yet(signum: int, frame: FrameType | None) -> None:
    """SIGHUP before the models are served, or while stopping, reloads nothing (and must
    not kill the server, as it would by default)."""


def reporter(console: Console) -> Callable[[ReloadOutcome], None]:
    def report(outcome: ReloadOutcome) -> None:
        style = "bold red" if outcome.error else None
        console.print(outcome.summary(), style=style, highlight=False, markup=False)

    return report


def reload_on_hangup(pool: EnginePool, report: Callable[[ReloadOutcome], None]) -> None:
    """SIGHUP reloads every loaded model, as `dsdeploy reload` does; the outcomes go to
    the log."""
    loop = asyncio.get_running_loop()
    running: set[asyncio.Task[list[ReloadOutcome]]] = set()

    def hangup() -> None:
        task = loop.create_task(reload_models(pool, pool.loaded_names(), report))
        running.add(task)
        task.add_done_callback(running.discard)

    loop.add_signal_handler(signal.SIGHUP, hangup)


def open_auth(settings: Settings, console: Console, counts: Storage) -> AuthConfig:
    """The key store behind the gateway; refuses (``ConfigError``) to serve a non-loopback
    address while no key exists, unless told it may. Failed attempts are counted in
    ``counts``, the storage of the per-key limits."""
    security = settings.security
    try:
        store = KeyStore.open(security, settings.dirs.data)
    except SQLAlchemyError as exc:
        raise ConfigError(
            f"cannot open the key database ({type(exc).__name__}); check DSDEPLOY_DB_URL"
        ) from None
    notice = auth_notice(settings.gateway.host, store.has_active_keys(), security)
    console.print(notice, style="bold red" if notice.startswith("WARNING") else None)
    keys = KeyCache(store, security.key_cache_s, require=security.require_keys)
    throttle = FailedAuthThrottle.from_settings(counts, security)
    return AuthConfig(keys=keys, metrics_token=security.metrics_token, throttle=throttle)


def audit_writer(settings: Settings) -> AuditWriter | None:
    """The audit chain's writer, or None with ``--no-audit``; opened before anything
    starts, so a database that cannot be reached fails the start, not the first request."""
    security = settings.security
    if not security.audit:
        return None
    try:
        log = AuditLog.open(audit_url(security, settings.dirs.data))
    except SQLAlchemyError as exc:
        raise ConfigError(
            f"cannot open the audit database ({type(exc).__name__}); check DSDEPLOY_DB_URL, "
            "or serve with --no-audit"
        ) from None
    redact = default_redactor() if security.audit_content == "redacted" else None
    return AuditWriter(log, redact=redact)


def serve(
    settings: Settings, models: list[str], console: Console, hooks: Iterable[Hook] = ()
) -> None:
    """``hooks`` join every API request's pipeline (see ``gateway.hooks``), before the
    limits (which read the key that an earlier hook admitted)."""
    gateway, security = settings.gateway, settings.security
    check_port_free(gateway.host, gateway.port)
    bound = RssBound.parse(settings.serving.engine_rss_limit)
    if security.tls_cert is not None and security.tls_key is not None:
        check_tls_files(security.tls_cert, security.tls_key)
    limiter = Limiter.from_url(security.redis_url, lease_s=security.slot_lease_s)
    auth = open_auth(settings, console, limiter.storage)
    signal.signal(signal.SIGTERM, exit_quietly)
    signal.signal(signal.SIGINT, exit_quietly)
    signal.signal(signal.SIGHUP, not_yet)
    writer = audit_writer(settings)
    pool = prepare(settings, models, console)
    audit = RequestAudit(writer, security.audit_content) if writer else None
    limits = LimitsHook(security, limiter)
    adapters = AdapterSelection(
        adapter_selections({s.spec.name: s.spec.adapters for s in pool.states()})
    )
    app = create_app(pool, gateway, [*hooks, adapters, limits], auth, security, audit)
    pool.add_listener(app.state.metrics)
    server = GatewayServer(uvicorn_config(app, gateway, security), app.state.drain)
    scheme = "https" if security.tls_cert is not None else "http"

    report = reporter(console)
    control = ControlSocket(settings.dirs.data, control_app(pool, report))
    interval_s = settings.serving.engine_rss_check_s
    watchdog = RssWatchdog(pool, bound, interval_s=interval_s, report=report)

    async def main() -> None:
        try:
            await pool.start()
            await control.start()
            reload_on_hangup(pool, report)
            watchdog.start()
            console.print(
                f"OpenAI API at {scheme}://{gateway.host}:{gateway.port}/v1 "
                f"(models: {', '.join(pool.model_names())}); `dsdeploy reload` or SIGHUP "
                "reloads them"
            )
            await server.serve()
        finally:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            signal.signal(signal.SIGHUP, not_yet)  # nothing is reloaded while stopping
            await control.stop()
            await watchdog.stop()
            await pool.stop()
            await limits.aclose()

    if writer is not None:
        writer.start()
    try:
        run_event_loop(main())
    finally:
        if writer is not None:
            writer.close()  # every record of a request that was answered is written
            writer.audit.close()
