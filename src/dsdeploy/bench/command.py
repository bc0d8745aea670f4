"""``dsdeploy bench``: measure the targets, the machine's ceiling, and write the report."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from dsdeploy import catalog
from dsdeploy.bench.launch import LocalServer, start_local_server
from dsdeploy.bench.power import PowerSampler
from dsdeploy.bench.provenance import Machine, busy, git_revision, machine_now, utc_timestamp
from dsdeploy.bench.run import SweepOptions, served_models, sweep
from dsdeploy.bench.stats import NOISY_CV, Row, summarize
from dsdeploy.clients.openai_compat import Target, parse_target
from dsdeploy.engines import llamacpp_locate
from dsdeploy.errors import BenchError, ModelNotFound
from dsdeploy.memory_bandwidth import measure_read_bandwidth
from dsdeploy.modelfile import gguf_bytes_read_per_token
from dsdeploy.planner.memory import decode_tokens_per_s_bound
from dsdeploy.progress import step_progress
from dsdeploy.settings import DEFAULT_MODEL, Settings
from dsdeploy.store import Store

BENCH_CTX_PER_SLOT = 2048
"""Context per slot for the servers bench starts: room for the prompt and the output
without reserving the model's whole trained context for every slot."""


@dataclass(frozen=True)
class ModelFacts:
    name: str
    sha256: str
    engine_version: str | None
    bytes_per_token: int


@dataclass(frozen=True)
class BenchReport:
    created: str
    dsdeploy_revision: str
    machine: Machine
    load_average_after: tuple[float, float, float]
    noisy: bool
    memory_bandwidth: float
    """Bytes per second, measured in this run with the engine's thread count."""
    bandwidth_threads: int
    model: ModelFacts | None
    ceiling_tokens_per_s: float | None
    """Memory-bound decode ceiling for one stream: bandwidth ÷ bytes read per token."""
    workload: dict[str, object]
    targets: dict[str, str]
    rows: list[Row]
    trials: list[dict[str, object]] = field(default_factory=list)
    gpu_power_w: float | None = None
    """Mean summed draw of the GPUs during the sweep (NVML); None without NVIDIA GPUs."""


def model_facts(settings: Settings, name: str) -> ModelFacts:
    store = Store(settings.dirs.models)
    manifest = store.manifest(name)
    if manifest is None:
        raise ModelNotFound(name, store.names())
    installed = llamacpp_locate.locate(
        settings.dirs, settings.engine.llama_server, settings.engine.engine_backend
    )
    return ModelFacts(
        name=name,
        sha256=manifest.weights.sha256,
        engine_version=installed.version if installed else None,
        bytes_per_token=gguf_bytes_read_per_token(store.materialize(manifest).entry),
    )


def serve_flags(settings: Settings, options: SweepOptions) -> list[str]:
    """As many slots as the highest concurrency, so TTFT is not time spent queueing."""
    flags = ["--parallel", str(settings.engine.parallel or max(options.concurrency))]
    flags += ["--ctx-size", str(settings.engine.ctx_size or BENCH_CTX_PER_SLOT)]
    if settings.engine.threads:
        flags += ["--threads", str(settings.engine.threads)]
    return flags


def bench(
    settings: Settings,
    target_specs: list[str],
    compare_raw: bool,
    model: str | None,
    options: SweepOptions,
    out: Path,
    console: Console,
) -> BenchReport:
    targets = [parse_target(spec) for spec in target_specs]
    if not targets and not compare_raw:
        raise BenchError("nothing to measure: give --target NAME=URL or --compare-raw")
    server: LocalServer | None = None
    try:
        if compare_raw:
            model = model or DEFAULT_MODEL
            if Store(settings.dirs.models).manifest(model) is None:
                catalog.get(model)  # serve pulls a catalog model; anything else fails here
            log = out / "serve.log"
            console.print(f"starting dsdeploy serve {model} (log: {log})")
            server = start_local_server(model, serve_flags(settings, options), log)
            targets = [server.gateway, server.raw, *targets]
        names = [t.name for t in targets]
        if len(set(names)) != len(names):
            raise BenchError(f"target names must differ: {', '.join(names)}")
        return measure(settings, targets, model, options, console)
    finally:
        if server is not None:
            server.stop()


def measure(
    settings: Settings,
    targets: list[Target],
    model: str | None,
    options: SweepOptions,
    console: Console,
) -> BenchReport:
    served = asyncio.run(served_models(targets))
    facts = model_facts(settings, model) if model else None
    machine = machine_now()
    threads = settings.engine.threads or machine.physical_cores
    console.print(f"measuring memory read bandwidth with {threads} threads")
    bandwidth = measure_read_bandwidth(threads)
    ceiling = decode_tokens_per_s_bound(bandwidth, facts.bytes_per_token) if facts else None
    with step_progress("benchmarking", console) as progress, PowerSampler() as power:
        trials = asyncio.run(sweep(targets, served, options, progress))
    load_after = os.getloadavg()
    rows = summarize(trials, ceiling)
    noisy = busy(machine.load_average_before, machine.physical_cores) or any(
        row.aggregate_cv > NOISY_CV for row in rows
    )
    workload = options.workload
    return BenchReport(
        created=utc_timestamp(),
        dsdeploy_revision=git_revision(),
        machine=machine,
        load_average_after=load_after,
        noisy=noisy,
        memory_bandwidth=bandwidth,
        bandwidth_threads=threads,
        model=facts,
        ceiling_tokens_per_s=ceiling,
        workload={
            "prompt": workload.name,
            "prompt_words": workload.prompt_words,
            "max_tokens": workload.max_tokens,
            "repetitions": options.repetitions,
            "concurrency": list(options.concurrency),
        },
        targets={t.name: t.api + (f" (unix socket {t.uds})" if t.uds else "") for t in targets},
        rows=rows,
        trials=[
            {
                "target": t.target,
                "concurrency": t.concurrency,
                "rep": t.rep,
                "wall_s": t.wall_s,
                "tokens_per_s": t.tokens_per_s if t.results else 0.0,
                "requests": len(t.results),
                "errors": t.errors[:3],
            }
            for t in trials
        ],
        gpu_power_w=power.mean_w,
    )
