"""Every architecture DeepSeek ships (V2, V3, V3.2, V4 and the Qwen2 and Llama R1 distills),
as a tiny random-weight checkpoint with its real tokenizer, converted and quantized by
`dsdeploy convert` and served by llama-server through the gateway to the `openai` client.

Conversions are the slow part (llama.cpp's converter imports torch and transformers: about
a minute each on a busy machine), so their GGUFs are kept in the shared cache under a key
of everything that shapes them (the builder, the conversion code, the llama.cpp tree), as
engine builds are; a change to any of those converts again.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from benchmarks.tiny_checkpoints import TINY_ARCHITECTURES, build_tiny

from dsdeploy.bench.launch import free_port, wait_healthy
from dsdeploy.engines.llamacpp_install import source_tree
from dsdeploy.settings import Settings
from tests.conftest import DSDEPLOY, SHARED_CACHE, dsdeploy_env, run_cli

ROOT = Path(__file__).parent.parent
SHAPING = (
    "benchmarks/tiny_checkpoints.py",
    "src/dsdeploy/convert.py",
    "src/dsdeploy/engines/llamacpp_convert.py",
    "src/dsdeploy/eval/quantize.py",
)


def cache_key(tree: Path) -> str:
    digest = hashlib.sha256(tree.name.encode())
    for name in SHAPING:
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()[:16]


def convert(home: Path, work: Path, arch: str) -> subprocess.CompletedProcess[str]:
    folder = work / f"tiny-{arch}"
    return run_cli(home, "convert", str(folder), "--quant", "Q4_K_M", "--name", f"tiny-{arch}")


def stored_gguf(home: Path, name: str) -> Path:
    manifest = json.loads((home / "data/models/manifests" / f"{name}.json").read_text())
    return home / "data/models/blobs" / f"sha256-{manifest['files'][0]['sha256']}"


@pytest.fixture(scope="session")
def tiny_models_home(engine_installed: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home whose store holds every tiny architecture as a Q4_K_M GGUF made by
    `dsdeploy convert` (in this session, or in an earlier one with the same cache key)."""
    home = tmp_path_factory.mktemp("tiny-home")
    cache = SHARED_CACHE / "tiny-models" / cache_key(source_tree(Settings().dirs))
    names = [f"tiny-{arch}" for arch in TINY_ARCHITECTURES]
    if all((cache / f"{name}.gguf").exists() for name in names):
        for name in names:
            pulled = run_cli(home, "pull", str(cache / f"{name}.gguf"), "--name", name)
            assert pulled.returncode == 0, pulled.stderr[-3000:]
        return home
    work = tmp_path_factory.mktemp("tiny-checkpoints")
    for arch in TINY_ARCHITECTURES:  # one at a time: two CPUs gain nothing from more
        build_tiny(arch, work / f"tiny-{arch}", work)
        done = convert(home, work, arch)
        assert done.returncode == 0, done.stderr[-3000:]
    cache.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(stored_gguf(home, name), cache / f".{name}.tmp")
        (cache / f".{name}.tmp").replace(cache / f"{name}.gguf")
    return home


@pytest.fixture(scope="session")
def tiny_server(tiny_models_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`dsdeploy serve` of all six, one thread and a small context each; yields the API URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("tiny-logs") / "serve.log"
    args = ["--port", str(port), "--threads", "1", "--ctx-size", "512", "--parallel", "1"]
    with log.open("w") as sink:
        process = subprocess.Popen(
            [*DSDEPLOY, "serve", *args],
            env=dsdeploy_env(tiny_models_home),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        # Planning reads each GGUF header (DeepSeek's 129k-token vocabulary) first.
        wait_healthy(process, f"http://127.0.0.1:{port}", log, timeout_s=900)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(timeout=60)


@pytest.mark.engine
@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_each_architecture_converted_and_quantized_answers_the_openai_client(
    tiny_server: str, arch: str
) -> None:
    with openai.OpenAI(base_url=tiny_server, api_key="unused", max_retries=0, timeout=300) as c:
        reply = c.chat.completions.create(
            model=f"tiny-{arch}",
            messages=[{"role": "user", "content": "Hello"}],
            max_tokens=8,
        )
    assert reply.model == f"tiny-{arch}"
    assert reply.choices[0].finish_reason in {"length", "stop"}
    assert reply.usage is not None
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
