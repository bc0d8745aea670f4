"""What a finished run leaves: the adapter as peft writes it (safetensors), the same adapter
as a GGUF LoRA written by llama.cpp's own ``convert_lora_to_gguf.py`` (the tree the engine
is built from, so the engine loads what it writes), and with ``--merge`` the base with the
adapter folded in, as a GGUF model like any other."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from dsdeploy.engines.llamacpp_convert import convert_to_gguf
from dsdeploy.engines.llamacpp_install import source_tree
from dsdeploy.engines.llamacpp_tools import run_tool
from dsdeploy.paths import Dirs

ADAPTER_GGUF = "adapter.gguf"


def load_best(model: Any, best: dict[str, Any]) -> None:
    import torch

    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in best.items():
            params[name].copy_(value)


def save_hf_base(model: Any, tokenizer: Any, folder: Path, weights: bool) -> Path:
    """The base in Hugging Face form: config and tokenizer (all the LoRA converter reads),
    and with ``weights`` the tensors too. transformers refuses ``save_pretrained`` on a model
    it dequantized from a GGUF, so the tensors go through safetensors directly (tied
    embeddings are written once)."""
    from safetensors.torch import save_model

    folder.mkdir(parents=True, exist_ok=True)
    config = model.config
    config.__dict__.pop("quantization_config", None)  # set by the GGUF loader; not true here
    config.architectures = [type(model).__name__]  # the converters pick their writer by it
    config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if weights:
        save_model(model, str(folder / "model.safetensors"))
    return folder


def adapter_to_gguf(dirs: Dirs, adapter: Path, base_config: Path, out: Path) -> Path:
    converter = source_tree(dirs) / "convert_lora_to_gguf.py"
    run_tool(
        [
            sys.executable,
            converter,
            adapter,
            "--base",
            base_config,
            "--outfile",
            out,
            "--outtype",
            "f16",
        ],
        f"convert_lora_to_gguf.py on {adapter.name}",
    )
    return out


def export_adapter(dirs: Dirs, peft_model: Any, tokenizer: Any, out: Path) -> Path:
    """``out``/adapter (safetensors + config) and ``out``/adapter.gguf; returns the GGUF."""
    adapter = out / "adapter"
    peft_model.save_pretrained(adapter)
    base = save_hf_base(peft_model.get_base_model(), tokenizer, out / "base-config", weights=False)
    return adapter_to_gguf(dirs, adapter, base, out / ADAPTER_GGUF)


def export_merged(dirs: Dirs, peft_model: Any, tokenizer: Any, out: Path) -> Path:
    """The base with the adapter folded into its weights, converted to an F16 GGUF."""
    merged = peft_model.merge_and_unload()
    folder = save_hf_base(merged, tokenizer, out / "merged-hf", weights=True)
    return convert_to_gguf(dirs, folder, out / "merged.gguf", "f16")
