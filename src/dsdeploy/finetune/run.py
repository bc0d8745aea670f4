"""One ``dsdeploy finetune`` run, start to end: check the data and the plan (seconds, before
any weight is loaded), train (resuming a killed run), export, store, report.

Everything is written under a temporary folder beside the final one and renamed into place
only when the adapter is stored, so a failed or killed run leaves no half-written output;
only its checkpoint stays, for the next run to resume from."""

from __future__ import annotations

import hashlib
import json
import resource
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console

from dsdeploy.errors import FinetuneError
from dsdeploy.finetune import base as base_model
from dsdeploy.finetune.curve import plot_losses
from dsdeploy.finetune.data import Conversation, read_conversations, split
from dsdeploy.finetune.encode import Example, encode
from dsdeploy.finetune.export import export_adapter, export_merged, load_best
from dsdeploy.finetune.plan import check_fits, describe
from dsdeploy.finetune.stored import store_model
from dsdeploy.finetune.train import Hyper, Schedule, Trained, train
from dsdeploy.planner.training import RunShape, TrainingMemory
from dsdeploy.progress import loss_progress
from dsdeploy.settings import Settings
from dsdeploy.store import Manifest, Store, check_model_name


@dataclass(frozen=True)
class Request:
    model: str
    data: Path
    name: str
    hyper: Hyper = Hyper()
    schedule: Schedule = Schedule()
    targets: tuple[str, ...] = ("q_proj", "v_proj")
    validation: float = 0.1
    merge: bool = False
    memory_limit: int | None = None
    """Bytes the run may use; None: what the machine has free now."""


@dataclass
class Outcome:
    name: str
    folder: Path
    planned: TrainingMemory
    peak_rss: int
    train_seconds: float
    history: dict[str, Any]
    resumed_from: int
    merged: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Prepared:
    """A run checked and planned, its base loaded and its data encoded."""

    request: Request
    manifest: Manifest
    model: Any
    tokenizer: Any
    train_set: list[Example]
    validation: list[Example]
    planned: TrainingMemory
    fingerprint: str


def fingerprint(request: Request, conversations: list[Conversation], base_sha: str) -> str:
    """What a checkpoint was trained on: resumed only by a run of the same data and options."""
    digest = hashlib.sha256()
    digest.update(base_sha.encode())
    digest.update(
        repr((request.hyper, request.schedule, request.targets, request.validation)).encode()
    )
    digest.update(repr(conversations).encode())
    return digest.hexdigest()[:16]


def prepare(settings: Settings, request: Request, console: Console) -> Prepared:
    check_model_name(request.name)
    conversations = read_conversations(request.data)  # first: a bad file fails in a second
    store = Store(settings.dirs.models)
    manifest = store.get(request.model)
    if store.manifest(request.name) is not None:
        raise FinetuneError(
            f"a model named {request.name} is already stored; pick another --name or remove it "
            f"(`dsdeploy models rm {request.name}`)"
        )
    train_chats, validation_chats = split(conversations, request.validation, request.schedule.seed)
    base_model.require_training_stack()
    checkpoint = base_model.base_checkpoint(store, manifest)
    config = base_model.load_config(checkpoint)
    shape = base_model.model_shape(config, request.targets, request.hyper.rank)
    available = request.memory_limit or psutil.virtual_memory().available
    schedule = request.schedule
    run = RunShape(schedule.batch, schedule.seq_len, schedule.gradient_checkpointing)
    planned = check_fits(shape, run, available)
    console.print(f"plan: {describe(planned)}; {available / 2**20:.0f} MiB free")
    model, tokenizer = base_model.load_model(checkpoint)
    seq = request.schedule.seq_len
    return Prepared(
        request,
        manifest,
        model,
        tokenizer,
        [encode(c, tokenizer, seq) for c in train_chats],
        [encode(c, tokenizer, seq) for c in validation_chats],
        planned,
        fingerprint(request, conversations, manifest.weights.sha256),
    )


def with_lora(model: Any, hyper: Hyper, request: Request) -> Any:
    from peft import LoraConfig, get_peft_model

    if request.schedule.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    config = LoraConfig(
        r=hyper.rank,
        lora_alpha=hyper.alpha,
        target_modules=list(request.targets),
        lora_dropout=0.0,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def work_dir(settings: Settings, prepared: Prepared) -> Path:
    """Where the checkpoint of this exact run lives (kept across kills, removed on success)."""
    root = settings.dirs.data / "finetune" / "work"
    folder = root / f"{prepared.request.name}-{prepared.fingerprint}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def train_prepared(
    prepared: Prepared, hyper: Hyper, console: Console, work: Path
) -> tuple[Any, Trained]:
    request = prepared.request
    peft_model = with_lora(prepared.model, hyper, request)
    pad = int(prepared.tokenizer.pad_token_id)
    with loss_progress(f"training {request.name}", console) as progress:
        trained = train(
            peft_model,
            prepared.train_set,
            prepared.validation,
            hyper,
            request.schedule,
            work,
            pad,
            progress,
        )
    load_best(peft_model, trained.best)
    return peft_model, trained


def finish(
    settings: Settings, prepared: Prepared, peft_model: Any, trained: Trained, extra: dict[str, Any]
) -> Outcome:
    """Export and store; the output folder appears whole or not at all."""
    request = prepared.request
    store = Store(settings.dirs.models)
    final = settings.dirs.data / "finetune" / request.name
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=final.parent, prefix=f".{request.name}-") as tmp:
        out = Path(tmp) / "out"
        out.mkdir()
        gguf = export_adapter(settings.dirs, peft_model, prepared.tokenizer, out)
        plot_losses(trained.history, out / "loss.png", f"{request.name} (LoRA on {request.model})")
        outcome = Outcome(
            request.name,
            final,
            prepared.planned,
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            trained.history.seconds,
            asdict(trained.history),
            trained.resumed_from,
            extra=extra,
        )
        (out / "report.json").write_text(json.dumps(report(outcome, request), indent=2))
        adapter = out / "adapter"
        files = [
            (gguf, "adapter.gguf"),
            (adapter / "adapter_model.safetensors", "adapter_model.safetensors"),
            (adapter / "adapter_config.json", "adapter_config.json"),
            (out / "loss.png", "loss.png"),
            (out / "report.json", "report.json"),
        ]
        merged = (
            export_merged(settings.dirs, peft_model, prepared.tokenizer, out)
            if request.merge
            else None
        )
        source = f"finetune:{request.model}"
        store_model(store, request.name, files, prepared.manifest.info, source, base=request.model)
        if merged is not None:
            outcome.merged = f"{request.name}-merged"
            store_model(
                store, outcome.merged, [(merged, "merged.gguf")], prepared.manifest.info, source
            )
        for scratch in ("base-config", "merged-hf", "merged.gguf"):
            path = out / scratch
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        if final.exists():
            shutil.rmtree(final)
        out.rename(final)
    return outcome


def report(outcome: Outcome, request: Request) -> dict[str, Any]:
    return {
        "name": outcome.name,
        "base": request.model,
        "hyper": asdict(request.hyper),
        "schedule": asdict(request.schedule),
        "targets": list(request.targets),
        "planned_bytes": asdict(outcome.planned) | {"total": outcome.planned.total},
        "peak_rss_bytes": outcome.peak_rss,
        "train_seconds": round(outcome.train_seconds, 1),
        "resumed_from_step": outcome.resumed_from,
        "history": outcome.history,
        **outcome.extra,
    }


def finetune(settings: Settings, request: Request, console: Console) -> Outcome:
    prepared = prepare(settings, request, console)
    work = work_dir(settings, prepared)
    began = time.monotonic()
    peft_model, trained = train_prepared(prepared, request.hyper, console, work)
    console.print(f"trained in {time.monotonic() - began:.0f} s")
    outcome = finish(settings, prepared, peft_model, trained, {})
    shutil.rmtree(work, ignore_errors=True)
    return outcome
