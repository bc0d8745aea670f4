"""What the transformers engine refuses before it starts, in one line each, how it batches
each architecture, and what its process is started with."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from benchmarks.tiny_checkpoints import TINY_ARCHITECTURES, build_checkpoint

from dsdeploy.bench.launch import free_port
from dsdeploy.engines.transformers import TransformersEngine
from dsdeploy.engines.transformers_support import batching_for, check_checkpoint
from dsdeploy.errors import ConfigError
from dsdeploy.modelfile import ModelInfo
from dsdeploy.modelfile_hf import read_hf_layout
from dsdeploy.planner.launch_transformers import plan_transformers_serving
from dsdeploy.planner.placement import Machine
from dsdeploy.served_transformers import check_transformers_model
from dsdeploy.store import Manifest, StoredFile
from tests.conftest import run_cli

GIB = 2**30
TEMPLATE = (
    "{% for m in messages %}<｜User｜>{{ m['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}<｜Assistant｜>{% endif %}"
)
ESCAPE = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
CONTINUOUS = {"llama", "qwen2"}
"""Architectures whose attention transformers' paged cache holds (5.23)."""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each tiny architecture's weights and config, with a small tokenizer and a template."""
    work = tmp_path_factory.mktemp("tiny")
    folders = {}
    for architecture in TINY_ARCHITECTURES:
        folder = build_checkpoint(architecture, work / architecture)
        (folder / "tokenizer.json").write_text("{}")
        (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": TEMPLATE}))
        folders[architecture] = folder
    return folders


def copy(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / folder.name))


def edit_json(path: Path, **changes: object) -> None:
    path.write_text(json.dumps(json.loads(path.read_text()) | changes))


@pytest.mark.parametrize("architecture", [a for a in TINY_ARCHITECTURES if a != "deepseek-v4"])
def test_each_architecture_is_batched_as_its_attention_allows(
    tiny: dict[str, Path], architecture: str
) -> None:
    servable = check_checkpoint(tiny[architecture])
    expected = "continuous" if architecture in CONTINUOUS else "sequential"
    assert servable.batching == expected, servable.why


def test_mla_is_generated_one_request_at_a_time_because_k_and_v_differ() -> None:
    config = {"kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64}
    batching, why = batching_for(config | {"v_head_dim": 128})
    assert batching == "sequential" and "192" in why and "128" in why
    assert batching_for(config | {"v_head_dim": 192})[0] == "continuous"


def test_deepseeks_released_v4_layout_is_refused(tiny: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="released V4 layout.*--engine llama.cpp"):
        check_checkpoint(tiny["deepseek-v4"])


def test_an_architecture_transformers_cannot_generate_with_is_refused(
    tiny: dict[str, Path], tmp_path: Path
) -> None:
    folder = copy(tiny["llama"], tmp_path)
    edit_json(folder / "config.json", model_type="deepseek_v9")
    with pytest.raises(
        ConfigError, match="no text-generation model for architecture 'deepseek_v9'"
    ):
        check_checkpoint(folder)


@pytest.mark.parametrize(
    ("missing", "says"),
    [
        ("config.json", "has no config.json"),
        ("model.safetensors", "has no .safetensors weights"),
        ("tokenizer.json", "has no tokenizer"),
    ],
)
def test_a_checkpoint_missing_a_file_is_refused(
    tiny: dict[str, Path], tmp_path: Path, missing: str, says: str
) -> None:
    folder = copy(tiny["llama"], tmp_path)
    (folder / missing).unlink()
    with pytest.raises(ConfigError, match=says):
        check_checkpoint(folder)


def test_a_checkpoint_without_a_chat_template_is_refused(
    tiny: dict[str, Path], tmp_path: Path
) -> None:
    folder = copy(tiny["llama"], tmp_path)
    (folder / "tokenizer_config.json").write_text("{}")
    with pytest.raises(ConfigError, match="no chat template"):
        check_checkpoint(folder)


def test_a_template_that_tries_to_escape_the_sandbox_is_refused(
    tiny: dict[str, Path], tmp_path: Path
) -> None:
    folder = copy(tiny["llama"], tmp_path)
    (folder / "chat_template.jinja").write_text(ESCAPE)
    with pytest.raises(ConfigError, match="unsafe operation"):
        check_checkpoint(folder)


def manifest(fmt: str) -> Manifest:
    weights = StoredFile(path="model.gguf", sha256="0" * 64, size=1)
    info = ModelInfo(architecture="llama", context_length=4096, embedding_model=False)
    return Manifest(
        name="m", source="hf:x/y", format=fmt, files=[weights], info=info, pulled_at="2026"
    )


def test_a_gguf_model_is_refused_with_the_engine_that_serves_it() -> None:
    with pytest.raises(ConfigError, match="does not serve.*--engine llama.cpp"):
        check_transformers_model(manifest("gguf"))


def test_the_plan_refuses_a_context_that_does_not_fit(tiny: dict[str, Path]) -> None:
    layout = read_hf_layout(tiny["deepseek-v3"])
    small = Machine(ram_available=GIB + GIB // 2, physical_cores=2, cpu_bandwidth=1e10)
    with pytest.raises(ConfigError, match="lower --ctx-size or --parallel"):
        plan_transformers_serving(
            layout.architecture, layout.weight_bytes, True, small, ctx_size=4096, parallel=256
        )


def test_the_engine_runs_offline_on_its_socket_with_the_planned_batch(
    tiny: dict[str, Path], tmp_path: Path
) -> None:
    layout = read_hf_layout(tiny["llama"])
    machine = Machine(ram_available=8 * GIB, physical_cores=2, cpu_bandwidth=1e10)
    launch = plan_transformers_serving(
        layout.architecture, layout.weight_bytes, True, machine, ctx_size=512, parallel=3
    )
    engine = TransformersEngine(tiny["llama"], "tiny", launch, "continuous")
    socket = tmp_path / "engine.sock"
    spec = engine.launch(socket, {"HF_TOKEN": "secret", "PATH": "/usr/bin"})
    argv = list(spec.argv)
    flags = dict(zip(argv[3::2], argv[4::2], strict=False))
    assert argv[1:3] == ["-m", "dsdeploy.engines.transformers_server"]
    assert flags["--uds"] == str(socket) and flags["--device"] == "cpu"
    assert flags["--max-model-len"] == "512" and flags["--max-seqs"] == "3"
    assert flags["--kv-tokens"] == "1536" and flags["--max-batch-tokens"] == "1536"
    assert "HF_TOKEN" not in spec.env and spec.env["HF_HUB_OFFLINE"] == "1"
    assert spec.env["PATH"] == "/usr/bin"


def test_a_gpu_plan_computes_in_bf16_on_cuda(tiny: dict[str, Path]) -> None:
    layout = read_hf_layout(tiny["deepseek-v3"])
    h200 = Machine(8 * GIB, 16, 1e10, "NVIDIA H200", 139 * GIB, 1, 4.8e12)
    launch = plan_transformers_serving(layout.architecture, layout.weight_bytes, True, h200)
    assert (launch.device, launch.dtype) == ("cuda", "bfloat16")
    assert launch.plan.ctx_per_slot == 4096 and launch.max_batch_tokens == 2048


def test_serve_refuses_a_checkpoint_it_cannot_load_in_one_line(
    tiny: dict[str, Path], isolated_home: Path
) -> None:
    pulled = run_cli(isolated_home, "pull", str(tiny["deepseek-v4"]), "--name", "v4-release")
    assert pulled.returncode == 0, pulled.stderr[-2000:]
    port = str(free_port())
    done = run_cli(isolated_home, "serve", "--engine", "transformers", "v4-release", "--port", port)
    assert done.returncode != 0
    assert "error: v4-release is in DeepSeek's released V4 layout" in done.stderr
    assert "Traceback" not in done.stderr and "engine-" not in done.stderr
