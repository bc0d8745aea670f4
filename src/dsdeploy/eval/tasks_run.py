"""Ask a deployment every question of the sets through its OpenAI API and count the right
answers; GGUF files (the quantizations ``eval quant --keep`` wrote) are served one at a
time with the engine ``serve`` uses, so each quantization answers the same questions."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import httpx

from dsdeploy.clients.openai_compat import Target, parse_target, served_model
from dsdeploy.engines.llamacpp_locate import locate
from dsdeploy.engines.registry import ModelLaunch, build_engine
from dsdeploy.errors import EngineNotInstalled, EvalError
from dsdeploy.eval.tasks import Item, TaskSet
from dsdeploy.hardware import probe
from dsdeploy.model.file_checks import ModelChecks
from dsdeploy.planner.launch_plan import LaunchPlan
from dsdeploy.progress import ProgressHook
from dsdeploy.runtime.supervisor import Supervisor
from dsdeploy.settings import Settings

MAX_REPLY_TOKENS = 16
CTX_PER_SLOT = 1024
"""Room for one question and its short reply."""


@dataclass(frozen=True)
class SetScore:
    target: str
    task_set: str
    correct: int
    total: int
    errors: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.total


async def ask(client: httpx.AsyncClient, target: Target, model: str, item: Item) -> bool:
    """Greedy decoding, so a score moves only when the model's answer does."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": item.prompt()}],
        "max_tokens": MAX_REPLY_TOKENS,
        "temperature": 0,
    }
    response = await client.post(f"{target.api}/chat/completions", json=body)
    response.raise_for_status()
    return item.correct(response.json()["choices"][0]["message"]["content"] or "")


async def score_target(
    target: Target, sets: list[TaskSet], concurrency: int, progress: ProgressHook
) -> list[SetScore]:
    model = await served_model(target)
    scores = []
    total = sum(len(s.items) for s in sets)
    done = 0
    limit = asyncio.Semaphore(concurrency)
    async with target.client(concurrency) as client:

        async def one(item: Item) -> bool | None:
            nonlocal done
            async with limit:
                try:
                    return await ask(client, target, model, item)
                except (httpx.HTTPError, KeyError, ValueError):
                    return None
                finally:
                    done += 1
                    progress(done, total)

        for task_set in sets:
            answers = await asyncio.gather(*(one(item) for item in task_set.items))
            scores.append(
                SetScore(
                    target=target.name,
                    task_set=task_set.name,
                    correct=sum(answer is True for answer in answers),
                    total=len(answers),
                    errors=sum(answer is None for answer in answers),
                )
            )
    return scores


async def score_gguf(
    settings: Settings, path: Path, sets: list[TaskSet], concurrency: int, progress: ProgressHook
) -> list[SetScore]:
    """Serve one GGUF file privately (Unix socket), score it, stop it."""
    installed = locate(settings.dirs, settings.engine.llama_server, settings.engine.engine_backend)
    if installed is None:
        raise EngineNotInstalled("no llama-server yet: run `dsdeploy engine install`")
    name = path.stem
    launch = LaunchPlan(
        threads=settings.engine.threads or probe().physical_cores,
        ctx_per_slot=CTX_PER_SLOT,
        parallel=concurrency,
    )
    engine = build_engine(
        "llama.cpp",
        ModelLaunch(installed.binary, path, name, launch),
        ModelChecks(settings.dirs.model_checks),
    )
    supervisor = Supervisor(
        engine,
        name,
        settings.dirs.logs / f"eval-{name}.log",
        ready_timeout_s=settings.engine.ready_timeout_s,
        backoff_max_s=settings.engine.restart_backoff_max_s,
        health_interval_s=settings.engine.health_interval_s,
        health_failures=settings.engine.health_failures,
    )
    await supervisor.start()
    try:
        target = Target(name, "http://llama-server/v1", uds=str(supervisor.socket_path))
        return await score_target(target, sets, concurrency, progress)
    finally:
        await supervisor.stop()


def check_files(settings: Settings, ggufs: list[Path]) -> None:
    """Every file present and well formed, before any question is asked."""
    missing = [str(path) for path in ggufs if not path.is_file()]
    if missing:
        raise EvalError(f"no such GGUF file: {', '.join(missing)}")
    checks = ModelChecks(settings.dirs.model_checks)
    for path in ggufs:
        checks.require(path)


def evaluate_tasks(
    settings: Settings,
    target_specs: list[str],
    ggufs: list[Path],
    sets: list[TaskSet],
    concurrency: int,
    progress: ProgressHook,
) -> list[SetScore]:
    """Running deployments first (checked reachable before any question), then each file."""
    targets = [parse_target(spec) for spec in target_specs]
    if not targets and not ggufs:
        raise EvalError("nothing to evaluate: give --target NAME=URL or --gguf FILE")
    if concurrency < 1:
        raise EvalError("--concurrency must be at least 1")
    check_files(settings, ggufs)

    per_deployment = sum(len(s.items) for s in sets)
    deployments = len(targets) + len(ggufs)

    def overall(index: int) -> ProgressHook:
        def update(done: int, total: int) -> None:
            progress(index * per_deployment + done, deployments * per_deployment)

        return update

    async def run_all() -> list[SetScore]:
        for target in targets:
            await served_model(target)
        scores = []
        for index, target in enumerate(targets):
            scores += await score_target(target, sets, concurrency, overall(index))
        for index, path in enumerate(ggufs, start=len(targets)):
            scores += await score_gguf(settings, path, sets, concurrency, overall(index))
        return scores

    return asyncio.run(run_all())
