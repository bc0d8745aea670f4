"""Which checkpoints this llama.cpp tree's converter turns into a GGUF its engine loads,
decided from config.json before the converter runs.

The converter names the architectures it knows with ``@ModelBase.register("…ForCausalLM")``
in its own sources; they are read from the tree the engine is built from, so the list is
never out of step with the converter. A few DeepSeek checkpoints pass that test yet fail
later (the converter raises, or llama-server cannot load the result); each is refused here
with the error it would hit, measured on tiny checkpoints of that shape (docs/design.md).
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

from dsdeploy.errors import ConversionRefused

REGISTER = re.compile(r"@ModelBase\.register\(([^)]*)\)")
QUOTED = re.compile(r"""["']([A-Za-z0-9_]+)["']""")
V2_LITE_LAYERS = (26, 27, 48)
"""llama.cpp takes a DeepSeek-V2 without q_lora_rank for "Lite" only at these depths
(``src/models/deepseek2.cpp``)."""


@cache
def converter_architectures(tree: Path) -> frozenset[str]:
    """Every ``architectures`` name the tree's convert_hf_to_gguf.py registers a class for."""
    sources = [tree / "convert_hf_to_gguf.py", *sorted((tree / "conversion").glob("*.py"))]
    names: set[str] = set()
    for source in sources:
        if source.is_file():
            for call in REGISTER.findall(source.read_text(errors="replace")):
                names.update(QUOTED.findall(call))
    return frozenset(names)


def architecture_of(config: dict[str, Any]) -> str:
    names = config.get("architectures")
    if not isinstance(names, list) or not names or not isinstance(names[0], str):
        model_type = config.get("model_type", "unknown")
        raise ConversionRefused(
            f"config.json names no architecture (model_type {model_type!r}, no "
            "`architectures` list), and llama.cpp's converter chooses its code by that name"
        )
    return names[0]


def check_convertible(
    config: dict[str, Any], tokenizer_config: dict[str, Any], known: frozenset[str]
) -> str:
    """The checkpoint's architecture name, or ConversionRefused with the reason."""
    architecture = architecture_of(config)
    if architecture not in known:
        raise ConversionRefused(
            f"llama.cpp's converter does not know {architecture} (model_type "
            f"{config.get('model_type')!r}); it converts {len(known)} architectures, "
            "e.g. DeepseekV3ForCausalLM, Qwen2ForCausalLM, LlamaForCausalLM"
        )
    reason = known_failure(architecture, config, tokenizer_config)
    if reason:
        raise ConversionRefused(f"{architecture}: {reason}")
    return architecture


def known_failure(
    architecture: str, config: dict[str, Any], tokenizer_config: dict[str, Any]
) -> str | None:
    """Why a checkpoint of a known architecture would still fail, or None."""
    lite = config.get("num_hidden_layers") in V2_LITE_LAYERS
    if architecture == "DeepseekV2ForCausalLM" and not config.get("q_lora_rank") and not lite:
        return (
            "no q_lora_rank and not 26, 27 or 48 layers, which llama.cpp reads as a full V2 "
            "and fails to load (`key not found in model: deepseek2.attention.q_lora_rank`); "
            "set q_lora_rank in config.json"
        )
    if architecture == "DeepseekV32ForCausalLM":
        if "scoring_func" not in config:
            return (
                "config.json has no scoring_func (transformers drops it when it saves V3.2), "
                "so llama-server cannot load the result (`key not found in model: "
                'deepseek32.expert_gating_func`); add "scoring_func": "sigmoid" as DeepSeek\'s '
                "config.json has it"
            )
        if tokenizer_config.get("add_bos_token") is not True:
            return (
                "tokenizer_config.json does not set add_bos_token to true, which the "
                "converter requires for V3.2 (`Change value of add_bos_token to true`)"
            )
    if architecture == "DeepseekV4ForCausalLM":
        missing = [k for k in ("compress_ratios", "num_hash_layers") if k not in config]
        if missing:
            return (
                f"config.json has no {' or '.join(missing)}: this is V4 as transformers "
                "saves it (layer_types, names under `model.`, unquantized experts), and the "
                "converter reads only DeepSeek's released layout (`KeyError: "
                "'num_hash_layers'`); convert DeepSeek's own V4 release"
            )
    return None
