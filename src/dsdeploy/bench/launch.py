"""Start ``dsdeploy serve`` for a comparison with the raw engine behind it.

The raw target is the very llama-server process the gateway fronts, reached on its private
Unix socket: same binary, model, flags and memory, so the difference between the two
targets is the gateway and nothing else. Its socket is read from the engine's command line.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from dsdeploy.clients.openai_compat import Target
from dsdeploy.errors import BenchError
from dsdeploy.settings import DEFAULT_MODEL, settings_from

START_TIMEOUT_S = 900.0
"""A first run may build the engine (about 10 minutes on 2 cores) before it serves."""

DSDEPLOY = (sys.executable, "-m", "dsdeploy")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalServer:
    process: subprocess.Popen[bytes]
    gateway: Target
    raw: Target
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # serve stops its engine gracefully on SIGTERM
        self.process.wait(timeout=60)


def wait_healthy(
    process: subprocess.Popen[Any], base_url: str, log: Path, timeout_s: float = START_TIMEOUT_S
) -> None:
    """Return once ``dsdeploy serve`` answers /health; BenchError if it exits or times out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:]
            raise BenchError(f"dsdeploy serve exited ({' '.join(tail)}); full log: {log}")
        try:
            if httpx.get(f"{base_url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.terminate()
    raise BenchError(f"dsdeploy serve did not become ready in {timeout_s:.0f} s; see {log}")


def engine_socket(process: subprocess.Popen[bytes]) -> str:
    for child in psutil.Process(process.pid).children(recursive=True):
        argv = child.cmdline()
        if "--host" in argv and argv[argv.index("--host") + 1].endswith(".sock"):
            return argv[argv.index("--host") + 1]
    raise BenchError("dsdeploy serve runs no engine on a Unix socket")


def start_local_server(
    model: str, serve_flags: list[str], log: Path, program: Sequence[str] = DSDEPLOY
) -> LocalServer:
    """``dsdeploy serve MODEL`` on a free loopback port, in this environment (so the same
    DSDEPLOY_* settings), with the flags given; returns once it answers /health.
    ``program`` replaces ``dsdeploy`` with a command that takes the same ``serve`` flags."""
    port = free_port()
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [*program, "serve", model, "--port", str(port)]
    with log.open("wb") as sink:
        process = subprocess.Popen([*command, *serve_flags], stdout=sink, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(process, base_url, log)
        uds = engine_socket(process)
    except BaseException:
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=60)
        raise
    return LocalServer(
        process=process,
        gateway=Target("dsdeploy", f"{base_url}/v1"),
        raw=Target("llama-server", "http://llama-server/v1", uds=uds),
        log=log,
    )


def home_env(home: Path) -> dict[str, str]:
    """This environment with another home, but this one's cache: its engine build, so
    nothing is rebuilt."""
    cache = str(settings_from({}).dirs.cache)
    return {**os.environ, "DSDEPLOY_HOME": str(home), "DSDEPLOY_CACHE_DIR": cache}


def run_cli(env: dict[str, str], *args: str) -> None:
    subprocess.run([*DSDEPLOY, *args], env=env, check=True, capture_output=True)


def scratch_home(home: Path) -> dict[str, str]:
    """Makes ``home`` a copy of this home's store (the default model is pulled here first
    if missing), so a benchmark may add models without touching the user's; its
    environment."""
    store = settings_from({}).dirs.models
    if not (store / "manifests" / f"{DEFAULT_MODEL}.json").is_file():
        run_cli(dict(os.environ), "pull", DEFAULT_MODEL)
    shutil.copytree(store, home / "data" / "models", symlinks=True)
    return home_env(home)
