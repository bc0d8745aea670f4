"""The stub's web app: llama-server's health and loading answers, plus what every request
goes through — the record of it, the failure the command line asked for, and noticing a
client that went away mid-answer."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from tests.stub_server import routes_anthropic, routes_openai, routes_responses
from tests.stub_server.generation import SENT, json_error
from tests.stub_server.state import STUB, Stub

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
HEALTH_PATH = "/health"
METRICS_PATH = "/metrics"
routes = web.RouteTableDef()


def loading_error() -> web.HTTPException:
    return json_error(503, "Loading model", "unavailable_error")


@routes.get(HEALTH_PATH)
async def health(request: web.Request) -> web.Response:
    if not request.app[STUB].ready:
        raise loading_error()
    return web.json_response({"status": "ok"})


@routes.get(METRICS_PATH)
async def metrics(request: web.Request) -> web.Response:
    """llama-server's ``--metrics`` text: its names, types and help lines (a subset)."""
    stub = request.app[STUB]
    lines = []
    for name, kind, value in (
        ("tokens_predicted_total", "counter", stub.requests),
        ("requests_processing", "gauge", stub.processing),
        ("requests_deferred", "gauge", 0),
        ("n_tokens_max", "counter", 0),
    ):
        lines += [
            f"# HELP llamacpp:{name} {name}",
            f"# TYPE llamacpp:{name} {kind}",
            f"llamacpp:{name} {value}",
        ]
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")


def fail(how: str) -> None:
    """Die or hang as asked. A hang blocks the event loop, as a deadlocked engine would:
    connections are still accepted by the kernel, and nothing answers."""
    print(f"stub: failing with {how}", file=sys.stderr, flush=True)
    if how == "hang":
        while True:
            time.sleep(3600)
    if how.isdigit():
        os._exit(int(how))  # at once, as a crash: no cleanup, no answer
    chosen = signal.Signals[how]
    signal.signal(chosen, signal.SIG_DFL)
    signal.raise_signal(chosen)


def parsed(body: bytes) -> object:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


@web.middleware
async def engine_behaviour(request: web.Request, handler: Handler) -> web.StreamResponse:
    stub = request.app[STUB]
    if request.path in (HEALTH_PATH, METRICS_PATH):
        return await handler(request)  # probes are not requests: not recorded nor counted
    body = parsed(await request.read())
    stub.record("request", method=request.method, path=request.path, body=body)
    stub.requests += 1
    if stub.behaviour.fail_after is not None and stub.requests > stub.behaviour.fail_after:
        fail(stub.behaviour.fail_with)
    if not stub.ready:
        raise loading_error()
    if request.method == "POST" and body is None:
        raise json_error(500, "[json.exception.parse_error.101] parse error", "server_error")
    stub.processing += 1
    if stub.behaviour.grow_mib:
        stub.grown.append(b"\x01" * (stub.behaviour.grow_mib * 2**20))
    try:
        return await handler(request)
    except (asyncio.CancelledError, ConnectionResetError):
        stub.record("cancelled", path=request.path, tokens=request.get(SENT, 0))
        raise
    finally:
        stub.processing -= 1


def create_app(stub: Stub) -> web.Application:
    app = web.Application(middlewares=[engine_behaviour])
    app[STUB] = stub
    for table in (routes, routes_openai.routes, routes_responses.routes, routes_anthropic.routes):
        app.add_routes(table)
    return app
