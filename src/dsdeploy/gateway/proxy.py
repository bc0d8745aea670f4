"""Forward a checked request to the engine and relay its answer, streamed chunk by chunk.

Each request opens a fresh loopback connection: llama-server closes idle keep-alive
connections, and a reused one failed about one request in eight. A request that fails
before any byte came back is tried once more; after that the client gets a 503.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import httpx
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

from dsdeploy.gateway.errors import ApiError
from dsdeploy.gateway.upstream import Upstream

log = logging.getLogger("dsdeploy.gateway")

RETRYABLE = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
STREAM_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
MID_STREAM_ERROR = (
    b'data: {"error": {"message": "the engine stopped while answering; retry the request", '
    b'"type": "service_unavailable", "param": null, "code": "engine_unavailable"}}\n\n'
)


def new_engine_client() -> httpx.AsyncClient:
    """No read timeout (long generations wait in the engine's queue); no pooled connections."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(connect=5.0, read=None, write=60.0, pool=None),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
    )


def engine_error(status: int, payload: bytes, prompt_param: str) -> ApiError:
    """The engine's 4xx speak about the request and are passed on; its 5xx are not."""
    try:
        error = json.loads(payload)["error"]
        message, kind = str(error["message"]), str(error.get("type", ""))
    except (ValueError, KeyError, TypeError):
        error, message, kind = {}, "", ""
    if kind == "exceed_context_size_error":
        return ApiError(
            400,
            f"this model's context is {error.get('n_ctx')} tokens per request, but the "
            f"request has {error.get('n_prompt_tokens')} prompt tokens: shorten it, or serve "
            "with a larger --ctx-size",
            code="context_length_exceeded",
            param=prompt_param,
        )
    if 400 <= status < 500 and message:
        return ApiError(status, message[:1000])
    log.error("engine answered %d: %s", status, payload[:500])
    return ApiError(502, "the engine failed to answer this request", code="engine_error")


class EngineProxy:
    def __init__(self, upstream: Upstream, client: httpx.AsyncClient) -> None:
        self.upstream = upstream
        self.client = client

    async def forward(self, path: str, body: bytes, *, stream: bool, prompt_param: str) -> Response:
        response = await self._send(path, body)
        if response.status_code != 200:
            payload = await response.aread()
            await response.aclose()
            raise engine_error(response.status_code, payload, prompt_param)
        if stream:
            return StreamingResponse(
                self._relay(response),
                media_type="text/event-stream",
                headers=STREAM_HEADERS,
                background=BackgroundTask(response.aclose),
            )
        payload = await response.aread()
        await response.aclose()
        return Response(payload, media_type="application/json")

    async def _send(self, path: str, body: bytes) -> httpx.Response:
        for attempt in (1, 2):
            base_url = self.upstream.base_url
            if base_url is None:
                break
            request = self.client.build_request(
                "POST", base_url + path, content=body, headers={"content-type": "application/json"}
            )
            try:
                return await self.client.send(request, stream=True)
            except RETRYABLE as exc:
                log.warning("engine connection failed (attempt %d): %r", attempt, exc)
        raise ApiError(503, self.upstream.unavailable_reason(), code="engine_unavailable")

    @staticmethod
    async def _relay(response: httpx.Response) -> AsyncIterator[bytes]:
        try:
            async for chunk in response.aiter_raw():
                yield chunk
        except httpx.TransportError as exc:
            log.warning("engine stream broke: %r", exc)
            yield MID_STREAM_ERROR
        finally:
            await response.aclose()
