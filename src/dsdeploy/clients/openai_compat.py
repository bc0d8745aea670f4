"""One streamed chat request against an OpenAI-compatible server, timed token by token.

Every request opens a fresh connection: llama-server drops idle keep-alive connections
(about 1 request in 8 failed on a reused one), and a fresh connection per request treats
every target the same way.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from itertools import pairwise

import httpx

from dsdeploy.errors import BenchError


@dataclass(frozen=True)
class Target:
    """A server to measure: a name for the report and the base URL of its API (``.../v1``)."""

    name: str
    api: str
    uds: str | None = None
    """A Unix socket to reach the server through (llama-server as dsdeploy runs it)."""
    api_key: str | None = field(default=None, repr=False)
    """Sent as a bearer token with every request, for a server that requires keys."""

    def client(self, concurrency: int) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)
        transport = httpx.AsyncHTTPTransport(uds=self.uds, limits=limits) if self.uds else None
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else None
        return httpx.AsyncClient(timeout=600, limits=limits, transport=transport, headers=headers)


@dataclass
class RequestResult:
    """Times are seconds from sending the request."""

    prompt_tokens: int
    completion_tokens: int
    token_times: list[float] = field(default_factory=list)
    """Arrival of each streamed chunk that carried generated text."""
    total_s: float = 0.0

    @property
    def ttft_s(self) -> float:
        return self.token_times[0]

    @property
    def tpot_s(self) -> float:
        """Time per output token after the first: the decode step as one stream sees it."""
        return (self.token_times[-1] - self.token_times[0]) / max(self.completion_tokens - 1, 1)

    @property
    def inter_token_s(self) -> list[float]:
        return [later - earlier for earlier, later in pairwise(self.token_times)]


def parse_target(spec: str) -> Target:
    """``NAME=URL``, where URL is a server root or its ``/v1`` API base."""
    name, sep, url = spec.partition("=")
    if not sep or not name or not url.startswith(("http://", "https://")):
        raise BenchError(f"bad --target {spec!r}: write NAME=URL, e.g. vllm=http://127.0.0.1:8001")
    url = url.rstrip("/")
    return Target(name=name, api=url if url.endswith("/v1") else f"{url}/v1")


async def served_model(target: Target) -> str:
    """The model id the target serves (asked once, sent with every request); fails with one
    line when the target cannot be reached, before any load is sent."""
    try:
        async with target.client(1) as client:
            response = await client.get(f"{target.api}/models", timeout=10)
            response.raise_for_status()
            models = response.json()["data"]
    except httpx.HTTPStatusError as exc:
        raise BenchError(
            f"target {target.name!r} at {target.api} answered {exc.response.status_code} "
            "to GET /models: is it an OpenAI-compatible API?"
        ) from None
    except httpx.HTTPError as exc:
        raise BenchError(
            f"target {target.name!r} at {target.api} is unreachable ({type(exc).__name__}): "
            "start the server or fix the URL"
        ) from None
    except (ValueError, KeyError, TypeError):
        raise BenchError(
            f"target {target.name!r} at {target.api}/models is not a model list"
        ) from None
    if not models:
        raise BenchError(f"target {target.name!r} serves no model")
    return str(models[0]["id"])


async def stream_chat(
    client: httpx.AsyncClient, target: Target, body: dict[str, object]
) -> RequestResult:
    """Send one streamed chat completion; raises BenchError on an HTTP or stream error."""
    start = time.perf_counter()
    result = RequestResult(prompt_tokens=0, completion_tokens=0)
    async with client.stream("POST", f"{target.api}/chat/completions", json=body) as response:
        if response.status_code != 200:
            await response.aread()
            raise BenchError(f"HTTP {response.status_code}: {response.text[:200]}")
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            now = time.perf_counter() - start
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise BenchError(f"stream error: {chunk['error']}")
            if chunk.get("usage"):
                result.prompt_tokens = chunk["usage"]["prompt_tokens"]
                result.completion_tokens = chunk["usage"]["completion_tokens"]
            choices = chunk.get("choices") or [{}]
            delta = choices[0].get("delta") or {}
            if delta.get("content") or delta.get("reasoning_content"):
                result.token_times.append(now)
    result.total_s = time.perf_counter() - start
    if not result.token_times:
        raise BenchError("the stream carried no generated text")
    if result.completion_tokens == 0:  # a server that does not report usage
        result.completion_tokens = len(result.token_times)
    return result
