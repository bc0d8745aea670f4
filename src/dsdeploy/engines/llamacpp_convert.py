"""Turn a Hugging Face checkpoint folder into a GGUF file with llama.cpp's own converter.

The converter belongs to the same llama.cpp tree as the engine we build, so a GGUF it
writes is one that engine loads. It needs torch, transformers and sentencepiece
(``pip install 'dsdeploy[convert]'``); it puts the tree's own ``gguf-py`` first on its path.
It loads some tokenizers with ``trust_remote_code=True``, so a checkpoint that names custom
code (``auto_map``) is refused before it runs (``model.remote_code``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from dsdeploy.engines.llamacpp_install import source_tree
from dsdeploy.engines.llamacpp_tools import run_tool
from dsdeploy.errors import ConfigError
from dsdeploy.model.remote_code import refuse_custom_code
from dsdeploy.paths import Dirs

OUTTYPES = ("f32", "f16", "bf16", "q8_0")
"""What convert_hf_to_gguf.py writes itself; other types come from llama-quantize."""

V32_CONVERT = """
import runpy, sys
tree, converter = sys.argv[1], sys.argv[1] + "/convert_hf_to_gguf.py"
sys.path[:0] = [tree + "/gguf-py", tree]
from conversion.deepseek import DeepseekV32Model
DeepseekV32Model.set_vocab = lambda self: self._set_vocab_gpt2()
sys.argv = [converter, *sys.argv[2:]]
runpy.run_path(converter, run_name="__main__")
"""
"""llama.cpp's converter, less its V3.2 check that ``tokenizer.add_bos_token`` is true:
transformers 5 drops that setting whenever a tokenizer.json is present, so the check fails on
DeepSeek's own tokenizer whatever tokenizer_config.json says (docs/design.md). The caller
has checked tokenizer_config.json itself (``llamacpp_convert_limits``)."""


def converter_command(tree: Path, checkpoint: Path) -> list[str | Path]:
    """The Python command line that runs the tree's converter on ``checkpoint``."""
    config = json.loads((checkpoint / "config.json").read_bytes())
    if config.get("architectures") == ["DeepseekV32ForCausalLM"]:
        return [sys.executable, "-c", V32_CONVERT, tree]
    return [sys.executable, tree / "convert_hf_to_gguf.py"]


def convert_to_gguf(
    dirs: Dirs,
    checkpoint: Path,
    out: Path,
    outtype: str = "f16",
    on_output: Callable[[str], None] | None = None,
) -> Path:
    """Convert ``checkpoint`` (config.json + safetensors) to ``out``; returns ``out``.
    ``on_output`` sees the converter's output as it comes (its progress bar included)."""
    if outtype not in OUTTYPES:
        raise ConfigError(f"unknown converter type {outtype!r}; use one of {OUTTYPES}")
    if not (checkpoint / "config.json").exists():
        raise ConfigError(f"{checkpoint} has no config.json: not a Hugging Face checkpoint")
    refuse_custom_code(checkpoint)
    command = converter_command(source_tree(dirs), checkpoint)
    out.parent.mkdir(parents=True, exist_ok=True)
    run_tool(
        [*command, checkpoint, "--outfile", out, "--outtype", outtype],
        f"convert_hf_to_gguf.py on {checkpoint}",
        on_output,
    )
    return out
