"""A stored model's chat template, found in its files and shown on a sample conversation
(rendered in the sandbox of ``model.chat_render``)."""

from __future__ import annotations

import json

from dsdeploy.model.chat_render import default_template, render
from dsdeploy.store import Manifest, Store

SAMPLE_CONVERSATION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is 2 + 2?"},
    {"role": "assistant", "content": "4"},
    {"role": "user", "content": "And 3 + 3?"},
]


def gguf_template(path: str) -> tuple[str, str, str] | None:
    """(template, bos, eos) from a GGUF header, or None when it has no template."""
    from gguf import GGUFReader

    fields = GGUFReader(path).fields
    if "tokenizer.chat_template" not in fields:
        return None
    tokens = fields["tokenizer.ggml.tokens"].contents()

    def token(key: str) -> str:
        return str(tokens[int(fields[key].contents())]) if key in fields else ""

    template = str(fields["tokenizer.chat_template"].contents())
    return template, token("tokenizer.ggml.bos_token_id"), token("tokenizer.ggml.eos_token_id")


def checkpoint_template(store: Store, manifest: Manifest) -> tuple[str, str, str] | None:
    """(template, bos, eos) from a checkpoint's ``tokenizer_config.json``, if it has one."""
    config = next((f for f in manifest.files if f.path == "tokenizer_config.json"), None)
    if config is None:
        return None
    data = json.loads(store.blob_path(config.sha256).read_bytes())
    template = default_template(data)
    if template is None:
        return None

    def token(key: str) -> str:
        value = data.get(key) or ""
        return str(value["content"] if isinstance(value, dict) else value)

    return template, token("bos_token"), token("eos_token")


def preview(store: Store, manifest: Manifest) -> str | None:
    """The sample conversation as the model will see it, or None if it has no template."""
    if manifest.format == "gguf":
        found = gguf_template(str(store.weights_path(manifest)))
    else:
        found = checkpoint_template(store, manifest)
    if found is None:
        return None
    template, bos, eos = found
    return render(template, SAMPLE_CONVERSATION, bos, eos)
