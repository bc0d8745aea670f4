"""What one access-log line costs the gateway, in CPU microseconds, as text and as JSON.

Times ``AccessLog.record`` (the line ``--access-log`` writes once a request's answer is
over) through serve's own logging configuration, handler writing to /dev/null, on the
event loop as the gateway runs it. Warm-up excluded; best and median of several rounds
(process CPU time, so other work on the machine does not count).

    python benchmarks/log_cost.py [--lines 5000] [--rounds 5] [--quick]

Prints a table and writes benchmarks/results/log_cost.json (log_cost.quick.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging.config
import os
import statistics
import time
from pathlib import Path

from dsdeploy.gateway.access_log import AccessLog
from dsdeploy.gateway.context import RequestContext, Usage
from dsdeploy.gateway.logs import logging_config
from dsdeploy.settings import GatewaySettings

RESULTS = Path(__file__).parent / "results"


def configure(log_format: str) -> None:
    config = logging_config(GatewaySettings(log_format=log_format))
    config["handlers"]["stderr"] = {
        "class": "logging.FileHandler",
        "filename": os.devnull,
        "formatter": "main",
        "filters": ["request"],
    }
    logging.config.dictConfig(config)


def rounds_us(lines: int, rounds: int) -> list[float]:
    access = AccessLog(lambda model: model or "none")
    ctx = RequestContext(route="chat.completions", model="smollm2", status=200, key_id="k1")
    ctx.timings.done = ctx.timings.received + 0.5
    ctx.usage = Usage(12, 64)
    scope = {"path": "/v1/chat/completions"}

    async def write(count: int) -> None:
        for _ in range(count):
            await access.record(ctx, scope)

    asyncio.run(write(lines // 10))  # warm-up
    samples = []
    for _ in range(rounds):
        started = time.process_time()
        asyncio.run(write(lines))
        samples.append((time.process_time() - started) / lines * 1e6)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="500 lines, 3 rounds")
    args = parser.parse_args()
    if args.quick:
        args.lines, args.rounds = 500, 3
    rows = []
    for log_format in ("text", "json"):
        configure(log_format)
        samples = rounds_us(args.lines, args.rounds)
        rows.append(
            {"format": log_format, "best_us": min(samples), "median_us": statistics.median(samples)}
        )
    print(f"{'format':<6} {'best µs':>8} {'median µs':>10}   (CPU per access line)")
    for row in rows:
        print(f"{row['format']:<6} {row['best_us']:>8.1f} {row['median_us']:>10.1f}")
    out = RESULTS / ("log_cost.quick.json" if args.quick else "log_cost.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"lines": args.lines, "rounds": args.rounds, "load_average": os.getloadavg()}
    out.write_text(json.dumps({**result, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
