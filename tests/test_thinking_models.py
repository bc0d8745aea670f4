"""A reasoning model is known by its chat template (DeepSeek's, as llama.cpp's tree carries
them) or, without one, by its name; and a checkpoint's template is read at pull time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsdeploy.engines.llamacpp_install import source_tree
from dsdeploy.model.thinking import name_thinking, template_thinking
from dsdeploy.modelfile import read_config_info
from dsdeploy.settings import Settings
from tests.hub_models import DEEPSEEK_TEMPLATE

FIRST_R1_TEMPLATE = DEEPSEEK_TEMPLATE.replace(
    "{{ m['content'] }}<｜end▁of▁sentence｜>",
    "{{ m['content'].split('</think>')[-1] }}<｜end▁of▁sentence｜>",
)
"""R1 as first published: earlier answers lose their thinking, the prompt opens nothing."""


def template(name: str) -> str:
    return (source_tree(Settings().dirs) / "models" / "templates" / name).read_text()


@pytest.mark.parametrize(
    ("name", "thinking"),
    [
        ("llama-cpp-deepseek-r1.jinja", "always"),
        ("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", "on_request"),
        ("deepseek-ai-DeepSeek-V3.1.jinja", "on_request"),
        ("Qwen-Qwen2.5-7B-Instruct.jinja", None),
        ("meta-llama-Llama-3.1-8B-Instruct.jinja", None),
    ],
)
def test_deepseek_templates_say_how_thinking_starts(name: str, thinking: str | None) -> None:
    assert template_thinking(template(name)) == thinking


def test_a_template_that_opens_nothing_leaves_the_tag_to_the_model() -> None:
    assert template_thinking(FIRST_R1_TEMPLATE) == "model"
    assert template_thinking(DEEPSEEK_TEMPLATE) is None


@pytest.mark.parametrize(
    ("name", "thinking"),
    [
        ("deepseek-r1", "always"),
        ("deepseek-r1-distill-qwen-1.5b", "always"),
        ("DeepSeek-R1-0528", "always"),
        ("deepseek-reasoner", "always"),
        ("deepseek-v3.1", "on_request"),
        ("deepseek-v3.2-exp", "on_request"),
        ("deepseek-v4-flash", "on_request"),
        ("deepseek-v3", None),
        ("deepseek-v3-0324", None),
        ("smollm2", None),
        ("qwen2.5-coder-r10", None),
    ],
)
def test_without_a_template_the_name_tells(name: str, thinking: str | None) -> None:
    assert name_thinking(name) == thinking


def test_a_checkpoints_template_is_read_with_its_config(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model_type": "qwen2", "max_position_embeddings": 4096}))
    tokenizer = tmp_path / "tokenizer_config.json"
    tokenizer.write_text(json.dumps({"chat_template": template("llama-cpp-deepseek-r1.jinja")}))
    assert read_config_info(config, tokenizer).thinking == "always"
    assert read_config_info(config).thinking is None
