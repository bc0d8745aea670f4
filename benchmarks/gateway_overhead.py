"""Gateway overhead: the engine dsdeploy starts, hit directly vs through the dsdeploy gateway.

Both targets are the *same* llama-server process (same model, same flags): ``dsdeploy
bench``'s launcher starts ``dsdeploy serve`` and finds the engine's private Unix socket,
and its sweep sends identical streamed load to both, alternating which goes first, several
times (closed-loop clients, ``ignore_eos``). This script adds what ``dsdeploy bench`` does
not: the per-repetition ratio gateway ÷ raw, and a sweep over engine thread counts (cores
and cores - 1 by default: the gateway needs CPU too), and the gateway's CPU time per
streamed token: the gateway process's user + system CPU (psutil) over trials that load only
the gateway, divided by the tokens they streamed; and, over the same trials, the gateway's
own share of TTFT: the mean and median of its ``dsdeploy_gateway_before_engine_seconds``
histogram (arrival to the engine being asked), read from its ``/metrics``. End-to-end TTFT added is
reported too, but at c > 1 it mostly measures which engine step a request joins: a request
that reaches the engine a moment after its neighbours waits for their prompt batch to
finish. ``--event-hook`` serves with one no-op
``on_event`` hook, so every stream is cut into events and re-encoded: the event relay's cost.
The gateway always runs as ``serve`` does by default: audit on, caps and the queue bound;
``--keys`` also requires an API key (kept in a scratch database, with requests/min,
tokens/min and concurrency limits far above the load), so authentication and every
per-key limit are on the request path.

    python benchmarks/gateway_overhead.py [--reps 5] [--concurrency 1,4,16] [--threads 2,1]
        [--event-hook] [--keys]

Prints a table and writes benchmarks/results/gateway_overhead.json (with --event-hook,
gateway_overhead_event_hook.json).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import statistics
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import psutil
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from dsdeploy.bench.launch import DSDEPLOY, LocalServer, start_local_server
from dsdeploy.bench.loadgen import Trial, run_trial
from dsdeploy.bench.run import SweepOptions, parse_concurrency, served_models, sweep
from dsdeploy.bench.workload import Workload
from dsdeploy.clients.openai_compat import Target
from dsdeploy.gateway.context import RequestContext
from dsdeploy.gateway.hooks import Hook
from dsdeploy.gateway.sse import SseEvent
from dsdeploy.hardware import probe
from dsdeploy.security.keys import KeyStore
from dsdeploy.serve import serve
from dsdeploy.settings import SecuritySettings, settings_from

RESULTS = Path(__file__).parent / "results"
SERVE_WITH_EVENT_HOOK = "--serve-with-event-hook"
CPU_REQUESTS = 8
"""Requests per CPU trial (at least 1,000 tokens at 128 each: psutil counts 10 ms ticks)."""
BEFORE_ENGINE = "dsdeploy_gateway_before_engine_seconds"
CPU_PROMPTS_FROM = 1_000_000
"""Prompt numbers of the CPU trials, apart from the sweep's so none repeats."""


class PassThrough(Hook):
    """Reads every event and changes nothing."""

    async def on_event(self, ctx: RequestContext, event: SseEvent) -> SseEvent | None:
        return event


def serve_with_event_hook(argv: list[str]) -> None:
    """``serve MODEL --port P`` and the engine flags this script passes, with the hook."""
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("model")
    for flag in ("--port", "--threads", "--parallel", "--ctx-size"):
        parser.add_argument(flag, type=int)
    flags = parser.parse_args(argv)
    settings = settings_from(
        {
            "port": flags.port,
            "threads": flags.threads,
            "parallel": flags.parallel,
            "ctx_size": flags.ctx_size,
        }
    )
    serve(settings, [flags.model], Console(stderr=True), hooks=[PassThrough()])


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


@dataclass(frozen=True)
class HistogramReading:
    """The gateway's arrival → engine-asked histogram at one moment (cumulative)."""

    sum_s: float
    count: float
    buckets: dict[float, float]
    """Upper bound (seconds) → observations at or below it."""

    def since(self, earlier: HistogramReading) -> HistogramReading:
        return HistogramReading(
            self.sum_s - earlier.sum_s,
            self.count - earlier.count,
            {le: n - earlier.buckets.get(le, 0.0) for le, n in self.buckets.items()},
        )

    def mean_ms(self) -> float:
        return self.sum_s / max(self.count, 1) * 1000

    def quantile_ms(self, q: float) -> float:
        """As Prometheus's ``histogram_quantile``: linear within the bucket it falls in."""
        rank, lower, below = q * self.count, 0.0, 0.0
        for le, cumulative in sorted(self.buckets.items()):
            if cumulative >= rank and le != math.inf:
                share = (rank - below) / max(cumulative - below, 1e-12)
                return (lower + (le - lower) * share) * 1000
            lower, below = le, cumulative
        return lower * 1000


async def before_engine_reading(gateway: Target) -> HistogramReading:
    """The gateway's own histogram of arrival → engine asked, from its ``/metrics``."""
    base = gateway.api.removesuffix("/v1")
    async with gateway.client(concurrency=1) as client:  # with its key: /metrics is admin
        response = await client.get(base + "/metrics")
        response.raise_for_status()
        text = response.text
    totals = {"sum": 0.0, "count": 0.0}
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != BEFORE_ENGINE:
            continue
        for sample in family.samples:
            kind = sample.name.removeprefix(BEFORE_ENGINE + "_")
            if kind == "bucket":
                le = float(sample.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + sample.value
            elif kind in totals:
                totals[kind] += sample.value
    return HistogramReading(totals["sum"], totals["count"], buckets)


@dataclass(frozen=True)
class GatewayCost:
    cpu_us_per_token: float
    before_engine_ms: float
    """Mean time from a request's arrival to the engine being asked, the gateway's own
    share of TTFT, read from its ``/metrics``."""
    before_engine_p50_ms: float
    """Its median, interpolated within the histogram's buckets (0.5, 1, 2, 3, 5, 10 ms…)."""


async def gateway_costs(
    server: LocalServer, gateway: Target, model: str, workload: Workload, options: SweepOptions
) -> dict[int, GatewayCost]:
    """Medians over repetitions, by concurrency, of the gateway's CPU µs per streamed token
    and of its time before the engine."""
    process = psutil.Process(server.process.pid)
    indices = itertools.count(CPU_PROMPTS_FROM)
    costs = {}
    for concurrency in options.concurrency:
        cpu, before, before_p50 = [], [], []
        for rep in range(options.repetitions):
            trial = Trial(gateway.name, concurrency, rep)
            cpu_before, reading_before = (
                cpu_seconds(process),
                await before_engine_reading(gateway),
            )
            await run_trial(
                gateway, model, workload, trial, max(CPU_REQUESTS, concurrency), indices
            )
            cpu_after = cpu_seconds(process)
            reading = (await before_engine_reading(gateway)).since(reading_before)
            tokens = sum(result.completion_tokens for result in trial.results)
            cpu.append((cpu_after - cpu_before) / tokens * 1e6)
            before.append(reading.mean_ms())
            before_p50.append(reading.quantile_ms(0.5))
        costs[concurrency] = GatewayCost(
            statistics.median(cpu), statistics.median(before), statistics.median(before_p50)
        )
    return costs


def ttft_p50_ms(trial: Trial) -> float:
    return statistics.median(r.ttft_s for r in trial.results) * 1000


def tpot_p50_ms(trial: Trial) -> float:
    return statistics.median(r.tpot_s for r in trial.results) * 1000


def compare(
    trials: list[Trial], threads: int, costs: dict[int, GatewayCost]
) -> list[dict[str, float | int]]:
    """Pair the raw and gateway trials of each repetition; ratios and differences per pair."""
    rows = []
    for concurrency in sorted({t.concurrency for t in trials}):
        raw = [t for t in trials if (t.target, t.concurrency) == ("llama-server", concurrency)]
        gateway = [t for t in trials if (t.target, t.concurrency) == ("dsdeploy", concurrency)]
        pairs = list(zip(raw, gateway, strict=True))
        ratios = [g.tokens_per_s / r.tokens_per_s for r, g in pairs]
        rows.append(
            {
                "threads": threads,
                "concurrency": concurrency,
                "raw_tokens_per_s": statistics.median(t.tokens_per_s for t in raw),
                "gateway_tokens_per_s": statistics.median(t.tokens_per_s for t in gateway),
                "tokens_per_s_ratio": statistics.median(ratios),
                "tokens_per_s_ratio_min": min(ratios),
                "ttft_p50_added_ms": statistics.median(
                    ttft_p50_ms(g) - ttft_p50_ms(r) for r, g in pairs
                ),
                "per_token_added_ms": statistics.median(
                    tpot_p50_ms(g) - tpot_p50_ms(r) for r, g in pairs
                ),
                "errors": sum(len(t.errors) for t in raw + gateway),
                "gateway_cpu_us_per_token": costs[concurrency].cpu_us_per_token,
                "gateway_before_engine_ms": costs[concurrency].before_engine_ms,
                "gateway_before_engine_p50_ms": costs[concurrency].before_engine_p50_ms,
            }
        )
    return rows


def print_table(rows: list[dict[str, float | int]]) -> None:
    header = (
        f"{'threads':>7} {'conc':>4} {'raw tok/s':>9} {'gw tok/s':>9} {'ratio':>6} "
        f"{'min':>6} {'+TTFT p50':>10} {'gw ms':>6} {'gw p50':>6} {'+ms/token':>9} "
        f"{'errors':>6} "
        f"{'gw CPU µs/tok':>13}"
    )
    print(header)
    for row in rows:
        print(
            f"{row['threads']:>7} {row['concurrency']:>4} {row['raw_tokens_per_s']:>9.1f} "
            f"{row['gateway_tokens_per_s']:>9.1f} {row['tokens_per_s_ratio']:>6.3f} "
            f"{row['tokens_per_s_ratio_min']:>6.3f} {row['ttft_p50_added_ms']:>8.2f}ms "
            f"{row['gateway_before_engine_ms']:>6.2f} {row['gateway_before_engine_p50_ms']:>6.2f} "
            f"{row['per_token_added_ms']:>9.3f} {row['errors']:>6} "
            f"{row['gateway_cpu_us_per_token']:>13.1f}"
        )


def bench_key(folder: Path) -> str:
    """An admin key (it also reads /metrics) in a scratch database that the served gateway
    is pointed at (through its environment), with limits the load never reaches."""
    url = f"sqlite:///{folder / 'security.db'}"
    os.environ["DSDEPLOY_DB_URL"] = url
    store = KeyStore.open(SecuritySettings(db_url=url), folder)
    try:
        _, secret = store.create(
            "bench", rpm=1_000_000, tpm=10**9, max_concurrent=10_000, scope="admin"
        )
    finally:
        store.close()
    return secret


def measure(args: argparse.Namespace, threads: int) -> list[dict[str, float | int]]:
    flags = ["--threads", str(threads), "--parallel", str(args.parallel), "--ctx-size", "2048"]
    program = (sys.executable, __file__, SERVE_WITH_EVENT_HOOK) if args.event_hook else DSDEPLOY
    log = args.out.parent / f"serve-threads{threads}.log"
    server = start_local_server("smollm2", flags, log, program)
    options = SweepOptions(
        concurrency=args.concurrency,
        repetitions=args.reps,
        workload=Workload(prompt_words=32, max_tokens=args.max_tokens, shared_prefix=False),
        requests=None,
    )

    def show(done: int, total: int) -> None:
        print(f"threads={threads}: trial {done}/{total}")

    try:
        targets = [server.raw, replace(server.gateway, api_key=args.api_key)]
        models = asyncio.run(served_models(targets))
        trials = asyncio.run(sweep(targets, models, options, show))
        costs = asyncio.run(
            gateway_costs(
                server, targets[1], models[server.gateway.name], options.workload, options
            )
        )
    finally:
        server.stop()
    return compare(trials, threads, costs)


def main() -> None:
    if sys.argv[1:2] == [SERVE_WITH_EVENT_HOOK]:
        serve_with_event_hook(sys.argv[2:])
        return
    cores = probe().physical_cores
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--concurrency", type=parse_concurrency, default=(1, 4, 16))
    parser.add_argument(
        "--threads",
        type=lambda s: [int(x) for x in s.split(",")],
        default=sorted({cores, max(cores - 1, 1)}, reverse=True),
    )
    parser.add_argument(
        "--parallel",
        type=int,
        default=16,
        help="engine slots; as many as the highest concurrency, so TTFT is not queueing time",
    )
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument(
        "--event-hook", action="store_true", help="serve with one no-op on_event hook"
    )
    parser.add_argument(
        "--keys", action="store_true", help="require an API key (with per-key limits) too"
    )
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one short rep at 1 and 2 streams, with the hook and a key",
    )
    args = parser.parse_args()
    if args.quick:  # a check that it runs, not a measurement
        args.reps, args.concurrency, args.max_tokens = 1, (1, 2), 16
        args.threads, args.parallel, args.event_hook, args.keys = [cores], 2, True, True
    name = "gateway_overhead" + ("_event_hook" if args.event_hook else "")
    name += "_keys" if args.keys else ""
    args.out = args.out or RESULTS / (
        "gateway_overhead.quick.json" if args.quick else f"{name}.json"
    )

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="dsdeploy-bench-keys-") as scratch:
        args.api_key = bench_key(Path(scratch)) if args.keys else None
        rows = [row for threads in args.threads for row in measure(args, threads)]
    del args.api_key  # not written with the settings
    print_table(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    args.out.write_text(
        json.dumps(
            {
                "settings": settings,
                "load_average_before": load_before,
                "load_average_after": os.getloadavg(),
                "summary": rows,
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
