"""What a Hugging Face checkpoint folder says about itself: ``config.json`` for the shape,
the safetensors headers for the exact bytes of every tensor (no weights are read)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from dsdeploy.errors import StoreError
from dsdeploy.model.architecture import Architecture
from dsdeploy.modelfile import ModelLayout

EXPERT_MARK = ".mlp.experts."
"""Routed-expert tensors in DeepSeek checkpoints (shared experts are ``shared_experts``)."""


def architecture_from_config(config: dict[str, Any]) -> Architecture:
    """config.json keys to the planner's numbers; absent MLA/MoE keys mean none."""
    heads = int(config["num_attention_heads"])
    hidden = int(config["hidden_size"])

    def number(key: str) -> int:
        return int(config.get(key) or 0)

    return Architecture(
        n_layers=int(config["num_hidden_layers"]),
        hidden=hidden,
        n_heads=heads,
        n_kv_heads=int(config.get("num_key_value_heads") or heads),
        head_dim=int(config.get("head_dim") or hidden // heads),
        intermediate=int(config["intermediate_size"]),
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
        architecture = architecture_from_config(config)
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
