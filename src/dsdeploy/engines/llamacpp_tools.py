"""llama.cpp's companion tools (``llama-quantize``, ``llama-perplexity``, ``llama-bench``),
found beside the ``llama-server`` that ``serve`` would use, so both come from one build."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from dsdeploy.engines.llamacpp_locate import locate
from dsdeploy.errors import EngineError, EngineNotInstalled
from dsdeploy.settings import Settings


class ToolFailed(EngineError):
    """A llama.cpp tool exited non-zero; the message carries its last output lines."""


def tool_path(settings: Settings, name: str) -> Path:
    installed = locate(settings.dirs, settings.engine.llama_server, settings.engine.engine_backend)
    if installed is not None and (installed.binary.parent / name).exists():
        return installed.binary.parent / name
    on_path = shutil.which(name)
    if on_path:
        return Path(on_path)
    raise EngineNotInstalled(f"llama.cpp's {name} is not installed: run `dsdeploy engine install`")


def run_tool(command: list[str | Path], what: str) -> str:
    """Run a tool to completion; its stdout and stderr together, or ToolFailed."""
    done = subprocess.run(
        [str(part) for part in command],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        check=False,
    )
    if done.returncode != 0:
        lines = [line for line in done.stdout.strip().splitlines() if line.strip()]
        raise ToolFailed(f"{what} failed: {' | '.join(lines[-3:])}")
    return done.stdout
