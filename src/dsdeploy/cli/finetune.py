"""`dsdeploy finetune`: LoRA on your own chat data, stored as a model the gateway serves."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dsdeploy.cli.common import console, fail, load_settings
from dsdeploy.errors import DsdeployError
from dsdeploy.finetune.run import Outcome, Request, finetune
from dsdeploy.finetune.search import SearchSpace, search
from dsdeploy.finetune.train import Hyper, Schedule
from dsdeploy.planner.machine import parse_size
from dsdeploy.settings import DEFAULT_MODEL


def finetune_command(
    model: Annotated[str, typer.Argument(help="Base model name in the store.")] = DEFAULT_MODEL,
    data: Annotated[
        Path, typer.Option(help='OpenAI chat JSONL: one {"messages": [...]} per line.')
    ] = Path("train.jsonl"),
    name: Annotated[
        str | None, typer.Option(help="Store name of the adapter (default: MODEL-DATA).")
    ] = None,
    steps: Annotated[int, typer.Option(min=1, help="Most optimizer steps.")] = 200,
    batch: Annotated[int, typer.Option(min=1, help="Conversations per step.")] = 8,
    seq_len: Annotated[int, typer.Option(min=16, help="Tokens per conversation, at most.")] = 128,
    lr: Annotated[float, typer.Option(min=0, help="AdamW learning rate.")] = 1e-3,
    rank: Annotated[int, typer.Option(min=1, help="LoRA rank.")] = 8,
    alpha: Annotated[int, typer.Option(min=1, help="LoRA alpha (scale = alpha / rank).")] = 16,
    target_modules: Annotated[
        str, typer.Option(help="Comma-separated linear layers to adapt.")
    ] = "q_proj,v_proj",
    validation: Annotated[
        float, typer.Option(min=0.01, max=0.5, help="Share of conversations held out.")
    ] = 0.1,
    eval_every: Annotated[int, typer.Option(min=1, help="Steps between validations.")] = 20,
    patience: Annotated[
        int, typer.Option(min=1, help="Validations without improvement before stopping.")
    ] = 3,
    seed: Annotated[int, typer.Option(help="Seed of the split, batches and LoRA init.")] = 0,
    gradient_checkpointing: Annotated[
        bool, typer.Option(help="Recompute activations in the backward pass (less memory).")
    ] = True,
    merge: Annotated[
        bool, typer.Option("--merge", help="Also store the base with the adapter merged in.")
    ] = False,
    search_trials: Annotated[
        int, typer.Option("--search", min=0, help="Optuna trials over lr, rank and alpha.")
    ] = 0,
    search_minutes: Annotated[
        float, typer.Option(min=0.1, help="Time budget of --search, minutes.")
    ] = 30.0,
    memory_limit: Annotated[
        str | None, typer.Option(help="Memory the run may use, e.g. 2G (default: free RAM).")
    ] = None,
) -> None:
    """Train a LoRA adapter on MODEL; the adapter is stored and served as NAME."""
    settings = load_settings()
    schedule = Schedule(
        steps, batch, seq_len, eval_every, patience, eval_every, seed, gradient_checkpointing
    )
    request = Request(
        model=model,
        data=data,
        name=name or f"{model}-{data.stem}".lower().replace("_", "-"),
        hyper=Hyper(lr, rank, alpha),
        schedule=schedule,
        targets=tuple(t.strip() for t in target_modules.split(",") if t.strip()),
        validation=validation,
        merge=merge,
        memory_limit=parse_size(memory_limit) if memory_limit else None,
    )
    try:
        if search_trials:
            outcome = search(
                settings, request, SearchSpace(), search_trials, search_minutes * 60, console
            )
        else:
            outcome = finetune(settings, request, console)
    except DsdeployError as exc:
        raise fail(exc) from None
    print_outcome(outcome)


def print_outcome(outcome: Outcome) -> None:
    history = outcome.history
    planned = outcome.planned.total
    console.print(
        f"stored [bold]{outcome.name}[/] (serve it: `dsdeploy serve {outcome.name}`); best "
        f"validation loss {history['best_loss']:.3f} at step {history['best_step']}"
        f"{' (stopped early)' if history['stopped_early'] else ''}"
    )
    console.print(
        f"trained {outcome.train_seconds:.0f} s; peak RSS {outcome.peak_rss / 2**20:.0f} MiB, "
        f"planned {planned / 2**20:.0f} MiB; files in {outcome.folder}"
    )
    if outcome.merged:
        console.print(f"stored the merged model as {outcome.merged}")
