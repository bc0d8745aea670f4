"""llama.cpp's companion tools (``llama-quantize``, ``llama-perplexity``, ``llama-bench``),
found beside the ``llama-server`` that ``serve`` would use, so both come from one build."""

from __future__ import annotations

import codecs
import os
import re
import shutil
import subprocess
from collections.abc import Callable
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


def run_tool(
    command: list[str | Path], what: str, on_output: Callable[[str], None] | None = None
) -> str:
    """Run a tool to completion; its stdout and stderr together, or ToolFailed.
    ``on_output`` sees each piece of output as it comes, a line or a progress bar's redraw
    (split at carriage returns as well as newlines), for a caller that shows progress."""
    process = subprocess.Popen(
        [str(part) for part in command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert process.stdout is not None  # stdout=PIPE
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pieces: list[str] = []
    pending = ""
    with process:
        while chunk := os.read(process.stdout.fileno(), 1 << 16):
            text = decoder.decode(chunk)
            pieces.append(text)
            *whole, pending = re.split(r"[\r\n]", pending + text)
            for piece in whole:
                if piece and on_output is not None:
                    on_output(piece)
    if pending and on_output is not None:  # a last line without its newline
        on_output(pending)
    output = "".join(pieces)
    if process.returncode != 0:
        lines = [line for line in re.split(r"[\r\n]+", output.strip()) if line.strip()]
        raise ToolFailed(f"{what} failed: {' | '.join(lines[-3:])}")
    return output
