"""A tiny random-weight Llama with SmolLM2's real tokenizer and chat template, as a GGUF:
the default model's architecture and vocabulary at a size that trains in seconds, so the
fine-tuning pipeline (train, convert, store, serve) runs whole in a test."""

from __future__ import annotations

from pathlib import Path

from dsdeploy.engines.llamacpp_convert import convert_to_gguf
from dsdeploy.paths import Dirs

TINY = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": True,
}


def tiny_llama_gguf(smollm2: Path, dirs: Dirs, workdir: Path) -> Path:
    """``workdir``/tiny.gguf (F32), from the tokenizer inside the SmolLM2 GGUF ``smollm2``."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(smollm2.parent, gguf_file=smollm2.name)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **TINY,
    )
    folder = workdir / "tiny-hf"
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return convert_to_gguf(dirs, folder, workdir / "tiny.gguf", "f32")
