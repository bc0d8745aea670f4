"""The measurement loop: warm-up, then repetitions × concurrencies × targets, alternating
which target goes first so slow drifts of a shared machine fall on all targets alike."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from dsdeploy.bench.loadgen import Trial, run_trial
from dsdeploy.bench.workload import Workload
from dsdeploy.clients.openai_compat import Target, served_model
from dsdeploy.errors import BenchError
from dsdeploy.progress import ProgressHook

WARMUP_REQUESTS = 2
MIN_REQUESTS_PER_TRIAL = 4


@dataclass(frozen=True)
class SweepOptions:
    concurrency: tuple[int, ...]
    repetitions: int
    workload: Workload
    requests: int | None = None
    """Requests per trial; by default max(concurrency, 4), so every client sends at least one."""

    def __post_init__(self) -> None:
        if not self.concurrency or min(self.concurrency) < 1:
            raise BenchError("--concurrency needs positive integers, e.g. 1,4,16")
        if self.repetitions < 1:
            raise BenchError("--reps must be at least 1")

    def requests_for(self, concurrency: int) -> int:
        return self.requests or max(concurrency, MIN_REQUESTS_PER_TRIAL)


async def served_models(targets: list[Target]) -> dict[str, str]:
    """Each target's model id, asked before anything is measured: an unreachable target
    fails the run at once."""
    return {target.name: await served_model(target) for target in targets}


async def sweep(
    targets: list[Target], models: dict[str, str], options: SweepOptions, progress: ProgressHook
) -> list[Trial]:
    indices = itertools.count()
    workload = options.workload
    for target in targets:  # warm-up, discarded: first requests pay for lazy allocations
        warmup = Trial(target.name, min(options.concurrency), rep=-1)
        await run_trial(target, models[target.name], workload, warmup, WARMUP_REQUESTS, indices)
    trials: list[Trial] = []
    total = options.repetitions * len(options.concurrency) * len(targets)
    for rep in range(options.repetitions):
        shift = rep % len(targets)
        order = targets[shift:] + targets[:shift]
        for concurrency, target in itertools.product(options.concurrency, order):
            trial = Trial(target.name, concurrency, rep)
            requests = options.requests_for(concurrency)
            trials.append(
                await run_trial(target, models[target.name], workload, trial, requests, indices)
            )
            progress(len(trials), total)
    return trials


def parse_concurrency(text: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise BenchError(f"bad --concurrency {text!r}: write levels like 1,4,16") from None
    return levels
