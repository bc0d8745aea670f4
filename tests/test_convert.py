"""`dsdeploy convert`: bad checkpoints are refused in one line before any tool runs, and a
good one goes through llama.cpp's converter and llama-quantize into the store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchmarks.tiny_checkpoints import build_tiny

from dsdeploy.convert import preflight
from dsdeploy.errors import DsdeployError
from dsdeploy.settings import Settings
from tests.conftest import run_cli
from tests.hub_models import tiny_checkpoint

ESCAPING_TEMPLATE = "{{ ''.__class__.__mro__[1].__subclasses__() }}"


def checkpoint(folder: Path, config: dict[str, object] | None = None, **files: bytes) -> Path:
    """A small safetensors checkpoint with a tokenizer; ``files`` replace or add files
    (an empty value removes one)."""
    contents = tiny_checkpoint() | {"tokenizer.json": b"{}"}
    if config is not None:
        contents["config.json"] = json.dumps(config).encode()
    contents |= {name.replace("__", "."): data for name, data in files.items()}
    folder.mkdir(parents=True)
    for name, data in contents.items():
        if data:
            (folder / name).write_bytes(data)
    return folder


def refused(home: Path, folder: Path) -> str:
    """Why the checks before any tool runs refuse ``folder``."""
    del home  # Settings() reads it from the environment
    with pytest.raises(DsdeployError) as refusal:
        preflight(Settings(), folder)
    return str(refusal.value)


def test_a_refused_checkpoint_is_one_line_and_nothing_runs_or_is_stored(
    isolated_home: Path, tmp_path: Path
) -> None:
    settings = {"chat_template": ESCAPING_TEMPLATE, "bos_token": "<s>"}
    folder = checkpoint(tmp_path / "ckpt", tokenizer_config__json=json.dumps(settings).encode())
    done = run_cli(isolated_home, "convert", str(folder), "--name", "refused")
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), done.stderr
    assert "chat template tried an unsafe operation" in lines[0]
    assert "converting" not in done.stderr
    assert not (isolated_home / "data/models/manifests/refused.json").exists()


def test_a_checkpoint_without_a_tokenizer_is_refused(isolated_home: Path, tmp_path: Path) -> None:
    line = refused(isolated_home, checkpoint(tmp_path / "ckpt", tokenizer__json=b""))
    assert "has no tokenizer (tokenizer.json or tokenizer.model)" in line


def test_an_index_naming_a_missing_shard_is_refused(isolated_home: Path, tmp_path: Path) -> None:
    index = {"weight_map": {"lm_head.weight": "model-00002-of-00002.safetensors"}}
    folder = checkpoint(
        tmp_path / "ckpt", model__safetensors__index__json=json.dumps(index).encode()
    )
    line = refused(isolated_home, folder)
    assert "names 1 shard(s) not in" in line and "model-00002-of-00002.safetensors" in line


def test_pickled_weights_are_refused(isolated_home: Path, tmp_path: Path) -> None:
    folder = checkpoint(tmp_path / "ckpt", model__safetensors=b"", pytorch_model__bin=b"x")
    assert "only pickled weights (pytorch_model.bin)" in refused(isolated_home, folder)


def test_a_missing_config_is_refused(isolated_home: Path, tmp_path: Path) -> None:
    line = refused(isolated_home, checkpoint(tmp_path / "ckpt", config__json=b""))
    assert "config.json: is missing" in line


def test_a_chat_template_that_reaches_python_internals_is_refused(
    isolated_home: Path, tmp_path: Path
) -> None:
    settings = {"chat_template": ESCAPING_TEMPLATE, "bos_token": "<s>"}
    folder = checkpoint(tmp_path / "ckpt", tokenizer_config__json=json.dumps(settings).encode())
    assert "chat template tried an unsafe operation" in refused(isolated_home, folder)


def test_a_template_file_beside_the_config_is_checked_too(
    isolated_home: Path, tmp_path: Path
) -> None:
    folder = checkpoint(tmp_path / "ckpt", chat_template__jinja=ESCAPING_TEMPLATE.encode())
    assert "chat template tried an unsafe operation" in refused(isolated_home, folder)


CONFIG = json.loads(tiny_checkpoint()["config.json"])


@pytest.mark.engine
@pytest.mark.parametrize(
    ("config", "reason"),
    [
        (
            CONFIG | {"architectures": ["FancyNewForCausalLM"], "model_type": "fancy"},
            "llama.cpp's converter does not know FancyNewForCausalLM (model_type 'fancy')",
        ),
        ({"model_type": "deepseek_v3"}, "config.json names no architecture"),
        (
            CONFIG | {"architectures": ["DeepseekV4ForCausalLM"], "model_type": "deepseek_v4"},
            "DeepseekV4ForCausalLM: config.json has no compress_ratios or num_hash_layers",
        ),
        (
            CONFIG | {"architectures": ["DeepseekV32ForCausalLM"], "model_type": "deepseek_v32"},
            "DeepseekV32ForCausalLM: config.json has no scoring_func",
        ),
        (
            CONFIG | {"architectures": ["DeepseekV2ForCausalLM"], "num_hidden_layers": 2},
            "deepseek2.attention.q_lora_rank",
        ),
    ],
    ids=["unknown", "unnamed", "v4-transformers-layout", "v32-no-router", "v2-no-q-lora"],
)
def test_what_the_converter_or_engine_cannot_handle_is_refused_with_the_reason(
    engine_installed: None, isolated_home: Path, tmp_path: Path, config: object, reason: str
) -> None:
    folder = checkpoint(tmp_path / "ckpt", config__json=json.dumps(config).encode())
    assert reason in refused(isolated_home, folder)


@pytest.mark.engine
def test_convert_quantizes_with_progress_and_stores_a_model_serve_can_name(
    engine_installed: None, isolated_home: Path, tmp_path: Path
) -> None:
    folder = build_tiny("llama", tmp_path / "tiny-llama")
    done = run_cli(isolated_home, "convert", str(folder), "--quant", "q4_k_m")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "converting tiny-llama: 100%" in done.stderr
    assert "quantizing to Q4_K_M: 100%" in done.stderr
    assert "dsdeploy serve tiny-llama-q4_k_m" in done.stderr
    models = isolated_home / "data/models"
    manifest = json.loads((models / "manifests/tiny-llama-q4_k_m.json").read_text())
    assert manifest["format"] == "gguf" and manifest["info"]["architecture"] == "llama"
    stored = manifest["files"][0]
    blob = models / "blobs" / f"sha256-{stored['sha256']}"
    assert blob.stat().st_size == stored["size"]
    # Q4_K_M where rows allow it: well under a third of the float32 checkpoint
    assert stored["size"] < (folder / "model.safetensors").stat().st_size / 3
    assert not any((models / "partial").iterdir())  # the work folder went with it
