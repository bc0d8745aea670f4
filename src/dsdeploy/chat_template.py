"""A stored model's chat template, found in its files and shown on a sample conversation
(rendered in the sandbox of ``model.chat_render``)."""

from __future__ import annotations

import json
from pathlib import Path

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
    return template, token_text(data, "bos_token"), token_text(data, "eos_token")


def token_text(config: dict[str, object], key: str) -> str:
    value = config.get(key) or ""
    return str(value["content"] if isinstance(value, dict) else value)


def check_folder_templates(folder: Path, tokenizer_config: dict[str, object]) -> None:
    """Render every chat template a checkpoint folder carries (``tokenizer_config.json``'s,
    ``chat_template.jinja``) in the sandbox, before a converter copies it into a GGUF that
    engines render; a template that tries an unsafe operation raises StoreError."""
    templates = [default_template(tokenizer_config), None]
    if (folder / "chat_template.jinja").is_file():
        templates[1] = (folder / "chat_template.jinja").read_text(errors="replace")
    bos, eos = token_text(tokenizer_config, "bos_token"), token_text(tokenizer_config, "eos_token")
    for template in templates:
        if template is not None:
            render(template, SAMPLE_CONVERSATION, bos, eos)


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
