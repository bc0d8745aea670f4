"""Chats as token ids and labels: rendered with the model's own chat template (the one the
engine renders requests with), loss only on the final assistant answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dsdeploy.finetune.data import Conversation

IGNORED = -100
"""The label torch's cross-entropy skips: prompt tokens and padding teach nothing."""


@dataclass(frozen=True)
class Example:
    ids: tuple[int, ...]
    labels: tuple[int, ...]


def encode(conversation: Conversation, tokenizer: Any, seq_len: int) -> Example:
    """The prompt (every message but the last, then the assistant's turn opening) and the
    answer; a prompt longer than half of ``seq_len`` loses its oldest tokens, and the whole
    is cut at ``seq_len``, so the answer's start is always learned."""
    messages = [{"role": m.role, "content": m.content} for m in conversation]
    prompt_text = tokenizer.apply_chat_template(
        messages[:-1], tokenize=False, add_generation_prompt=True
    )
    full_text = tokenizer.apply_chat_template(messages, tokenize=False)
    prompt = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    full = tokenizer(full_text, add_special_tokens=False)["input_ids"]
    answer = full[len(prompt) :]
    prompt = prompt[-max(1, seq_len // 2) :]
    ids = (prompt + answer)[:seq_len]
    labels = ([IGNORED] * len(prompt) + answer)[:seq_len]
    return Example(tuple(ids), tuple(labels))


def collate(examples: list[Example], pad_id: int) -> dict[str, Any]:
    """Right-padded tensors for one batch; padding is masked out of attention and loss."""
    import torch

    width = max(len(e.ids) for e in examples)
    pad = [width - len(e.ids) for e in examples]
    return {
        "input_ids": torch.tensor(
            [list(e.ids) + [pad_id] * n for e, n in zip(examples, pad, strict=True)]
        ),
        "attention_mask": torch.tensor(
            [[1] * len(e.ids) + [0] * n for e, n in zip(examples, pad, strict=True)]
        ),
        "labels": torch.tensor(
            [list(e.labels) + [IGNORED] * n for e, n in zip(examples, pad, strict=True)]
        ),
    }
