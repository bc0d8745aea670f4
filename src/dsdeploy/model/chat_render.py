"""Chat templates, rendered only inside Jinja's immutable sandbox.

Chat templates are code that ships with downloaded weights. Rendering one in a plain Jinja
environment lets it reach Python internals (``''.__class__.__mro__``…); the sandbox refuses
attribute access to internals and, being immutable, any mutation of the objects passed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, NoReturn

from jinja2 import TemplateError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from dsdeploy.errors import StoreError


def raise_exception(message: str) -> NoReturn:
    """Templates call this (as in transformers) to reject a conversation they cannot format."""
    raise TemplateError(message)


def render(
    template: str,
    messages: list[dict[str, str]],
    bos: str = "",
    eos: str = "",
    options: Mapping[str, Any] | None = None,
) -> str:
    """The conversation as the model sees it, with the generation prompt; ``options`` are
    the template's own variables (``thinking``…)."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    try:
        return env.from_string(template).render(
            **(options or {}),
            messages=messages,
            add_generation_prompt=True,
            bos_token=bos,
            eos_token=eos,
        )
    except SecurityError as exc:
        raise StoreError(
            f"the chat template tried an unsafe operation and was stopped: {exc}"
        ) from None
    except TemplateError as exc:
        raise StoreError(f"the chat template does not render: {exc}") from None


def default_template(tokenizer_config: dict[str, Any]) -> str | None:
    """The chat template of a ``tokenizer_config.json``: its only one, or of named
    templates the default one."""
    template = tokenizer_config.get("chat_template")
    if isinstance(template, list):
        template = next((t["template"] for t in template if t.get("name") == "default"), None)
    return template if isinstance(template, str) else None
