"""Decode throughput of the transformers engine on tiny checkpoints, one request at a time
and four at once: what transformers' continuous batching (tiny Llama) gains over
``generate()`` one request after another (tiny DeepSeek-V3, whose MLA the paged cache
cannot hold).

    python benchmarks/transformers_engine.py [--requests 8] [--max-tokens 64] [--quick]

The engine is started with the adapter's own argv and environment, on a Unix socket; the
warm-up request is not counted. Tokens/s = completion tokens of all requests / wall time.
Prints a table and writes benchmarks/results/transformers_engine.json (.quick.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from dsdeploy.engines.llamacpp_install import source_tree
from dsdeploy.engines.transformers import TransformersEngine
from dsdeploy.engines.transformers_support import check_checkpoint
from dsdeploy.modelfile_hf import read_hf_layout
from dsdeploy.planner.launch_transformers import plan_transformers_serving
from dsdeploy.planner.placement import Machine
from dsdeploy.settings import Settings
from tiny_checkpoints import build_checkpoint, tokenizer_files

RESULTS = Path(__file__).parent / "results"
TEMPLATE = "deepseek-ai-DeepSeek-V3.1.jinja"
ARCHITECTURES = ("llama", "deepseek-v3")
BODY = {"messages": [{"role": "user", "content": "Tell me a story."}], "temperature": 0.8}


def checkpoint(architecture: str, work: Path) -> Path:
    folder = build_checkpoint(architecture, work / architecture, tokenizer_files(work))
    settings_path = folder / "tokenizer_config.json"
    template = source_tree(Settings().dirs) / "models" / "templates" / TEMPLATE
    settings = json.loads(settings_path.read_text()) | {"chat_template": template.read_text()}
    settings_path.write_text(json.dumps(settings))
    return folder


def start(folder: Path, socket: Path, threads: int) -> subprocess.Popen[bytes]:
    layout = read_hf_layout(folder)
    machine = Machine(ram_available=8 * 2**30, physical_cores=threads, cpu_bandwidth=1e10)
    launch = plan_transformers_serving(
        layout.architecture, layout.weight_bytes, True, machine, ctx_size=512, parallel=4
    )
    engine = TransformersEngine(folder, "bench", launch, check_checkpoint(folder).batching)
    spec = engine.launch(socket, os.environ)
    log = (socket.parent / "engine.log").open("wb")
    return subprocess.Popen(spec.argv, env=dict(spec.env), stdout=log, stderr=log)


async def wait_ready(client: httpx.AsyncClient, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if (await client.get("http://engine/health")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.5)
    raise RuntimeError("the engine did not become ready; see its engine.log")


async def one(client: httpx.AsyncClient, max_tokens: int) -> int:
    body = BODY | {"max_tokens": max_tokens}
    answer = await client.post("http://engine/v1/chat/completions", json=body, timeout=600)
    answer.raise_for_status()
    return int(answer.json()["usage"]["completion_tokens"])


async def measure(
    client: httpx.AsyncClient, concurrency: int, requests: int, max_tokens: int
) -> dict[str, Any]:
    gate = asyncio.Semaphore(concurrency)

    async def limited() -> int:
        async with gate:
            return await one(client, max_tokens)

    began = time.perf_counter()
    tokens = sum(await asyncio.gather(*(limited() for _ in range(requests))))
    wall = time.perf_counter() - began
    return {
        "concurrency": concurrency,
        "tokens": tokens,
        "seconds": round(wall, 3),
        "tokens_per_s": round(tokens / wall, 1),
    }


async def bench_one(folder: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    socket = folder / "engine.sock"
    process = start(folder, socket, args.threads)
    transport = httpx.AsyncHTTPTransport(uds=str(socket))
    try:
        async with httpx.AsyncClient(transport=transport) as client:
            await wait_ready(client, process)
            await one(client, 4)  # warm-up
            return [await measure(client, c, args.requests, args.max_tokens) for c in (1, 4)]
    finally:
        process.terminate()
        process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.max_tokens = 4, 8
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for architecture in ARCHITECTURES:
            folder = checkpoint(architecture, Path(work))
            batching = check_checkpoint(folder).batching
            for row in asyncio.run(bench_one(folder, args)):
                rows.append({"architecture": architecture, "batching": batching, **row})
    print(f"{'architecture':<14}{'batching':<12}{'concurrent':>11}{'tokens':>8}{'tok/s':>9}")
    for row in rows:
        print(
            f"{row['architecture']:<14}{row['batching']:<12}{row['concurrency']:>11}"
            f"{row['tokens']:>8}{row['tokens_per_s']:>9}"
        )
    RESULTS.mkdir(exist_ok=True)
    name = "transformers_engine.quick.json" if args.quick else "transformers_engine.json"
    settings = {"requests": args.requests, "max_tokens": args.max_tokens, "threads": args.threads}
    (RESULTS / name).write_text(json.dumps({"settings": settings, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
