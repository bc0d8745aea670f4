"""Forward a checked request to the engine and relay its answer, streamed chunk by chunk.

The engine client is aiohttp: its C HTTP parser costs a fraction of the CPU per streamed
chunk that a pure-Python one does, and on a small machine every cycle the gateway spends
is a cycle the engine's decode threads lose.

Each request opens a fresh connection to the engine's socket: llama-server closes keep-alive
connections, and a reused one failed about one request in eight. A request that fails
before any byte came back is tried once more; after that the client gets a 503.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from dsdeploy.gateway.errors import ApiError
from dsdeploy.gateway.upstream import Upstream

log = logging.getLogger("dsdeploy.gateway")

ENGINE_URL = "http://engine"  # the host is unused: the connector dials the Unix socket
STREAM_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
JSON_HEADERS = {"content-type": "application/json"}
MID_STREAM_ERROR = (
    b'data: {"error": {"message": "the engine stopped while answering; retry the request", '
    b'"type": "service_unavailable", "param": null, "code": "engine_unavailable"}}\n\n'
)


def new_engine_client(socket_path: Path) -> aiohttp.ClientSession:
    """No total or read timeout (long generations wait in the engine's queue), no pooling."""
    return aiohttp.ClientSession(
        connector=aiohttp.UnixConnector(path=str(socket_path), force_close=True, limit=0),
        timeout=aiohttp.ClientTimeout(total=None, connect=5.0),
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),  # engine answers carry no cookies to keep
    )


def engine_error(upstream: Upstream, status: int, payload: bytes, prompt_param: str) -> ApiError:
    """The engine's adapter says what its error means; anything else is a generic 502."""
    failure = upstream.translate_error(status, payload)
    if failure is None:
        log.error("engine answered %d: %s", status, payload[:500])
        return ApiError(502, "the engine failed to answer this request", code="engine_error")
    param = prompt_param if failure.code == "context_length_exceeded" else None
    return ApiError(failure.status, failure.message, code=failure.code, param=param)


Done = Callable[[], Awaitable[None]]
"""Called once the answer is over (its last byte sent, or it failed): ends the lease."""


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
        session = self.sessions.get(socket_path)
        if session is None:
            for gone in [p for p in self.sessions if not p.exists()]:  # unloaded engines
                await self.sessions.pop(gone).close()
            session = self.sessions[socket_path] = new_engine_client(socket_path)
        return session

    async def forward(
        self,
        upstream: Upstream,
        path: str,
        body: bytes,
        *,
        stream: bool,
        prompt_param: str,
        done: Done,
    ) -> Response:
        response = await self._send(upstream, path, body)
        if response.status != 200:
            payload = await response.read()
            response.release()
            raise engine_error(upstream, response.status, payload, prompt_param)
        if stream:
            return LeasedStream(self._relay(response), done)
        try:
            payload = await response.read()
        except aiohttp.ClientError as exc:
            log.warning("engine answer broke: %r", exc)
            raise ApiError(503, upstream.unavailable_reason(), code="engine_unavailable") from None
        finally:
            response.release()
        await done()
        return Response(payload, media_type="application/json")

    async def _send(self, upstream: Upstream, path: str, body: bytes) -> aiohttp.ClientResponse:
        for attempt in (1, 2):
            if not upstream.ready:
                break
            session = await self.session_for(upstream.socket_path)
            try:
                return await session.post(ENGINE_URL + path, data=body, headers=JSON_HEADERS)
            except aiohttp.ClientConnectionError as exc:  # nothing came back: safe to retry
                log.warning("engine connection failed (attempt %d): %r", attempt, exc)
        raise ApiError(503, upstream.unavailable_reason(), code="engine_unavailable")

    @staticmethod
    async def _relay(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        try:
            async for chunk in response.content.iter_any():
                yield chunk
        except aiohttp.ClientError as exc:
            log.warning("engine stream broke: %r", exc)
            yield MID_STREAM_ERROR
        finally:
            response.release()


class LeasedStream(StreamingResponse):
    """A relayed event stream that ends its lease however it ends: finished, broken, or
    abandoned by the client (Starlette then skips background tasks)."""

    def __init__(self, events: AsyncIterator[bytes], done: Done) -> None:
        super().__init__(events, media_type="text/event-stream", headers=STREAM_HEADERS)
        self.done = done

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.done()
