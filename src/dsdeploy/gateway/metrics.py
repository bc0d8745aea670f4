"""Prometheus metrics of the gateway: what each request did, read in the ``after`` hook,
and what the engines and GPUs are doing, read only when ``/metrics`` is scraped.

Every app has its own ``CollectorRegistry`` (several apps in one process never clash), and
every label comes from a closed set: routes are endpoint names, models are the served
models (a name the client made up becomes ``unknown``), statuses are HTTP codes, and keys
appear by their public id. No key, address or prompt is ever a label.

Streamed answers are timed from the context's clock readings, not from events: TTFT is
first engine byte less arrival, and the inter-token latency is the mean gap of one answer,
(last byte − first byte) / (completion tokens − 1). An ``on_event`` hook would time every
token, but it makes the relay cut and parse every event (see "Event relay cost" in
docs/design.md); the byte relay instead keeps the stream's ends and reads their usage.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.process_collector import ProcessCollector
from starlette.datastructures import Headers

from dsdeploy.gateway.context import RequestContext, Usage
from dsdeploy.gateway.hooks import Hook
from dsdeploy.gateway.metrics_collectors import EngineCollector, GpuCollector
from dsdeploy.gateway.upstream import UpstreamPool

NO_KEY = "none"
NO_MODEL = "none"
UNKNOWN_MODEL = "unknown"
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ITL_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0)
GATEWAY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5, 10.0, 60.0)
LOAD_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class GatewayMetrics(Hook):
    """The app's metrics: a hook for requests, a pool listener for loads and evictions,
    and the collectors read at scrape time. Register it before hooks that may refuse."""

    def __init__(self, pool: UpstreamPool, nvml: Any = None) -> None:
        """``nvml``: the ``pynvml`` module, or an object with its functions (tests)."""
        self.registry = CollectorRegistry()
        self.models = frozenset(pool.model_names())
        self.engines = EngineCollector(pool, self.models)
        self.registry.register(self.engines)
        self.registry.register(GpuCollector(nvml))
        ProcessCollector(registry=self.registry)  # the gateway's own RSS, CPU, open files
        self._open: set[str] = set()
        self._define(self.registry)
        for model in self.models:  # series exist from the start, so rate() sees the first
            for family in (
                self.ttft,
                self.itl,
                self.before_engine,
                self.prompt_tokens,
                self.completion_tokens,
            ):
                family.labels(model)

    def _define(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "dsdeploy_requests",
            "API requests answered, by endpoint, model, HTTP status and API key id",
            ["route", "model", "status", "key_id"],
            registry=registry,
        )
        self.rate_limited = Counter(
            "dsdeploy_requests_rate_limited",
            "API requests refused by a rate limit",
            ["route", "model", "key_id"],
            registry=registry,
        )
        self.latency = Histogram(
            "dsdeploy_request_duration_seconds",
            "Time from a request's arrival to its answer's last byte",
            ["route", "model"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.ttft = Histogram(
            "dsdeploy_ttft_seconds",
            "Time to first token of streamed answers: arrival to the engine's first bytes",
            ["model"],
            buckets=TTFT_BUCKETS,
            registry=registry,
        )
        self.before_engine = Histogram(
            "dsdeploy_gateway_before_engine_seconds",
            "Time from a request's arrival to its engine being asked (authentication, limits, "
            "parsing, hooks, and waiting for the model to load): what the gateway adds to TTFT",
            ["model"],
            buckets=GATEWAY_BUCKETS,
            registry=registry,
        )
        self.itl = Histogram(
            "dsdeploy_inter_token_latency_seconds",
            "Mean time between tokens of one streamed answer (one observation per answer)",
            ["model"],
            buckets=ITL_BUCKETS,
            registry=registry,
        )
        self.prompt_tokens = Counter(
            "dsdeploy_prompt_tokens",
            "Prompt tokens the engines reported",
            ["model"],
            registry=registry,
        )
        self.completion_tokens = Counter(
            "dsdeploy_completion_tokens",
            "Completion tokens the engines reported",
            ["model"],
            registry=registry,
        )
        in_flight = Gauge(
            "dsdeploy_requests_in_flight", "API requests being answered now", registry=registry
        )
        in_flight.set_function(lambda: len(self._open))
        self.load_time = Histogram(
            "dsdeploy_model_load_seconds",
            "Time to start a model's engine until it answers",
            ["model"],
            buckets=LOAD_BUCKETS,
            registry=registry,
        )
        self.evictions = Counter(
            "dsdeploy_model_evictions",
            "Engines stopped while idle: 'memory' to make room, 'idle' after the keep-alive",
            ["model", "reason"],
            registry=registry,
        )

    def model_label(self, model: str | None) -> str:
        if model is None:
            return NO_MODEL
        return model if model in self.models else UNKNOWN_MODEL

    async def admit(self, ctx: RequestContext, headers: Headers) -> None:
        self._open.add(ctx.id)

    async def after(self, ctx: RequestContext, usage: Usage | None) -> None:
        self._open.discard(ctx.id)
        route, model = ctx.route or "", self.model_label(ctx.model)
        key_id = ctx.key_id or NO_KEY
        self.requests.labels(route, model, str(ctx.status or 0), key_id).inc()
        if ctx.decision == "rate_limited":
            self.rate_limited.labels(route, model, key_id).inc()
        timings = ctx.timings
        if timings.done is not None:
            self.latency.labels(route, model).observe(timings.done - timings.received)
        if timings.upstream_start is not None:
            self.before_engine.labels(model).observe(timings.upstream_start - timings.received)
        if usage is not None:
            self.prompt_tokens.labels(model).inc(usage.input_tokens)
            self.completion_tokens.labels(model).inc(usage.output_tokens)
        if not ctx.stream or timings.first_byte is None:
            return
        self.ttft.labels(model).observe(timings.first_byte - timings.received)
        if timings.last_byte is not None and usage is not None and usage.output_tokens > 1:
            gap = (timings.last_byte - timings.first_byte) / (usage.output_tokens - 1)
            self.itl.labels(model).observe(gap)

    def model_loaded(self, model: str, seconds: float) -> None:
        self.load_time.labels(self.model_label(model)).observe(seconds)

    def model_unloaded(self, model: str, reason: str) -> None:
        self.evictions.labels(self.model_label(model), reason).inc()
