"""How many bytes of weights one decode step reads, from a GGUF file's own tensor list.

Decoding a token multiplies the hidden state by every weight matrix once, so every tensor
is read in full — except the token-embedding table, from which only the one row of the
current token is gathered. llama.cpp reuses that table as the output projection when the
model ties them (no ``output.weight``: ``llama-model.cpp`` loads ``token_embd`` again as
the output, TENSOR_DUPLICATED), and then the whole table is read for the logits. In a
mixture-of-experts layer (``*_exps`` tensors) a token visits only ``expert_used_count`` of
``expert_count`` experts.
"""

from __future__ import annotations

from pathlib import Path

TOKEN_EMBEDDING = "token_embd.weight"
OUTPUT = "output.weight"


def bytes_read_per_token(gguf_path: Path) -> int:
    """Weight bytes read to decode one token of one sequence (KV cache not included)."""
    from gguf import GGUFReader

    reader = GGUFReader(gguf_path)
    architecture = str(reader.fields["general.architecture"].contents())
    experts = reader.fields.get(f"{architecture}.expert_count")
    experts_used = reader.fields.get(f"{architecture}.expert_used_count")
    names = {tensor.name for tensor in reader.tensors}
    total = 0
    for tensor in reader.tensors:
        size = int(tensor.n_bytes)
        if tensor.name == TOKEN_EMBEDDING and OUTPUT in names:
            size //= int(tensor.n_elements) // int(tensor.shape[0])  # one row of the table
        elif "_exps." in tensor.name and experts is not None and experts_used is not None:
            size = size * int(experts_used.contents()) // int(experts.contents())
        total += size
    return total
