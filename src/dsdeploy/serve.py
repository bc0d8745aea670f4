"""``dsdeploy serve``: resolve the models, find or build the engine, plan each model, and put
the gateway in front of the pool that starts their engines."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Coroutine, Iterable
from types import FrameType
from typing import Any

from rich.console import Console
from sqlalchemy.exc import SQLAlchemyError

from dsdeploy.engine_setup import ensure_engine
from dsdeploy.errors import ConfigError
from dsdeploy.gateway.app import create_app
from dsdeploy.gateway.audit import RequestAudit
from dsdeploy.gateway.auth import AuthConfig
from dsdeploy.gateway.hooks import Hook
from dsdeploy.gateway.limits import LimitsHook
from dsdeploy.gateway.server import GatewayServer, uvicorn_config
from dsdeploy.gateway.tls import check_tls_files
from dsdeploy.hardware import Hardware, probe
from dsdeploy.planner.machine import parse_size
from dsdeploy.planner.placement import RAM_RESERVE
from dsdeploy.runtime.pool import EnginePool
from dsdeploy.security.audit import AuditLog, audit_url
from dsdeploy.security.audit_writer import AuditWriter
from dsdeploy.security.exposure import auth_notice
from dsdeploy.security.key_cache import KeyCache
from dsdeploy.security.keys import KeyStore
from dsdeploy.security.redact import default_redactor
from dsdeploy.security.weights_memory import forbid_dumps
from dsdeploy.served_models import model_spec, served_names, stored_or_pulled
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
    manifests = [stored_or_pulled(settings, store, name, console) for name in names]
    if any(m.weights.encrypted is not None for m in manifests):
        # Before the key is read: from now on no core file, and no process of this user
        # (a compromised tool, a debugger) can read the key from this one's memory.
        forbid_dumps()
    installed = ensure_engine(settings, console)
    hardware = probe(settings.dirs.data)
    single = len(manifests) == 1  # nothing competes for memory: load it now and keep it
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
        )
        for manifest in manifests
    ]
    keep_alive = None if settings.serving.keep_alive_s < 0 else settings.serving.keep_alive_s
    return EnginePool(
        specs,
        budget_bytes=budget_bytes(settings, hardware),
        keep_alive_s=keep_alive,
        load_wait_s=settings.serving.load_wait_s,
    )


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


def open_auth(settings: Settings, console: Console) -> AuthConfig:
    """The key store behind the gateway; refuses (``ConfigError``) to serve a non-loopback
    address while no key exists, unless told it may."""
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
    return AuthConfig(keys=keys, metrics_token=security.metrics_token)


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
    if security.tls_cert is not None and security.tls_key is not None:
        check_tls_files(security.tls_cert, security.tls_key)
    auth = open_auth(settings, console)
    signal.signal(signal.SIGTERM, exit_quietly)
    signal.signal(signal.SIGINT, exit_quietly)
    writer = audit_writer(settings)
    pool = prepare(settings, models, console)
    audit = RequestAudit(writer, security.audit_content) if writer else None
    limits = LimitsHook(security)
    app = create_app(pool, gateway, [*hooks, limits], auth, security, audit)
    pool.add_listener(app.state.metrics)
    server = GatewayServer(uvicorn_config(app, gateway, security), app.state.drain)
    scheme = "https" if security.tls_cert is not None else "http"

    async def main() -> None:
        try:
            await pool.start()
            console.print(
                f"OpenAI API at {scheme}://{gateway.host}:{gateway.port}/v1 "
                f"(models: {', '.join(pool.model_names())})"
            )
            await server.serve()
        finally:
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
