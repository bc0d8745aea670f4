"""Whether the transformers engine can serve a checkpoint folder, and how it batches it:
decided from the folder's files before any engine starts, so a checkpoint it cannot serve
is refused in one line instead of in an engine log.

Continuous batching in transformers 5.23 keeps K and V of every layer in one paged tensor
with a single head size, for full and sliding-window attention only
(``generation/continuous_batching/cache.py``: ``ATTN_TYPE_TO_ALLOCATOR``,
``find_head_dim``). DeepSeek's MLA (keys of ``qk_nope + qk_rope``, values of ``v_head_dim``),
V3.2's indexed attention and V4's compressed attention do not fit it; those are served by
``generate()``, one request at a time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from dsdeploy.errors import ConfigError, StoreError
from dsdeploy.model.chat_render import default_template, render

Batching = Literal["continuous", "sequential"]
PAGED_LAYER_TYPES = ("full_attention", "sliding_attention")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")
PROBE = [{"role": "user", "content": "Hello"}]


@dataclass(frozen=True)
class Servable:
    model_type: str
    batching: Batching
    why: str
    """Why it batches that way (shown when serving starts)."""


def batching_for(config: dict[str, Any]) -> tuple[Batching, str]:
    qk = int(config.get("qk_nope_head_dim") or 0) + int(config.get("qk_rope_head_dim") or 0)
    v = int(config.get("v_head_dim") or 0)
    if config.get("kv_lora_rank") and qk != v:
        return "sequential", (
            f"MLA keys ({qk}) and values ({v}) differ in size, and transformers' paged "
            "cache holds one head size"
        )
    odd = sorted({t for t in config.get("layer_types") or () if t not in PAGED_LAYER_TYPES})
    if odd:
        return "sequential", f"transformers' paged cache has no {', '.join(odd)} layers"
    return "continuous", "transformers' continuous batching with a paged KV cache"


def causal_lm_types() -> frozenset[str]:
    try:
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    except ImportError:
        raise ConfigError(
            "the transformers engine needs torch and transformers: pip install torch "
            "transformers (or serve a GGUF with --engine llama.cpp)"
        ) from None
    return frozenset(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path.name} of the checkpoint cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path.name} of the checkpoint is not a JSON object")
    return data


def chat_template(folder: Path, name: str) -> str:
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text()
    settings = folder / "tokenizer_config.json"
    template = default_template(read_json(settings)) if settings.is_file() else None
    if template is None:
        raise ConfigError(
            f"{name} has no chat template (tokenizer_config.json or "
            "chat_template.jinja): the transformers engine answers chat completions only"
        )
    return template


def check_checkpoint(folder: Path, name: str | None = None) -> Servable:
    """What the engine will do with ``folder`` (the model ``name``, by default the folder's);
    ``ConfigError`` saying what is missing or unsupported otherwise."""
    name = name or folder.name
    if not (folder / "config.json").is_file():
        raise ConfigError(f"{name} has no config.json: it is not a transformers checkpoint")
    config = read_json(folder / "config.json")
    model_type = str(config.get("model_type", ""))
    if model_type not in causal_lm_types():
        raise ConfigError(
            f"transformers has no text-generation model for architecture {model_type or '?'!r} "
            f"of {name}; serve a GGUF of it with --engine llama.cpp"
        )
    if model_type == "deepseek_v4" and "compress_ratios" in config:
        raise ConfigError(
            f"{name} is in DeepSeek's released V4 layout (FP4 experts, "
            "compress_ratios), which transformers does not load; serve a GGUF of it with "
            "--engine llama.cpp"
        )
    if not any(folder.glob("*.safetensors")):
        raise ConfigError(f"{name} has no .safetensors weights: pull them again")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ConfigError(f"{name} has no tokenizer ({' or '.join(TOKENIZER_FILES)})")
    try:
        render(chat_template(folder, name), PROBE)
    except StoreError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    batching, why = batching_for(config)
    return Servable(model_type, batching, why)
