"""Limits overhead: what the limits hook adds to one request, with no key (caps and the
queue bound only), and with a key that has requests per minute, tokens per minute and a
concurrency limit, counted in this process's memory or in a local Redis (one round trip
each for the request window, its stats, the token reservation, its settlement, the slot and
its release).

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

from starlette.datastructures import Headers

from dsdeploy.bench.launch import free_port
from dsdeploy.gateway.context import RequestContext, Usage
from dsdeploy.gateway.limits import LimitsHook
from dsdeploy.gateway.schemas import ChatCompletionRequest
from dsdeploy.security.keys import ApiKey
from dsdeploy.settings import SecuritySettings

RESULTS = Path(__file__).parent / "results"
BODY = ChatCompletionRequest.model_validate(
    {"model": "m", "messages": [{"role": "user", "content": "hello " * 200}], "max_tokens": 64}
)
HEADERS = Headers({})


async def one_request(hook: LimitsHook, key: ApiKey | None) -> None:
    ctx = RequestContext(key=key, key_id=key.id if key else None)
    await hook.admit(ctx, HEADERS)
    await hook.before(ctx, BODY)
    ctx.timings.upstream_start = time.monotonic()
    ctx.usage = Usage(200, 64)
    await hook.after(ctx, ctx.usage)


async def measure(settings: SecuritySettings, key: ApiKey | None, requests: int) -> list[float]:
    """Microseconds per request, over ``requests`` sequential requests (after 50 warm-up)."""
    hook = LimitsHook(settings)
    try:
        for _ in range(50):
            await one_request(hook, key)
        times = []
        for _ in range(requests):
            start = time.perf_counter()
            await one_request(hook, key)
            times.append((time.perf_counter() - start) * 1e6)
        return times
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
    key = ApiKey("bench", "bench", rpm=10**7, tpm=10**9, max_concurrent=10)
    cases = {
        "no key (caps, queue bound)": (SecuritySettings(), None),
        "key, memory": (SecuritySettings(), key),
        "key, Redis": (SecuritySettings(redis_url=redis_url), key),
    }
    rows = []
    try:
        for name, (settings, with_key) in cases.items():
            times = asyncio.run(measure(settings, with_key, requests))
            quantiles = statistics.quantiles(times, n=100)
            rows.append(
                {
                    "case": name,
                    "requests": requests,
                    "median_us": round(statistics.median(times), 1),
                    "p99_us": round(quantiles[98], 1),
                }
            )
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
    print(f"{'case':30} {'median µs':>10} {'p99 µs':>10}")
    for row in rows:
        print(f"{row['case']:30} {row['median_us']:>10} {row['p99_us']:>10}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / ("limits_overhead.quick.json" if args.quick else "limits_overhead.json")
    out.write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
