"""Find the vLLM to run, and refuse in one line where vLLM cannot run.

vLLM is not a dependency of dsdeploy (it pins its own torch and CUDA, gigabytes that a
llama.cpp user never needs): it is the operator's own install, found as ``DSDEPLOY_VLLM``,
then ``vllm`` on PATH, then the ``vllm`` package importable by this Python (run as
``python -m vllm.entrypoints.openai.api_server``, which takes the model as ``--model``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from dsdeploy.errors import ConfigError

API_SERVER = "vllm.entrypoints.openai.api_server"
NO_GPU = "vLLM needs an NVIDIA GPU; this machine has none: serve with --engine llama.cpp"
NOT_INSTALLED = (
    "vLLM is not installed: pip install vllm (in its own environment), set DSDEPLOY_VLLM to "
    "its vllm program, or serve with --engine llama.cpp"
)


def locate_vllm(
    setting: Path | None,
    which: Callable[[str], str | None] = shutil.which,
    importable: Callable[[str], bool] = lambda name: importlib.util.find_spec(name) is not None,
) -> tuple[str, ...] | None:
    """The command that starts vLLM's server, up to the model folder; None if none is found."""
    if setting is not None:
        if not (setting.is_file() and os.access(setting, os.X_OK)):
            raise ConfigError(f"DSDEPLOY_VLLM={setting} is not an executable file")
        return (str(setting), "serve")
    found = which("vllm")
    if found is not None:
        return (found, "serve")
    if importable("vllm"):
        return (sys.executable, "-m", API_SERVER, "--model")
    return None


def require_vllm(setting: Path | None, nvidia_gpus: int) -> tuple[str, ...]:
    """vLLM's command, or ``ConfigError`` saying why it cannot serve on this machine."""
    if nvidia_gpus == 0:
        raise ConfigError(NO_GPU)
    program = locate_vllm(setting)
    if program is None:
        raise ConfigError(NOT_INSTALLED)
    return program
