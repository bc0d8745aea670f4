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
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

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


async def release(response: aiohttp.ClientResponse) -> None:
    """Async so that Starlette runs it in the loop, not in a worker thread."""
    response.release()


class EngineProxy:
    def __init__(self, upstream: Upstream, client: aiohttp.ClientSession) -> None:
        self.upstream = upstream
        self.client = client

    async def forward(self, path: str, body: bytes, *, stream: bool, prompt_param: str) -> Response:
        response = await self._send(path, body)
        if response.status != 200:
            payload = await response.read()
            response.release()
            raise engine_error(self.upstream, response.status, payload, prompt_param)
        if stream:
            return StreamingResponse(
                self._relay(response),
                media_type="text/event-stream",
                headers=STREAM_HEADERS,
                background=BackgroundTask(release, response),
            )
        try:
            payload = await response.read()
        except aiohttp.ClientError as exc:
            log.warning("engine answer broke: %r", exc)
            raise ApiError(
                503, self.upstream.unavailable_reason(), code="engine_unavailable"
            ) from None
        finally:
            response.release()
        return Response(payload, media_type="application/json")

    async def _send(self, path: str, body: bytes) -> aiohttp.ClientResponse:
        for attempt in (1, 2):
            if not self.upstream.ready:
                break
            try:
                return await self.client.post(ENGINE_URL + path, data=body, headers=JSON_HEADERS)
            except aiohttp.ClientConnectionError as exc:  # nothing came back: safe to retry
                log.warning("engine connection failed (attempt %d): %r", attempt, exc)
        raise ApiError(503, self.upstream.unavailable_reason(), code="engine_unavailable")

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
