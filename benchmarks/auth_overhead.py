"""API-key authentication's cost per request, in microseconds of gateway CPU.

Measures, on a real key store (SQLite in a scratch folder, or ``--db-url`` such as a
PostgreSQL a replica would share):

- ``cache hit``: ``KeyCache.cached`` — what a request costs while its key is remembered;
- ``store verify``: ``KeyStore.verify`` — one lookup by id and a digest compare;
- ``middleware cached`` / ``middleware uncached``: a request through ``AuthMiddleware``
  (header read, key check, context noted) in front of an app that answers at once, less
  the same request to that app alone; uncached runs with a TTL of 0, so every request
  queries the store in a worker thread, as after each TTL on a busy replica;
- ``middleware throttled``: ``middleware cached`` with the failed-attempt throttle asking
  the limits' storage whether the address is blocked (memory, or ``--redis-url``), as
  ``dsdeploy serve`` runs it.

Warm-up rounds are excluded; each figure is the fastest of several rounds, the one least
disturbed by other work on the machine (the cost is CPU time, not a latency to spread).

    python benchmarks/auth_overhead.py [--rounds 7] [--requests 2000] [--db-url URL]
        [--redis-url URL]

Prints a table and writes benchmarks/results/auth_overhead.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table
from starlette.types import Receive, Scope, Send

from dsdeploy.gateway.auth import AuthConfig, AuthMiddleware
from dsdeploy.gateway.context import RequestContext
from dsdeploy.gateway.errors import OPENAI
from dsdeploy.security.auth_throttle import FailedAuthThrottle
from dsdeploy.security.db import open_database, sqlite_url
from dsdeploy.security.key_cache import KeyCache
from dsdeploy.security.keys import KeyStore
from dsdeploy.security.limits import Limiter

RESULTS = Path(__file__).parent / "results" / "auth_overhead.json"


def per_call_us(call: Callable[[], object], calls: int, rounds: int) -> float:
    call()  # warm-up
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        samples.append((time.perf_counter() - start) / calls * 1e6)
    return min(samples)


async def answer(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def receive() -> dict[str, object]:
    return {"type": "http.request", "body": b""}


async def sink(message: object) -> None:
    return None


def scope_with(presented: str) -> Scope:
    headers = [(b"authorization", f"Bearer {presented}".encode()), (b"host", b"x")]
    return {"type": "http", "path": "/v1/models", "headers": headers, "state": {}}


async def requests_us(app: object, presented: str, calls: int, rounds: int) -> float:
    samples = []
    for round_ in range(rounds + 1):
        start = time.perf_counter()
        for _ in range(calls):
            scope = scope_with(presented)
            scope["state"]["ctx"] = RequestContext()
            await app(scope, receive, sink)  # type: ignore[operator]
            assert scope["state"]["ctx"].decision == "allowed"
        if round_:  # the first round warms up
            samples.append((time.perf_counter() - start) / calls * 1e6)
    return min(samples)


def measure(store: KeyStore, requests: int, rounds: int, redis_url: str | None) -> dict[str, float]:
    _, presented = store.create("bench")
    cache = KeyCache(store, ttl_s=60.0)
    cache.verify(presented)
    uncached = KeyCache(store, ttl_s=0.0)
    shapes = [("/v1/messages", OPENAI)]
    cached_app = AuthMiddleware(answer, AuthConfig(keys=cache), shapes)
    uncached_app = AuthMiddleware(answer, AuthConfig(keys=uncached), shapes)
    counts = Limiter.from_url(redis_url, lease_s=60)
    throttle = FailedAuthThrottle(counts.storage, failures=20, window_s=60)
    throttled_app = AuthMiddleware(answer, AuthConfig(keys=cache, throttle=throttle), shapes)

    async def middleware() -> dict[str, float]:
        bare = await requests_us(answer, presented, requests, rounds)
        hit = await requests_us(cached_app, presented, requests, rounds)
        miss = await requests_us(uncached_app, presented, max(requests // 10, 20), rounds)
        throttled = await requests_us(throttled_app, presented, requests, rounds)
        await counts.aclose()
        return {
            "middleware_cached_us": hit - bare,
            "middleware_uncached_us": miss - bare,
            "middleware_throttled_us": throttled - bare,
        }

    return {
        "cache_hit_us": per_call_us(lambda: cache.cached(presented), requests * 10, rounds),
        "store_verify_us": per_call_us(
            lambda: store.verify(presented), max(requests // 10, 20), rounds
        ),
        **asyncio.run(middleware()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--db-url", help="key database (default: SQLite in a scratch folder)")
    parser.add_argument(
        "--redis-url", help="the throttle's failure counts (default: this process's memory)"
    )
    parser.add_argument("--quick", action="store_true", help="few requests: a check it runs")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.requests = 2, 200
    with tempfile.TemporaryDirectory() as scratch:
        url = args.db_url or sqlite_url(Path(scratch) / "security.db")
        store = KeyStore(open_database(url))
        try:
            result = measure(store, args.requests, args.rounds, args.redis_url)
        finally:
            store.close()
    backend = url.split(":", 1)[0] + (" + redis" if args.redis_url else "")
    table = Table("measure", "µs per request", title=f"API-key auth cost ({backend})")
    for name, value in result.items():
        table.add_row(name.removesuffix("_us").replace("_", " "), f"{value:.1f}")
    Console().print(table)
    out = RESULTS.with_suffix(".quick.json") if args.quick else RESULTS
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"backend": backend, **result}, indent=2))


if __name__ == "__main__":
    main()
