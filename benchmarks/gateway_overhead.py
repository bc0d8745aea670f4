"""Gateway overhead: the engine dsdeploy starts, hit directly vs through the dsdeploy gateway.

Both targets are the *same* llama-server process (same model, same flags): the script starts
``dsdeploy serve``, finds the engine's private Unix socket on its command line, and sends
identical streamed load to both, alternating which goes first, several times. Closed-loop
clients at each concurrency; ``ignore_eos`` so every request decodes exactly --max-tokens.
It does this for each engine thread count asked for (cores and cores - 1 by default).

    python benchmarks/gateway_overhead.py [--reps 5] [--concurrency 1,4,16] [--threads 2,1]

Prints a table and writes benchmarks/results/gateway_overhead.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import psutil

PROMPT = [{"role": "user", "content": "Tell me a long story about a lighthouse keeper."}]
RESULTS = Path(__file__).parent / "results" / "gateway_overhead.json"


@dataclass
class RequestResult:
    ttft_s: float
    total_s: float
    tokens: int


@dataclass
class Trial:
    target: str
    threads: int
    concurrency: int
    rep: int
    wall_s: float
    results: list[RequestResult] = field(default_factory=list)
    errors: int = 0

    @property
    def tokens_per_s(self) -> float:
        return sum(r.tokens for r in self.results) / self.wall_s

    def ttft_p50_ms(self) -> float:
        return statistics.median(r.ttft_s for r in self.results) * 1000

    def per_token_ms(self) -> float:
        return statistics.median(
            (r.total_s - r.ttft_s) / max(r.tokens - 1, 1) * 1000 for r in self.results
        )


async def one_request(client: httpx.AsyncClient, url: str, max_tokens: int) -> RequestResult:
    body = {
        "model": "smollm2",
        "messages": PROMPT,
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": True,
        "temperature": 0.7,
    }
    start = time.perf_counter()
    first: float | None = None
    tokens = 0
    async with client.stream("POST", url, json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(chunk["error"])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            elif first is None and chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                first = time.perf_counter()
    end = time.perf_counter()
    if tokens != max_tokens or first is None:
        raise RuntimeError(f"expected {max_tokens} tokens, got {tokens}")
    return RequestResult(ttft_s=first - start, total_s=end - start, tokens=tokens)


@dataclass(frozen=True)
class Target:
    url: str
    uds: str | None = None
    """The engine's Unix socket, for the raw target."""


async def run_trial(
    target: Target, concurrency: int, requests: int, max_tokens: int, trial: Trial
) -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            queue.get_nowait()
            try:
                trial.results.append(await one_request(client, target.url, max_tokens))
            except (httpx.HTTPError, RuntimeError) as exc:
                print(f"  error on {trial.target}: {exc!r}", file=sys.stderr)
                trial.errors += 1

    # Fresh connections for both targets: llama-server drops idle keep-alive connections.
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)
    transport = httpx.AsyncHTTPTransport(uds=target.uds, limits=limits) if target.uds else None
    async with httpx.AsyncClient(timeout=300, limits=limits, transport=transport) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        trial.wall_s = time.perf_counter() - start


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_dsdeploy(
    threads: int, parallel: int, log: Path
) -> tuple[subprocess.Popen[bytes], str, str]:
    """Returns the server process, the gateway URL and the engine's Unix socket."""
    port = free_port()
    print(f"starting dsdeploy serve with {threads} engine threads (log: {log})")
    command = [
        sys.executable,
        "-m",
        "dsdeploy",
        "serve",
        "--port",
        str(port),
        "--threads",
        str(threads),
        "--parallel",
        str(parallel),
    ]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    gateway = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"dsdeploy serve exited; see {log}")
        try:
            if httpx.get(gateway + "/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    engine = next(c for c in psutil.Process(process.pid).children() if "llama-server" in c.name())
    argv = engine.cmdline()
    return process, gateway, argv[argv.index("--host") + 1]


def summarize(trials: list[Trial]) -> list[dict[str, float | int]]:
    rows = []
    keys = sorted({(t.threads, t.concurrency) for t in trials})
    for threads, concurrency in keys:
        pair = {
            target: [
                t
                for t in trials
                if (t.threads, t.concurrency, t.target) == (threads, concurrency, target)
            ]
            for target in ("raw", "gateway")
        }
        ratios = [
            g.tokens_per_s / r.tokens_per_s
            for r, g in zip(pair["raw"], pair["gateway"], strict=True)
        ]
        rows.append(
            {
                "threads": threads,
                "concurrency": concurrency,
                "raw_tokens_per_s": statistics.median(t.tokens_per_s for t in pair["raw"]),
                "gateway_tokens_per_s": statistics.median(t.tokens_per_s for t in pair["gateway"]),
                "tokens_per_s_ratio": statistics.median(ratios),
                "tokens_per_s_ratio_min": min(ratios),
                "ttft_p50_added_ms": statistics.median(
                    g.ttft_p50_ms() - r.ttft_p50_ms()
                    for r, g in zip(pair["raw"], pair["gateway"], strict=True)
                ),
                "per_token_added_ms": statistics.median(
                    g.per_token_ms() - r.per_token_ms()
                    for r, g in zip(pair["raw"], pair["gateway"], strict=True)
                ),
                "errors": sum(t.errors for t in pair["raw"] + pair["gateway"]),
            }
        )
    return rows


def print_table(rows: list[dict[str, float | int]]) -> None:
    header = (
        f"{'threads':>7} {'conc':>4} {'raw tok/s':>9} {'gw tok/s':>9} {'ratio':>6} "
        f"{'min':>6} {'+TTFT p50':>10} {'+ms/token':>9} {'errors':>6}"
    )
    print(header)
    for row in rows:
        print(
            f"{row['threads']:>7} {row['concurrency']:>4} {row['raw_tokens_per_s']:>9.1f} "
            f"{row['gateway_tokens_per_s']:>9.1f} {row['tokens_per_s_ratio']:>6.3f} "
            f"{row['tokens_per_s_ratio_min']:>6.3f} {row['ttft_p50_added_ms']:>8.2f}ms "
            f"{row['per_token_added_ms']:>9.3f} {row['errors']:>6}"
        )


def measure(args: argparse.Namespace, threads: int, trials: list[Trial]) -> None:
    log = args.out.parent / f"serve-threads{threads}.log"
    process, gateway, engine_socket = start_dsdeploy(threads, args.parallel, log)
    urls = {
        "raw": Target("http://engine/v1/chat/completions", uds=engine_socket),
        "gateway": Target(gateway + "/v1/chat/completions"),
    }
    try:
        for target in ("raw", "gateway"):  # warm-up, discarded
            asyncio.run(run_trial(urls[target], 2, 2, 16, Trial(target, threads, 2, -1, 0)))
        for rep in range(args.reps):
            for concurrency in args.concurrency:
                order = ("raw", "gateway") if rep % 2 == 0 else ("gateway", "raw")
                for target in order:
                    trial = Trial(target, threads, concurrency, rep, 0.0)
                    requests = max(concurrency, args.min_requests)
                    asyncio.run(
                        run_trial(urls[target], concurrency, requests, args.max_tokens, trial)
                    )
                    trials.append(trial)
                    print(
                        f"threads={threads} c={concurrency} rep={rep} {target:>7}: "
                        f"{trial.tokens_per_s:6.1f} tok/s, TTFT p50 {trial.ttft_p50_ms():6.1f} ms"
                    )
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def main() -> None:
    cores = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument(
        "--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 16]
    )
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
    parser.add_argument("--min-requests", type=int, default=4, help="requests per trial, at least")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    trials: list[Trial] = []
    load_before = os.getloadavg()
    for threads in args.threads:
        measure(args, threads, trials)
    rows = summarize(trials)
    print_table(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "settings": {
                    k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
                },
                "load_average_before": load_before,
                "load_average_after": os.getloadavg(),
                "summary": rows,
                "trials": [asdict(t) | {"tokens_per_s": t.tokens_per_s} for t in trials],
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
