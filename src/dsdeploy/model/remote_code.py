"""Checkpoints that ask to run their own Python: refused, never honoured.

A Hugging Face checkpoint names custom classes in ``auto_map`` (in ``config.json``,
``tokenizer_config.json`` …); transformers imports those ``.py`` files from the checkpoint
when it is told ``trust_remote_code=True``. dsdeploy itself never passes True, but
llama.cpp's converter does (``AutoTokenizer.from_pretrained(..., trust_remote_code=True)``
for DeepSeek, MiniMax, Dream and others), so a checkpoint with ``auto_map`` is refused before
the converter runs: a warning would not stop the code from running.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from dsdeploy.errors import ModelFileRejected

CONFIG_FILES = (
    "config.json",
    "tokenizer_config.json",
    "processor_config.json",
    "preprocessor_config.json",
)


def custom_code(files: Mapping[str, Path]) -> dict[str, list[str]]:
    """Config file name -> the classes its ``auto_map`` names, for every file that has one."""
    found = {}
    for name in CONFIG_FILES:
        path = files.get(name)
        if path is None or not path.is_file():
            continue
        try:
            config = json.loads(path.read_bytes())
        except (UnicodeDecodeError, ValueError):
            raise ModelFileRejected(name, "is not valid JSON") from None
        auto_map = config.get("auto_map") if isinstance(config, dict) else None
        if auto_map:
            found[name] = sorted(auto_map) if isinstance(auto_map, dict) else [str(auto_map)]
    return found


def describe(found: dict[str, list[str]]) -> str:
    return "; ".join(f"{name}'s auto_map names {', '.join(names)}" for name, names in found.items())


def refuse_custom_code(checkpoint: Path) -> None:
    """Before a tool that loads the checkpoint with transformers runs on it."""
    found = custom_code({name: checkpoint / name for name in CONFIG_FILES})
    if found:
        raise ModelFileRejected(
            checkpoint.name,
            f"{describe(found)}, custom Python that llama.cpp's converter would run "
            "(it loads tokenizers with trust_remote_code=True)",
            advice="remove the auto_map entries if transformers has the model_type built in "
            "(it has deepseek_v2, deepseek_v3), or convert the checkpoint elsewhere",
        )
