"""The connection to an engine: send a checked request, get its answer or its error.

The engine client is aiohttp: its C HTTP parser costs a fraction of the CPU per streamed
chunk that a pure-Python one does, and on a small machine every cycle the gateway spends
is a cycle the engine's decode threads lose.

Each request opens a fresh connection to the engine's socket: llama-server closes keep-alive
connections, and a reused one failed about one request in eight. A request that fails
before any byte came back is tried once more; after that the client gets a 503. Closing a
connection is also how a request is cancelled: llama-server stops generating for it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import aiohttp

from dsdeploy.gateway.errors import MAX_ECHO, ApiError, client_safe, clip
from dsdeploy.gateway.upstream import Upstream

log = logging.getLogger("dsdeploy.gateway")

ENGINE_URL = "http://engine"  # the host is unused: the connector dials the Unix socket
JSON_HEADERS = {"content-type": "application/json"}


def new_engine_client(socket_path: Path) -> aiohttp.ClientSession:
    """No total or read timeout (long generations wait in the engine's queue), no pooling."""
    return aiohttp.ClientSession(
        connector=aiohttp.UnixConnector(path=str(socket_path), force_close=True, limit=0),
        timeout=aiohttp.ClientTimeout(total=None, connect=5.0),
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),  # engine answers carry no cookies to keep
    )


def unavailable(upstream: Upstream) -> ApiError:
    return ApiError(503, client_safe(upstream.unavailable_reason()), code="engine_unavailable")


def error_type(payload: bytes) -> str:
    """The engine error's ``type``, for the log; never its message, which may quote the
    prompt (llama-server's parse and template errors do), and the log holds no prompt text."""
    try:
        error = json.loads(payload).get("error")
    except (ValueError, AttributeError):
        return f"{len(payload)} bytes, not JSON"
    kind = error.get("type") if isinstance(error, dict) else None
    return clip(kind, 64) if isinstance(kind, str) else "no error type"


def engine_error(upstream: Upstream, status: int, payload: bytes, prompt_param: str) -> ApiError:
    """The engine's adapter says what its error means; anything else is a generic 502.
    The engine's text may quote the request, so it is clipped like any echo."""
    failure = upstream.translate_error(status, payload)
    if failure is None:
        log.error("engine answered %d (%s)", status, error_type(payload))
        return ApiError(502, "the engine failed to answer this request", code="engine_error")
    param = prompt_param if failure.code == "context_length_exceeded" else None
    message = clip(failure.message, 2 * MAX_ECHO)
    return ApiError(failure.status, message, code=failure.code, param=param)


class EngineProxy:
    """One aiohttp session per engine socket, made on first use and kept while it exists."""

    def __init__(self) -> None:
        self.sessions: dict[Path, aiohttp.ClientSession] = {}

    async def __aenter__(self) -> EngineProxy:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for session in self.sessions.values():
            await session.close()
        self.sessions.clear()

    async def session_for(self, socket_path: Path) -> aiohttp.ClientSession:
        """The new session is stored before anything is awaited: requests arriving together
        for a freshly loaded engine share it (a second one would never be closed)."""
        session = self.sessions.get(socket_path)
        if session is None:
            session = self.sessions[socket_path] = new_engine_client(socket_path)
            gone = [self.sessions.pop(p) for p in list(self.sessions) if not p.exists()]
            for unloaded in gone:  # sessions of engines that were stopped
                await unloaded.close()
        return session

    async def open(
        self, upstream: Upstream, path: str, body: bytes, prompt_param: str
    ) -> aiohttp.ClientResponse:
        """The engine's 200 answer, its body still to read (the caller closes it); any
        other answer becomes the client's error."""
        response = await self._send(upstream, path, body)
        if response.status != 200:
            try:
                payload = await response.read()
            finally:
                response.close()
            raise engine_error(upstream, response.status, payload, prompt_param)
        return response

    async def fetch(self, upstream: Upstream, path: str, body: bytes, prompt_param: str) -> bytes:
        """A whole (not streamed) answer. Cancelling this closes the engine connection."""
        response = await self.open(upstream, path, body, prompt_param)
        try:
            return await response.read()
        except aiohttp.ClientError as exc:
            log.warning("engine answer broke: %r", exc)
            raise unavailable(upstream) from None
        finally:
            response.close()

    async def _send(self, upstream: Upstream, path: str, body: bytes) -> aiohttp.ClientResponse:
        for attempt in (1, 2):
            if not upstream.ready:
                break
            session = await self.session_for(upstream.socket_path)
            try:
                return await session.post(ENGINE_URL + path, data=body, headers=JSON_HEADERS)
            except aiohttp.ClientConnectionError as exc:  # nothing came back: safe to retry
                log.warning("engine connection failed (attempt %d): %r", attempt, exc)
        raise unavailable(upstream)
