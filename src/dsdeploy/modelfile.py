"""What a model file says about itself, read once at pull time and kept in the manifest."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from dsdeploy.errors import StoreError, UnsizedArchitecture
from dsdeploy.gguf_parts import part_name, split_part
from dsdeploy.model.architecture import Architecture
from dsdeploy.model.chat_render import default_template
from dsdeploy.model.thinking import Thinking, template_thinking

if TYPE_CHECKING:
    from gguf import GGUFReader


class ModelInfo(BaseModel):
    architecture: str
    context_length: int = Field(ge=1, description="Context the model was trained for, tokens.")
    embedding_model: bool = Field(description="True when the model pools to embeddings.")
    thinking: Thinking | None = Field(
        None, description="How its chat template starts a think block; None: it has none."
    )


def read_gguf_info(path: Path) -> ModelInfo:
    """Header metadata through llama.cpp's own ``gguf`` reader (a few seconds: it walks
    the whole vocabulary, which is why the result is stored, not re-read at serve time)."""
    from gguf import GGUFReader

    try:
        fields = GGUFReader(path).fields
        architecture = str(fields["general.architecture"].contents())
        context = int(fields[f"{architecture}.context_length"].contents())
    except (KeyError, ValueError) as exc:
        raise StoreError(f"{path.name} is not a usable GGUF model file: {exc}") from None
    template = fields.get("tokenizer.chat_template")
    return ModelInfo(
        architecture=architecture,
        context_length=context,
        embedding_model=f"{architecture}.pooling_type" in fields,
        thinking=template_thinking(str(template.contents())) if template is not None else None,
    )


@dataclass(frozen=True)
class ModelLayout:
    """What the planner needs from a model file: its shape and the exact bytes of its tensors."""

    architecture: Architecture
    weight_bytes: int
    expert_bytes: int
    """Bytes of routed-expert tensors (``ffn_*_exps``): what ``--n-cpu-moe`` keeps in RAM."""
    tensor_types: dict[str, int]
    """Bytes per tensor type (Q4_K, Q6_K, F32, BF16…), the file's real quantization mix."""


def gguf_part_readers(first: Path) -> list[GGUFReader]:
    """A GGUF model's files, from the one an engine is given: itself, or every part of a split
    one, found next to it by name as llama.cpp finds them (the first part's ``split.count``
    says how many there are)."""
    from gguf import GGUFReader

    reader = GGUFReader(first)
    count_field = reader.fields.get("split.count")
    count = int(count_field.contents()) if count_field is not None else 1
    if count == 1:
        return [reader]
    part = split_part(first.name)
    if part is None or (part.number, part.count) != (1, count):
        raise StoreError(
            f"{first.name} is part 1 of a GGUF split in {count}, but is not named "
            f"like one (…-00001-of-{count:05d}.gguf), so its other parts cannot be found"
        )
    others = [first.with_name(part_name(part.prefix, n, count)) for n in range(2, count + 1)]
    missing = [path.name for path in others if not path.is_file()]
    if missing:
        raise StoreError(
            f"{first.name}: parts of its split missing next to it: {', '.join(missing)}"
        )
    return [reader, *(GGUFReader(path) for path in others)]


SPARSE_ARCHITECTURES = {"deepseek32", "deepseek4"}
"""GGUF architectures whose indexer and compressed caches the planner sizes."""
UNSIZED_MARKS = ("ssm.", "attention.indexer.", "attention.compress_ratios", "hyper_connection.")
"""Header keys of cache layouts the planner does not model (recurrent state, other sparse
attention): a model carrying one is refused rather than sized as plain attention."""


def unsized_marks(arch: str, keys: list[str]) -> list[str]:
    if arch in SPARSE_ARCHITECTURES:
        return []
    marks = {
        mark.rstrip(".")
        for key in keys
        for mark in UNSIZED_MARKS
        if key.startswith(f"{arch}.{mark}")
    }
    return sorted(marks)


def mtp_prefixes(fields: dict[str, Any], arch: str) -> tuple[str, ...]:
    """Tensor-name prefixes of the multi-token-prediction layers a GGUF carries past its
    trunk (V3.2's converter keeps one): llama.cpp loads them only to draft with."""
    nextn = fields.get(f"{arch}.nextn_predict_layers")
    if nextn is None:
        return ()
    blocks = int(fields[f"{arch}.block_count"].contents())
    return tuple(f"blk.{layer}." for layer in range(blocks - int(nextn.contents()), blocks))


def read_gguf_layout(path: Path) -> ModelLayout:
    """Architecture numbers from the header and the exact size of every tensor (of all the
    parts, for a split GGUF)."""
    try:
        readers = gguf_part_readers(path)
        fields = readers[0].fields
        tensors = [tensor for reader in readers for tensor in reader.tensors]
        arch = str(fields["general.architecture"].contents())
        marks = unsized_marks(arch, list(fields))
        if marks:
            raise UnsizedArchitecture(path.name, arch, marks)

        def number(key: str, default: int = 0) -> int:
            field = fields.get(f"{arch}.{key}")
            return int(field.contents()) if field is not None else default

        ratios = fields.get(f"{arch}.attention.compress_ratios")
        nextn = number("nextn_predict_layers")
        trunk = number("block_count") - nextn
        heads = number("attention.head_count")
        hidden = number("embedding_length")
        mla_rank = number("attention.kv_lora_rank")
        rope = number("rope.dimension_count")
        architecture = Architecture(
            n_layers=trunk,
            hidden=hidden,
            n_heads=heads,
            n_kv_heads=number("attention.head_count_kv", heads),
            head_dim=number("attention.key_length", hidden // heads),
            intermediate=number("feed_forward_length"),
            vocab=number("vocab_size") or len(fields["tokenizer.ggml.tokens"].data),
            max_positions=number("context_length"),
            kv_lora_rank=mla_rank,
            q_lora_rank=number("attention.q_lora_rank"),
            qk_rope_head_dim=rope if mla_rank else 0,
            qk_nope_head_dim=number("attention.key_length_mla") - rope if mla_rank else 0,
            v_head_dim=number("attention.value_length_mla") if mla_rank else 0,
            n_routed_experts=number("expert_count"),
            n_shared_experts=number("expert_shared_count"),
            experts_per_token=number("expert_used_count"),
            moe_intermediate=number("expert_feed_forward_length"),
            first_k_dense_replace=number("leading_dense_block_count"),
            tied_embeddings=not any(t.name == "output.weight" for t in tensors),
            index_n_heads=number("attention.indexer.head_count"),
            index_head_dim=number("attention.indexer.key_length"),
            index_topk=number("attention.indexer.top_k"),
            sliding_window=number("attention.sliding_window") if ratios is not None else 0,
            compress_ratios=tuple(int(r) for r in ratios.contents()) if ratios is not None else (),
            o_groups=number("attention.output_group_count"),
            o_lora_rank=number("attention.output_lora_rank"),
            hc_mult=number("hyper_connection.count"),
            nextn_layers=nextn,
        )
    except (KeyError, ValueError) as exc:
        raise StoreError(f"{path.name} is not a usable GGUF model file: {exc}") from None
    mtp = mtp_prefixes(fields, arch)
    loaded = [t for t in tensors if not t.name.startswith(mtp)]
    by_type: dict[str, int] = {}
    for tensor in loaded:
        by_type[tensor.tensor_type.name] = by_type.get(tensor.tensor_type.name, 0) + int(
            tensor.n_bytes
        )
    return ModelLayout(
        architecture=architecture,
        weight_bytes=sum(by_type.values()),
        expert_bytes=sum(int(t.n_bytes) for t in loaded if "_exps." in t.name),
        tensor_types=by_type,
    )


def read_config_info(path: Path, tokenizer_config: Path | None = None) -> ModelInfo:
    """The same facts from a Hugging Face checkpoint's ``config.json`` (and the chat template
    in its ``tokenizer_config.json``, if it has one)."""
    try:
        config = json.loads(path.read_bytes())
        architecture = str(config.get("model_type") or config["architectures"][0])
        context = int(config.get("max_position_embeddings") or config["n_positions"])
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise StoreError(f"config.json does not describe a usable model: {exc}") from None
    return ModelInfo(
        architecture=architecture,
        context_length=context,
        embedding_model=not any(a.endswith("LM") for a in config.get("architectures", [])),
        thinking=config_thinking(tokenizer_config),
    )


def config_thinking(tokenizer_config: Path | None) -> Thinking | None:
    if tokenizer_config is None:
        return None
    try:
        data = json.loads(tokenizer_config.read_bytes())
        template = default_template(data) if isinstance(data, dict) else None
    except (OSError, ValueError, TypeError, KeyError, AttributeError):  # a malformed config
        return None
    return template_thinking(template) if template is not None else None


TOKEN_EMBEDDING = "token_embd.weight"
OUTPUT = "output.weight"  # absent when the output projection is tied to the embedding


def gguf_bytes_read_per_token(gguf_path: Path) -> int:
    """Weight bytes read to decode one token of one sequence (KV cache not included): the
    exact counterpart of ``planner.memory.bytes_read_per_token`` for a file at hand.

    Decoding a token multiplies the hidden state by every weight matrix once, so every tensor
    is read in full — except the token-embedding table, from which only the one row of the
    current token is gathered. llama.cpp reuses that table as the output projection when the
    model ties them (no ``output.weight``: ``llama-model.cpp`` loads ``token_embd`` again as
    the output, TENSOR_DUPLICATED), and then the whole table is read for the logits. In a
    mixture-of-experts layer (``*_exps`` tensors) a token visits only ``expert_used_count`` of
    ``expert_count`` experts. A split GGUF is given by its first part; all parts count.
    """
    readers = gguf_part_readers(gguf_path)
    fields = readers[0].fields
    tensors = [tensor for reader in readers for tensor in reader.tensors]
    architecture = str(fields["general.architecture"].contents())
    experts = fields.get(f"{architecture}.expert_count")
    experts_used = fields.get(f"{architecture}.expert_used_count")
    names = {tensor.name for tensor in tensors}
    mtp = mtp_prefixes(fields, architecture)
    total = 0
    for tensor in tensors:
        if tensor.name.startswith(mtp):
            continue
        size = int(tensor.n_bytes)
        if tensor.name == TOKEN_EMBEDDING and OUTPUT in names:
            size //= int(tensor.n_elements) // int(tensor.shape[0])  # one row of the table
        elif "_exps." in tensor.name and experts is not None and experts_used is not None:
            size = size * int(experts_used.contents()) // int(experts.contents())
        total += size
    return total
