"""Turn a Hugging Face checkpoint folder into a GGUF file with llama.cpp's own converter.

The converter belongs to the same llama.cpp tree as the engine we build, so a GGUF it
writes is one that engine loads. It needs torch, transformers and sentencepiece
(``pip install 'dsdeploy[convert]'``); it puts the tree's own ``gguf-py`` first on its path.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dsdeploy.engines.llamacpp_install import source_tree
from dsdeploy.errors import EngineError
from dsdeploy.paths import Dirs

OUTTYPES = ("f32", "f16", "bf16", "q8_0")
"""What convert_hf_to_gguf.py writes itself; other types come from llama-quantize."""


class ConversionFailed(EngineError):
    """The converter refused the checkpoint or crashed."""


def convert_to_gguf(dirs: Dirs, checkpoint: Path, out: Path, outtype: str = "f16") -> Path:
    """Convert ``checkpoint`` (config.json + safetensors) to ``out``; returns ``out``."""
    if outtype not in OUTTYPES:
        raise ConversionFailed(f"unknown converter type {outtype!r}; use one of {OUTTYPES}")
    if not (checkpoint / "config.json").exists():
        raise ConversionFailed(f"{checkpoint} has no config.json: not a Hugging Face checkpoint")
    tree = source_tree(dirs)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [
            sys.executable,
            str(tree / "convert_hf_to_gguf.py"),
            str(checkpoint),
            "--outfile",
            str(out),
            "--outtype",
            outtype,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-8:])
        raise ConversionFailed(f"convert_hf_to_gguf.py failed on {checkpoint}:\n{tail}")
    return out
