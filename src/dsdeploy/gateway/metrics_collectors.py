"""Metrics read when ``/metrics`` is scraped, never on a request's path: each model's
engine (state, restarts and how long the last one took, memory and CPU of its process
tree, and the engine's own numbers from its metrics endpoint) and each NVIDIA GPU through
NVML.

prometheus-client collects synchronously, so the engines' own endpoints are read first
(``EngineCollector.refresh``, awaited by the route) and ``collect`` reports what came back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import aiohttp
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from dsdeploy.gateway.proxy import ENGINE_URL, EngineProxy
from dsdeploy.gateway.upstream import Upstream, UpstreamPool

log = logging.getLogger("dsdeploy.gateway")

ENGINE_SCRAPE_TIMEOUT_S = 2.0
NOT_LOADED = ("not loaded", "loading")

SLOTS_BUSY = (
    "dsdeploy_engine_slots_busy",
    "Engine slots generating or reading a prompt now (engine's own count)",
)
DEFERRED = (
    "dsdeploy_engine_requests_deferred",
    "Requests the engine holds until a slot frees (engine's own queue)",
)
KV_USAGE = (
    "dsdeploy_engine_kv_cache_usage_ratio",
    "Share of the engine's KV cache blocks in use (vLLM)",
)
ENGINE_GAUGES = {
    # llama-server --metrics (tools/server/server-task.cpp, to_metrics)
    "llamacpp:requests_processing": SLOTS_BUSY,
    "llamacpp:requests_deferred": DEFERRED,
    "llamacpp:n_tokens_max": (
        "dsdeploy_engine_sequence_tokens_max",
        "Longest sequence (prompt + generation) the engine has held in its KV cache",
    ),
    # vLLM (vllm/v1/metrics/loggers.py); kv_cache_usage_perc replaced gpu_cache_usage_perc
    "vllm:num_requests_running": SLOTS_BUSY,
    "vllm:num_requests_waiting": DEFERRED,
    "vllm:kv_cache_usage_perc": KV_USAGE,
    "vllm:gpu_cache_usage_perc": KV_USAGE,
    # dsdeploy's transformers engine (engines/transformers_server.py)
    "transformers:requests_running": SLOTS_BUSY,
    "transformers:requests_waiting": DEFERRED,
}
"""The engines' own metrics that are worth a dashboard, under dsdeploy's names (one name
whatever the engine, so a dashboard works for both)."""
OWN_GAUGES = dict(ENGINE_GAUGES.values())


async def scrape_engine(proxy: EngineProxy, upstream: Upstream, path: str) -> dict[str, float]:
    """The engine's numbers by dsdeploy's name (the first engine metric of a name wins: a
    vLLM that still publishes the old KV metric beside the new one counts once)."""
    session = await proxy.session_for(upstream.socket_path)
    timeout = aiohttp.ClientTimeout(total=ENGINE_SCRAPE_TIMEOUT_S)
    async with session.get(ENGINE_URL + path, timeout=timeout) as response:
        response.raise_for_status()
        text = await response.text()
    numbers: dict[str, float] = {}
    for family in text_string_to_metric_families(text):  # a counter's name loses ``_total``
        if family.name in ENGINE_GAUGES and family.samples:
            numbers.setdefault(ENGINE_GAUGES[family.name][0], family.samples[0].value)
    return numbers


def gauge(name: str, doc: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=["model"])


class EngineCollector(Collector):
    """Each served model's engine, from the pool's status and the engine's own metrics."""

    def __init__(self, pool: UpstreamPool, models: frozenset[str]) -> None:
        self.pool = pool
        self.models = models
        self.engine_numbers: dict[str, dict[str, float]] = {}

    async def refresh(self, proxy: EngineProxy) -> None:
        """Read every loaded engine's own metrics (at most a couple of seconds)."""
        running = {
            model: upstream
            for model, upstream in self.pool.running().items()
            if upstream.ready and upstream.capabilities.metrics_path
        }
        answers = await asyncio.gather(
            *(
                scrape_engine(proxy, upstream, upstream.capabilities.metrics_path or "")
                for upstream in running.values()
            ),
            return_exceptions=True,
        )
        self.engine_numbers = {}
        for model, answer in zip(running, answers, strict=True):
            if isinstance(answer, BaseException):
                log.warning("reading the metrics of %s's engine failed: %r", model, answer)
            else:
                self.engine_numbers[model] = answer

    def collect(self) -> Iterator[Metric]:
        loaded = gauge("dsdeploy_model_loaded", "1 while the model's engine is started")
        up = gauge("dsdeploy_engine_up", "1 while the model's engine is ready to answer")
        restarts = CounterMetricFamily(
            "dsdeploy_engine_restarts",
            "Times the engine was restarted after it died or hung (since it was loaded)",
            labels=["model"],
        )
        rss = gauge("dsdeploy_engine_resident_memory_bytes", "Engine process tree's RSS")
        cpu = CounterMetricFamily(
            "dsdeploy_engine_cpu_seconds", "Engine process tree's CPU time", labels=["model"]
        )
        slots = gauge("dsdeploy_engine_slots", "Requests the engine serves at once")
        leased = gauge("dsdeploy_engine_requests_in_flight", "Requests holding the engine")
        waiting = gauge("dsdeploy_model_load_waiting", "Requests waiting for the model to load")
        recovery = gauge(
            "dsdeploy_engine_recovery_seconds",
            "How long the engine's last restart took, from seen dead or killed as hung to ready",
        )
        own = {name: gauge(name, doc) for name, doc in OWN_GAUGES.items()}
        for row in self.pool.status():
            model = str(row["model"])
            if model not in self.models:
                continue
            loaded.add_metric([model], 0.0 if row["state"] in NOT_LOADED else 1.0)
            up.add_metric([model], 1.0 if row["state"] == "ready" else 0.0)
            restarts.add_metric([model], number(row.get("restarts")))
            slots.add_metric([model], number(row.get("slots")))
            leased.add_metric([model], number(row.get("in_flight")))
            waiting.add_metric([model], number(row.get("waiting")))
            if row.get("rss_bytes") is not None:
                rss.add_metric([model], number(row["rss_bytes"]))
            if row.get("cpu_s") is not None:
                cpu.add_metric([model], number(row["cpu_s"]))
            if row.get("recovery_s") is not None:
                recovery.add_metric([model], number(row["recovery_s"]))
            for name, value in self.engine_numbers.get(model, {}).items():
                own[name].add_metric([model], value)
        yield from (loaded, up, restarts, rss, cpu, slots, leased, waiting, recovery)
        yield from own.values()


def number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


GPU_GAUGES = {
    "memory_used": ("dsdeploy_gpu_memory_used_bytes", "GPU memory in use"),
    "memory_total": ("dsdeploy_gpu_memory_total_bytes", "GPU memory in all"),
    "utilization": ("dsdeploy_gpu_utilization_ratio", "Share of the last sample period busy"),
    "temperature": ("dsdeploy_gpu_temperature_celsius", "GPU core temperature"),
    "power": ("dsdeploy_gpu_power_watts", "GPU power draw"),
}


def gpu_readings(nvml: Any, handle: Any) -> Mapping[str, float | None]:
    """One GPU's numbers in base units; None for what this GPU or driver does not report."""

    def read(what: Any, *args: Any) -> Any:
        try:
            return what(handle, *args)
        except nvml.NVMLError:
            return None

    memory = read(nvml.nvmlDeviceGetMemoryInfo)
    rates = read(nvml.nvmlDeviceGetUtilizationRates)
    milliwatts = read(nvml.nvmlDeviceGetPowerUsage)
    return {
        "memory_used": memory.used if memory else None,
        "memory_total": memory.total if memory else None,
        "utilization": rates.gpu / 100 if rates else None,
        "temperature": read(nvml.nvmlDeviceGetTemperature, nvml.NVML_TEMPERATURE_GPU),
        "power": milliwatts / 1000 if milliwatts is not None else None,
    }


class GpuCollector(Collector):
    """Each NVIDIA GPU's memory, utilisation, temperature and power; nothing without one.

    ``nvml`` is the ``pynvml`` module (imported on the first scrape when not given)."""

    def __init__(self, nvml: Any = None) -> None:
        self._nvml = nvml
        self._ready: bool | None = None

    def _initialised(self) -> Any:
        if self._ready is None:
            if self._nvml is None:
                import pynvml

                self._nvml = pynvml
            try:
                self._nvml.nvmlInit()
                self._ready = True
            except self._nvml.NVMLError as exc:  # no driver or no GPU: nothing to report
                log.info("no GPU metrics: %s", exc)
                self._ready = False
        return self._nvml if self._ready else None

    def collect(self) -> Iterator[Metric]:
        nvml = self._initialised()
        if nvml is None:
            return
        families = {
            key: GaugeMetricFamily(name, doc, labels=["gpu", "name"])
            for key, (name, doc) in GPU_GAUGES.items()
        }
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            labels = [str(index), str(nvml.nvmlDeviceGetName(handle))]
            for key, value in gpu_readings(nvml, handle).items():
                if value is not None:
                    families[key].add_metric(labels, float(value))
        yield from families.values()
