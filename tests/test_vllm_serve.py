"""`serve --engine vllm`'s wiring: a stored checkpoint is planned on this node's GPUs and
started as ``vllm serve`` on its folder (the stand-in plays vLLM; the GPU is described, not
present), and what vLLM cannot serve is refused before any process starts."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from dsdeploy.errors import ConfigError
from dsdeploy.hardware import Gpu, Hardware
from dsdeploy.modelfile import ModelInfo
from dsdeploy.runtime.pool import ModelSpec
from dsdeploy.served_vllm import check_vllm_models, vllm_model_spec
from dsdeploy.settings import Settings
from dsdeploy.store import HashingWriter, Manifest, Store, StoredFile
from tests.vllm_standin.__main__ import launcher, recorded_starts
from tests.vllm_standin.cli import flags

GIB = 2**30
NAME = "deepseek-r1-distill-qwen-7b"
H100 = Gpu(0, "NVIDIA H100 80GB HBM3", 80 * GIB, 79 * GIB, (9, 0))
HARDWARE = Hardware(2, 2, 64 * GIB, 48 * GIB, gpus=(H100,))


def checkpoint() -> dict[str, bytes]:
    from safetensors.numpy import save

    weight = np.zeros((8, 8), dtype=np.float16)
    return {"config.json": b"{}", "model.safetensors": save({"lm_head.weight": weight})}


def stored_model(store: Store, name: str, files: dict[str, bytes], fmt: str) -> Manifest:
    entries = []
    for path, data in files.items():
        partial = store.new_partial()
        writer = HashingWriter(partial)
        writer.write(data)
        store.commit_blob(partial, writer.close(), None)
        entries.append(
            StoredFile(path=path, sha256=hashlib.sha256(data).hexdigest(), size=len(data))
        )
    manifest = Manifest(
        name=name,
        source="hf:deepseek-ai/x",
        format=fmt,
        files=entries,
        info=ModelInfo(architecture="qwen2", context_length=131072, embedding_model=False),
        pulled_at="2026-01-01T00:00:00+00:00",
    )
    store.write_manifest(manifest)
    return manifest


async def first_start(
    settings: Settings, store: Store, manifest: Manifest, tmp_path: Path
) -> tuple[ModelSpec, list[str], dict[str, str]]:
    """The spec ``serve`` builds for ``manifest``, and the argv and environment its
    supervisor started the (recording) vLLM launcher with."""
    record = tmp_path / "starts.jsonl"
    program = (str(launcher(tmp_path, record)), "serve")
    spec = vllm_model_spec(
        settings, store, manifest, program, HARDWARE, Console(file=io.StringIO())
    )
    supervisor = spec.make_supervisor()
    await supervisor.start()
    try:
        (start,) = recorded_starts(record)
    finally:
        await supervisor.stop()
    argv, env = start["argv"], start["env"]
    assert isinstance(argv, list) and isinstance(env, dict)
    return spec, argv, env


@pytest.mark.anyio
async def test_a_stored_checkpoint_is_served_as_vllm_serve_on_its_folder(tmp_path: Path) -> None:
    settings = Settings()
    store = Store(settings.dirs.models)
    manifest = stored_model(store, NAME, checkpoint(), "safetensors")
    spec, argv, env = await first_start(settings, store, manifest, tmp_path)
    assert argv[:2] == ["serve", str(store.materialize(manifest).entry)]
    given = flags(argv)
    assert given["--served-model-name"] == NAME
    assert given["--tensor-parallel-size"] == "1" and given["--pipeline-parallel-size"] == "1"
    assert given["--max-num-seqs"] == str(spec.slots)
    assert given["--reasoning-parser"] == "deepseek_r1"
    assert env["VLLM_CACHE_ROOT"] == str(settings.dirs.engines / "vllm" / "vllm")
    assert env["HF_HOME"] == str(settings.dirs.engines / "vllm" / "huggingface")


def test_what_vllm_cannot_serve_is_refused_in_one_line(tmp_path: Path) -> None:
    store = Store(Settings().dirs.models)
    gguf = stored_model(store, "smollm2", {"m.gguf": b"GGUF"}, "gguf")
    other = stored_model(store, "b", checkpoint(), "safetensors")
    with pytest.raises(ConfigError, match="vLLM does not serve: pull its safetensors"):
        check_vllm_models([gguf])
    with pytest.raises(ConfigError, match="serves one model"):
        check_vllm_models([other, other.model_copy(update={"name": "c"})])
    check_vllm_models([other])


@pytest.mark.anyio
async def test_nodes_setting_spreads_the_stages_over_the_ray_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the LeaderWorkerSet's leader sets (DSDEPLOY_NODES, RAY_ADDRESS) reaches vLLM."""
    monkeypatch.setenv("DSDEPLOY_NODES", "2")
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    settings = Settings()
    store = Store(settings.dirs.models)
    manifest = stored_model(store, NAME, checkpoint(), "safetensors")
    spec, argv, env = await first_start(settings, store, manifest, tmp_path)
    given = flags(argv)
    assert given["--tensor-parallel-size"] == "1" and given["--pipeline-parallel-size"] == "2"
    assert given["--distributed-executor-backend"] == "ray"
    assert env["RAY_ADDRESS"] == "127.0.0.1:6379"
