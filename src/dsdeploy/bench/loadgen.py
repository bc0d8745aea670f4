"""Closed-loop load: ``concurrency`` clients, each sending its next request as soon as the
previous one finished, until the trial's requests are used up."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field

import httpx

from dsdeploy.bench.workload import Workload
from dsdeploy.clients.openai_compat import RequestResult, Target, stream_chat
from dsdeploy.errors import BenchError


@dataclass
class Trial:
    target: str
    concurrency: int
    rep: int
    """-1 for the discarded warm-up."""
    wall_s: float = 0.0
    results: list[RequestResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return sum(r.completion_tokens for r in self.results) / self.wall_s

    @property
    def requests_per_s(self) -> float:
        return len(self.results) / self.wall_s


async def run_trial(
    target: Target,
    model: str,
    workload: Workload,
    trial: Trial,
    requests: int,
    indices: itertools.count[int],
) -> Trial:
    """``indices`` numbers requests across the whole run, so no prompt is ever sent twice."""
    remaining = iter(range(requests))

    async def client_loop(client: httpx.AsyncClient) -> None:
        for _ in remaining:
            body = workload.body(model, next(indices))
            try:
                trial.results.append(await stream_chat(client, target, body))
            except (httpx.HTTPError, BenchError) as exc:
                trial.errors.append(f"{type(exc).__name__}: {exc}"[:300])

    async with target.client(trial.concurrency) as client:
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(trial.concurrency)))
        trial.wall_s = time.perf_counter() - start
    return trial
