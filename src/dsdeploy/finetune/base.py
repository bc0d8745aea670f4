"""The base model as transformers sees it: a stored GGUF (dequantized to fp32 by
transformers' own GGUF loader) or a stored safetensors checkpoint folder.

Its shape is read first on torch's meta device (no weights loaded), so that a model
without the target modules, or a run that would not fit, is refused in seconds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsdeploy.errors import FinetuneError
from dsdeploy.planner.training import ModelShape
from dsdeploy.store import Manifest, Store

INSTALL_HINT = (
    "fine-tuning needs torch, transformers, peft and gguf: pip install 'dsdeploy[finetune]'"
)


@dataclass(frozen=True)
class BaseCheckpoint:
    """Where transformers finds the model: a folder, and the GGUF file in it if any."""

    name: str
    folder: Path
    gguf_file: str | None

    def load_kwargs(self) -> dict[str, Any]:
        return {"gguf_file": self.gguf_file} if self.gguf_file else {}


def base_checkpoint(store: Store, manifest: Manifest) -> BaseCheckpoint:
    if manifest.base is not None:
        raise FinetuneError(
            f"{manifest.name} is an adapter of {manifest.base}: fine-tune {manifest.base} instead"
        )
    if manifest.weights.encrypted is not None:
        raise FinetuneError(
            f"{manifest.name} is encrypted at rest; decrypt it first (`dsdeploy decrypt "
            f"{manifest.name}`) to fine-tune it"
        )
    entry = store.materialize(manifest).entry
    if manifest.format == "gguf":
        return BaseCheckpoint(manifest.name, entry.parent, entry.name)
    folder = entry if entry.is_dir() else entry.parent
    return BaseCheckpoint(manifest.name, folder, None)


def require_training_stack() -> None:
    try:
        import gguf  # noqa: F401
        import peft  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        raise FinetuneError(INSTALL_HINT) from None


def load_config(base: BaseCheckpoint) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(base.folder, **base.load_kwargs())
    except (ValueError, OSError, KeyError) as exc:
        raise FinetuneError(
            f"transformers cannot read {base.name}'s configuration ({exc}); fine-tune a "
            "safetensors checkpoint or a GGUF of an architecture transformers knows"
        ) from None


def model_shape(config: Any, targets: tuple[str, ...], rank: int) -> ModelShape:
    """Parameter counts from an empty (meta-device) model; ``FinetuneError`` when none of
    its linear layers is named like a target module."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]
    lora = 0
    found: set[str] = set()
    for name, module in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if leaf in targets and isinstance(module, torch.nn.Linear):
            found.add(leaf)
            lora += rank * (module.in_features + module.out_features)
    missing = sorted(set(targets) - found)
    if missing:
        linear = sorted(
            {
                n.rsplit(".", 1)[-1]
                for n, m in model.named_modules()
                if isinstance(m, torch.nn.Linear)
            }
        )
        raise FinetuneError(
            f"the model has no {', '.join(missing)} layers to adapt; choose --target-modules "
            f"among its linear layers: {', '.join(linear)}"
        )
    heads = int(getattr(config, "num_attention_heads", 1))
    return ModelShape(
        params=sum(p.numel() for p in model.parameters()),
        lora_params=lora,
        hidden=int(config.hidden_size),
        layers=int(config.num_hidden_layers),
        heads=heads,
        vocab=int(config.vocab_size),
    )


def load_model(base: BaseCheckpoint) -> tuple[Any, Any]:
    """The model (fp32, for the CPU) and its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = base.load_kwargs()
    tokenizer = AutoTokenizer.from_pretrained(base.folder, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(base.folder, dtype=torch.float32, **kwargs)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        raise FinetuneError(
            f"{base.name} has no chat template: the training chats cannot be rendered as "
            "the engine will render them"
        )
    return model, tokenizer
