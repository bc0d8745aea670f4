"""Start llama-server at ``-lv 4`` on a model, wait until it has loaded and warmed up, and
return its log and peak resident memory (VmHWM): what the engine really took."""

from __future__ import annotations

import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from dsdeploy.bench.launch import free_port

READY_MARK = "all slots are idle"


@dataclass(frozen=True)
class ServerRun:
    log: str
    peak_rss: int


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc status (not Linux?)")


def run_server(binary: Path, model: Path, args: list[str], timeout_s: float = 120) -> ServerRun:
    """One load of ``model``; the server is stopped as soon as it is ready."""
    argv = [
        str(binary),
        "-m",
        str(model),
        "-lv",
        "4",
        "--port",
        str(free_port()),
        "--host",
        "127.0.0.1",
        "--no-webui",
        "--log-colors",
        "off",
        *args,
    ]
    with tempfile.TemporaryFile() as sink:
        process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                sink.seek(0)
                log = sink.read().decode(errors="replace")
                if READY_MARK in log:
                    return ServerRun(log=log, peak_rss=peak_rss(process.pid))
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"llama-server did not get ready:\n{log[-2000:]}")
                time.sleep(0.05)
        finally:
            process.kill()
            process.wait()
