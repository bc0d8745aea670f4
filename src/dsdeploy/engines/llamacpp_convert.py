"""Turn a Hugging Face checkpoint folder into a GGUF file with llama.cpp's own converter.

The converter belongs to the same llama.cpp tree as the engine we build, so a GGUF it
writes is one that engine loads. It needs torch, transformers and sentencepiece
(``pip install 'dsdeploy[convert]'``); it puts the tree's own ``gguf-py`` first on its path.
It loads some tokenizers with ``trust_remote_code=True``, so a checkpoint that names custom
code (``auto_map``) is refused before it runs (``model.remote_code``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from dsdeploy.engines.llamacpp_install import source_tree
from dsdeploy.engines.llamacpp_tools import run_tool
from dsdeploy.errors import ConfigError
from dsdeploy.model.remote_code import refuse_custom_code
from dsdeploy.paths import Dirs

OUTTYPES = ("f32", "f16", "bf16", "q8_0")
"""What convert_hf_to_gguf.py writes itself; other types come from llama-quantize."""


def convert_to_gguf(dirs: Dirs, checkpoint: Path, out: Path, outtype: str = "f16") -> Path:
    """Convert ``checkpoint`` (config.json + safetensors) to ``out``; returns ``out``."""
    if outtype not in OUTTYPES:
        raise ConfigError(f"unknown converter type {outtype!r}; use one of {OUTTYPES}")
    if not (checkpoint / "config.json").exists():
        raise ConfigError(f"{checkpoint} has no config.json: not a Hugging Face checkpoint")
    refuse_custom_code(checkpoint)
    converter = source_tree(dirs) / "convert_hf_to_gguf.py"
    out.parent.mkdir(parents=True, exist_ok=True)
    run_tool(
        [sys.executable, converter, checkpoint, "--outfile", out, "--outtype", outtype],
        f"convert_hf_to_gguf.py on {checkpoint}",
    )
    return out
