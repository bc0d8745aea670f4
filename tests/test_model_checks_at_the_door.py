"""Where the model file checks stand: a malformed file is refused by ``pull`` (and not
stored), by ``serve`` and ``eval`` before any engine process runs, and on demand by
``models check``; a checkpoint naming its own code is refused by the converter."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from dsdeploy.bench.launch import free_port
from dsdeploy.errors import ModelFileRejected
from dsdeploy.modelfile import ModelInfo
from dsdeploy.paths import Dirs
from dsdeploy.store import Manifest, StoredFile, file_sha256, utc_now
from tests.conftest import run_cli
from tests.hub_models import tiny_checkpoint, tiny_gguf
from tests.hub_server import HubServer, Repo
from tests.test_pull_hub import one_error_line, pull, store_of


@pytest.fixture
def good_gguf(tmp_path: Path) -> Path:
    return tiny_gguf(tmp_path / "tiny.gguf")


@pytest.fixture
def bad_gguf(good_gguf: Path, tmp_path: Path) -> Path:
    """The tiny model with its last tensor cut short by one byte."""
    path = tmp_path / "bad.gguf"
    path.write_bytes(good_gguf.read_bytes())
    size = path.stat().st_size
    with path.open("r+b") as out:
        out.truncate(size - 40)  # past the 32-byte padding: into the last tensor
    return path


def stored(home: Path, name: str, model: Path) -> None:
    """Put a model file in the store as a pull would have, without pull's own checks."""
    store = store_of(home)
    partial = store.new_partial()
    partial.write_bytes(model.read_bytes())
    sha = file_sha256(partial)
    store.commit_blob(partial, sha, None)
    info = ModelInfo(architecture="llama", context_length=64, embedding_model=False)
    files = [StoredFile(path=model.name, sha256=sha, size=model.stat().st_size)]
    store.write_manifest(
        Manifest(
            name=name, source="test", format="gguf", files=files, info=info, pulled_at=utc_now()
        )
    )


def recording_engine(tmp_path: Path) -> tuple[Path, Path]:
    """A stand-in llama-server that only records that it was run, and how."""
    marker = tmp_path / "engine-ran"
    script = tmp_path / "llama-server"
    script.write_text(f'#!/bin/sh\necho "$@" >> {marker}\nexit 1\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, marker


def serve(home: Path, engine: Path, *models: str) -> subprocess.CompletedProcess[str]:
    port = str(free_port())
    return run_cli(home, "serve", *models, "--port", port, DSDEPLOY_LLAMA_SERVER=str(engine))


def test_serve_refuses_a_malformed_model_before_any_engine_process_runs(
    isolated_home: Path, bad_gguf: Path, tmp_path: Path
) -> None:
    stored(isolated_home, "bad", bad_gguf)
    engine, marker = recording_engine(tmp_path)
    done = serve(isolated_home, engine, "bad")
    assert done.returncode == 1
    assert "error: refused bad.gguf: tensor 'output_norm.weight'" in done.stderr
    assert "past the end" in done.stderr
    assert not marker.exists()


def test_serve_of_a_well_formed_model_goes_on_to_the_engine(
    isolated_home: Path, good_gguf: Path, tmp_path: Path
) -> None:
    """The other half of the test above: the recording engine does record a run."""
    stored(isolated_home, "good", good_gguf)
    engine, marker = recording_engine(tmp_path)
    serve(isolated_home, engine, "good")
    assert marker.exists()


def test_eval_refuses_a_malformed_file_before_any_engine_process_runs(
    isolated_home: Path, bad_gguf: Path, tmp_path: Path
) -> None:
    engine, marker = recording_engine(tmp_path)
    done = run_cli(
        isolated_home, "eval", "tasks", "--gguf", str(bad_gguf), DSDEPLOY_LLAMA_SERVER=str(engine)
    )
    assert done.returncode == 1
    assert "refused bad.gguf" in done.stderr
    assert not marker.exists()


def test_pull_refuses_a_malformed_gguf_and_stores_nothing(
    hub: HubServer, bad_gguf: Path, isolated_home: Path
) -> None:
    hub.hub.repos["org/bad-GGUF"] = Repo(files={"bad-Q4_1.gguf": bad_gguf.read_bytes()})
    line = one_error_line(pull(isolated_home, hub, "hf:org/bad-GGUF"))
    assert line.startswith("error: refused bad-Q4_1.gguf: tensor 'output_norm.weight'")
    store = store_of(isolated_home)
    assert store.names() == []
    assert list(store.blobs.glob("*")) == []
    assert [p.name.split("-", 1)[1] for p in store.quarantine.iterdir()] == ["bad-Q4_1.gguf"]


def test_pull_refuses_a_checkpoint_with_a_malformed_safetensors(
    hub: HubServer, isolated_home: Path
) -> None:
    files = tiny_checkpoint()
    files["model.safetensors"] = files["model.safetensors"][:-1]
    hub.hub.repos["org/bad"] = Repo(files=files)
    line = one_error_line(pull(isolated_home, hub, "hf:org/bad"))
    assert "refused model.safetensors: tensors cover" in line
    assert store_of(isolated_home).names() == []


def test_pull_warns_about_a_checkpoint_that_names_its_own_code(
    hub: HubServer, isolated_home: Path
) -> None:
    files = tiny_checkpoint()
    config = json.loads(files["config.json"])
    config["auto_map"] = {"AutoConfig": "configuration_deepseek.DeepseekV3Config"}
    files["config.json"] = json.dumps(config).encode()
    hub.hub.repos["org/custom"] = Repo(files=files)
    done = pull(isolated_home, hub, "hf:org/custom")
    assert done.returncode == 0, done.stderr
    assert "config.json's auto_map names AutoConfig" in " ".join(done.stderr.split())
    assert "trust_remote_code stays off" in " ".join(done.stderr.split())


def test_the_converter_refuses_a_checkpoint_that_names_its_own_code(tmp_path: Path) -> None:
    from dsdeploy.engines.llamacpp_convert import convert_to_gguf

    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    for name, data in tiny_checkpoint().items():
        (checkpoint / name).write_bytes(data)
    tokenizer = json.loads((checkpoint / "tokenizer_config.json").read_text())
    tokenizer["auto_map"] = {"AutoTokenizer": ["tokenization_x.XTokenizer", None]}
    (checkpoint / "tokenizer_config.json").write_text(json.dumps(tokenizer))
    dirs = Dirs(tmp_path / "data", tmp_path / "no-cache", tmp_path / "config")
    with pytest.raises(ModelFileRejected, match="tokenizer_config.json's auto_map"):
        convert_to_gguf(dirs, checkpoint, tmp_path / "out.gguf")
    assert not (tmp_path / "no-cache").exists()  # refused before the engine tree was looked for


def test_models_check_reads_a_path_or_a_stored_model(
    isolated_home: Path, good_gguf: Path, bad_gguf: Path
) -> None:
    done = run_cli(isolated_home, "models", "check", str(good_gguf))
    assert done.returncode == 0, done.stderr
    assert "ok, 1 file(s) well formed" in done.stderr
    stored(isolated_home, "bad", bad_gguf)
    done = run_cli(isolated_home, "models", "check", "bad")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: refused bad.gguf:")
    assert os.path.exists(bad_gguf)
