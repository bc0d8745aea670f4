"""What a Hugging Face checkpoint folder says about itself: ``config.json`` for the shape,
the safetensors headers for the exact bytes of every tensor (no weights are read)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from dsdeploy.errors import StoreError, UnsizedArchitecture
from dsdeploy.model.architecture import Architecture
from dsdeploy.modelfile import ModelLayout

EXPERT_MARK = ".mlp.experts."
"""Routed-expert tensors in DeepSeek checkpoints (shared experts are ``shared_experts``)."""
SPARSE_MODEL_TYPES = {"deepseek_v32", "deepseek_v4"}
UNSIZED_KEYS = (
    "index_n_heads",
    "compress_ratios",
    "compress_rates",
    "hc_mult",
    "layers_block_type",
)
"""config.json keys of cache layouts the planner models only for the types above."""
V4_LAYER_RATIOS = {"sliding_attention": 0}
"""transformers writes V4's per-layer ratios as ``layer_types`` + ``compress_rates``."""


def compress_ratios(config: dict[str, Any]) -> tuple[int, ...]:
    """DeepSeek-V4's per-layer ratios from the original ``compress_ratios`` list or from
    the ``layer_types`` and ``compress_rates`` transformers saves instead."""
    if "compress_ratios" in config:
        return tuple(int(r) for r in config["compress_ratios"])
    rates = V4_LAYER_RATIOS | dict(config.get("compress_rates") or {})
    return tuple(int(rates[kind]) for kind in config.get("layer_types") or ())


def architecture_from_config(config: dict[str, Any], name: str = "config.json") -> Architecture:
    """config.json keys to the planner's numbers; absent MLA/MoE/indexer keys mean none."""
    model_type = str(config.get("model_type", ""))
    marks = [key for key in UNSIZED_KEYS if key in config]
    if marks and model_type not in SPARSE_MODEL_TYPES:
        raise UnsizedArchitecture(name, model_type or "unnamed", marks)
    heads = int(config["num_attention_heads"])
    hidden = int(config["hidden_size"])
    ratios = compress_ratios(config) if model_type == "deepseek_v4" else ()

    def number(key: str) -> int:
        return int(config.get(key) or 0)

    return Architecture(
        n_layers=int(config["num_hidden_layers"]),
        hidden=hidden,
        n_heads=heads,
        n_kv_heads=int(config.get("num_key_value_heads") or heads),
        head_dim=int(config.get("head_dim") or hidden // heads),
        intermediate=int(config.get("intermediate_size") or config["moe_intermediate_size"]),
        vocab=int(config["vocab_size"]),
        max_positions=int(config["max_position_embeddings"]),
        kv_lora_rank=number("kv_lora_rank"),
        q_lora_rank=number("q_lora_rank"),
        qk_rope_head_dim=number("qk_rope_head_dim"),
        qk_nope_head_dim=number("qk_nope_head_dim"),
        v_head_dim=number("v_head_dim"),
        n_routed_experts=number("n_routed_experts"),
        n_shared_experts=number("n_shared_experts"),
        experts_per_token=number("num_experts_per_tok"),
        moe_intermediate=number("moe_intermediate_size"),
        first_k_dense_replace=number("first_k_dense_replace"),
        tied_embeddings=bool(config.get("tie_word_embeddings", False)),
        index_n_heads=number("index_n_heads"),
        index_head_dim=number("index_head_dim"),
        index_topk=number("index_topk"),
        sliding_window=number("sliding_window") if ratios else 0,
        compress_ratios=ratios,
        o_groups=number("o_groups"),
        o_lora_rank=number("o_lora_rank"),
        hc_mult=number("hc_mult"),
        nextn_layers=number("num_nextn_predict_layers"),
    )


def safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a .safetensors file: 8-byte little-endian length, then JSON."""
    with path.open("rb") as file:
        (length,) = struct.unpack("<Q", file.read(8))
        header: dict[str, Any] = json.loads(file.read(length))
    header.pop("__metadata__", None)
    return header


def read_hf_layout(folder: Path) -> ModelLayout:
    """Shape from config.json, bytes from every safetensors file the folder holds."""
    try:
        config = json.loads((folder / "config.json").read_text())
        architecture = architecture_from_config(config, str(folder))
    except (OSError, KeyError, ValueError) as exc:
        raise StoreError(f"{folder} has no usable config.json: {exc}") from None
    files = sorted(folder.glob("*.safetensors"))
    index = folder / "model.safetensors.index.json"
    if not files and index.exists():  # shards not fetched yet: the index knows their size
        total = int(json.loads(index.read_text())["metadata"]["total_size"])
        return ModelLayout(architecture, total, 0, {})
    if not files:
        raise StoreError(f"{folder} has no .safetensors files and no safetensors index")
    by_type: dict[str, int] = {}
    experts = 0
    for file in files:
        for name, tensor in safetensors_header(file).items():
            start, end = tensor["data_offsets"]
            by_type[tensor["dtype"]] = by_type.get(tensor["dtype"], 0) + end - start
            experts += end - start if EXPERT_MARK in name else 0
    return ModelLayout(
        architecture=architecture,
        weight_bytes=sum(by_type.values()),
        expert_bytes=experts,
        tensor_types=by_type,
    )
