"""A model's chat template, rendered only inside Jinja's immutable sandbox.

Chat templates are code that ships with downloaded weights. Rendering one in a plain Jinja
environment lets it reach Python internals (``''.__class__.__mro__``…); the sandbox refuses
attribute access to internals and, being immutable, any mutation of the objects passed in.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import NoReturn

from jinja2 import TemplateError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from dsdeploy.errors import StoreError
from dsdeploy.store import Manifest, Store

SAMPLE_CONVERSATION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is 2 + 2?"},
    {"role": "assistant", "content": "4"},
    {"role": "user", "content": "And 3 + 3?"},
]


def raise_exception(message: str) -> NoReturn:
    """Templates call this (as in transformers) to reject a conversation they cannot format."""
    raise TemplateError(message)


def render(template: str, messages: list[dict[str, str]], bos: str = "", eos: str = "") -> str:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    try:
        return env.from_string(template).render(
            messages=messages, add_generation_prompt=True, bos_token=bos, eos_token=eos
        )
    except SecurityError as exc:
        raise StoreError(
            f"the chat template tried an unsafe operation and was stopped: {exc}"
        ) from None
    except TemplateError as exc:
        raise StoreError(f"the chat template does not render: {exc}") from None


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
    template = data.get("chat_template")
    if isinstance(template, list):  # named templates: take the default one
        template = next((t["template"] for t in template if t.get("name") == "default"), None)
    if not isinstance(template, str):
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
