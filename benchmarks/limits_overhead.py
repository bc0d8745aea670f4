"""Limits overhead: what the limits hook adds to one request, with no key (caps and the
queue bound only), and with a key that has requests per minute, tokens per minute and a
concurrency limit, counted in this process's memory or in a local Redis (one round trip
each for the request window, its stats, the token reservation, its settlement, the slot and
its release). Each case runs requests one at a time, then in bursts of 16 at once (what a
16-client load brings): the milliseconds until the whole burst is through. The memory case
runs twice: with dsdeploy's store (``security.memory_store``) and with the ``limits``
library's own ``async+memory://`` store, whose worker-thread pruning it replaces.

    python benchmarks/limits_overhead.py [--requests 2000] [--redis-url URL]

Without ``--redis-url`` a ``redis-server`` is started on a free port. Prints a table and
writes benchmarks/results/limits_overhead.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from limits.aio.storage import Storage
from limits.storage import storage_from_string
from starlette.datastructures import Headers

from dsdeploy.bench.launch import free_port
from dsdeploy.gateway.context import RequestContext, Usage
from dsdeploy.gateway.limits import LimitsHook
from dsdeploy.gateway.schemas import ChatCompletionRequest
from dsdeploy.security.keys import ApiKey
from dsdeploy.security.limits import Limiter
from dsdeploy.security.slots import MemorySlots
from dsdeploy.settings import SecuritySettings

RESULTS = Path(__file__).parent / "results"
BODY = ChatCompletionRequest.model_validate(
    {"model": "m", "messages": [{"role": "user", "content": "hello " * 200}], "max_tokens": 64}
)
HEADERS = Headers({})
BURST = 16


async def one_request(hook: LimitsHook, key: ApiKey | None) -> None:
    ctx = RequestContext(key=key, key_id=key.id if key else None)
    await hook.admit(ctx, HEADERS)
    await hook.before(ctx, BODY)
    ctx.timings.upstream_start = time.monotonic()
    ctx.usage = Usage(200, 64)
    await hook.after(ctx, ctx.usage)


def library_memory_limiter() -> Limiter:
    storage = storage_from_string("async+memory://")
    assert isinstance(storage, Storage)
    return Limiter(storage, MemorySlots())


async def measure(
    settings: SecuritySettings, key: ApiKey | None, requests: int, limiter: Limiter | None
) -> tuple[list[float], list[float]]:
    """Microseconds per request over ``requests`` sequential requests (after 50 warm-up),
    and milliseconds per burst of ``BURST`` at once over ``requests // BURST`` bursts."""
    hook = LimitsHook(settings, limiter)
    try:
        for _ in range(50):
            await one_request(hook, key)
        times = []
        for _ in range(requests):
            start = time.perf_counter()
            await one_request(hook, key)
            times.append((time.perf_counter() - start) * 1e6)
        bursts = []
        for _ in range(max(requests // BURST, 2)):
            start = time.perf_counter()
            await asyncio.gather(*(one_request(hook, key) for _ in range(BURST)))
            bursts.append((time.perf_counter() - start) * 1e3)
        return times, bursts
    finally:
        await hook.aclose()


def local_redis() -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed: apt-get install redis-server")
    port = free_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    ping = ["redis-cli", "-p", str(port), "ping"]
    deadline = time.monotonic() + 10
    while subprocess.run(ping, capture_output=True, check=False).returncode:
        if time.monotonic() > deadline:
            raise SystemExit("redis-server did not start")
        time.sleep(0.05)
    return server, f"redis://127.0.0.1:{port}/0"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--redis-url")
    parser.add_argument("--quick", action="store_true", help="200 requests")
    args = parser.parse_args()
    requests = 200 if args.quick else args.requests
    server, redis_url = (None, args.redis_url) if args.redis_url else local_redis()
    # Limits far above what the run uses: every request is admitted and fully counted.
    key = ApiKey("bench", "bench", rpm=10**7, tpm=10**9, max_concurrent=BURST)
    cases = {
        "no key (caps, queue bound)": (SecuritySettings(), None, False),
        "key, memory": (SecuritySettings(), key, False),
        "key, limits' own memory store": (SecuritySettings(), key, True),
        "key, Redis": (SecuritySettings(redis_url=redis_url), key, False),
    }
    rows = []
    try:
        for name, (settings, with_key, library_store) in cases.items():
            limiter = library_memory_limiter() if library_store else None
            times, bursts = asyncio.run(measure(settings, with_key, requests, limiter))
            quantiles = statistics.quantiles(times, n=100)
            rows.append(
                {
                    "case": name,
                    "requests": requests,
                    "median_us": round(statistics.median(times), 1),
                    "p99_us": round(quantiles[98], 1),
                    "burst_of_16_median_ms": round(statistics.median(bursts), 2),
                }
            )
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
    print(f"{'case':32} {'median µs':>10} {'p99 µs':>10} {'16 at once ms':>14}")
    for row in rows:
        print(
            f"{row['case']:32} {row['median_us']:>10} {row['p99_us']:>10} "
            f"{row['burst_of_16_median_ms']:>14}"
        )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / ("limits_overhead.quick.json" if args.quick else "limits_overhead.json")
    out.write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
