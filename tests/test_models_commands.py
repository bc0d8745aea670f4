"""``dsdeploy models list | show | rm | verify | gc`` on a real store, and the sandbox that
renders chat templates."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dsdeploy.chat_template import SAMPLE_CONVERSATION, render
from dsdeploy.errors import StoreError
from dsdeploy.sources.fetch import RemoteFile
from dsdeploy.sources.select import PullOptions, choose, quant_of
from dsdeploy.store import Store
from tests.conftest import run_cli
from tests.hub_models import tiny_checkpoint


@pytest.fixture
def checkpoint_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "tiny-ckpt"
    folder.mkdir()
    for name, data in tiny_checkpoint().items():
        (folder / name).write_bytes(data)
    return folder


def pulled(home: Path, folder: Path, name: str) -> Store:
    done = run_cli(home, "pull", str(folder), "--name", name)
    assert done.returncode == 0, done.stderr
    return Store(home / "data" / "models")


def test_show_renders_the_chat_template_on_a_sample_conversation(
    isolated_home: Path, checkpoint_dir: Path
) -> None:
    pulled(isolated_home, checkpoint_dir, "tiny")
    shown = run_cli(isolated_home, "models", "show", "tiny")
    assert shown.returncode == 0, shown.stderr
    assert "architecture deepseek_v3, trained context 4096" in shown.stdout
    expected = (
        "<｜begin▁of▁sentence｜>You are a helpful assistant.<｜User｜>What is 2 + 2?"
        "<｜Assistant｜>4<｜end▁of▁sentence｜><｜User｜>And 3 + 3?<｜Assistant｜>"
    )
    assert expected in shown.stdout


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ messages.append({'role': 'user'}) }}",
        "{{ raise_exception.__globals__['os'] }}",
    ],
)
def test_templates_cannot_reach_python_internals_or_change_their_input(template: str) -> None:
    with pytest.raises(StoreError, match="unsafe operation"):
        render(template, SAMPLE_CONVERSATION)


def test_verify_finds_a_blob_whose_bytes_changed(isolated_home: Path, checkpoint_dir: Path) -> None:
    store = pulled(isolated_home, checkpoint_dir, "tiny")
    assert run_cli(isolated_home, "models", "verify").returncode == 0
    manifest = store.manifest("tiny")
    assert manifest is not None
    blob = store.blob_path(manifest.weights.sha256)
    os.chmod(blob, 0o644)
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0x01
    blob.write_bytes(bytes(data))
    done = run_cli(isolated_home, "models", "verify", "tiny")
    assert done.returncode == 1
    assert "tiny model.safetensors: CORRUPT: content hashes to" in " ".join(done.stderr.split())
    assert "tiny config.json: ok" in done.stderr


def test_rm_keeps_shared_blobs_until_no_model_uses_them(
    isolated_home: Path, checkpoint_dir: Path
) -> None:
    store = pulled(isolated_home, checkpoint_dir, "first")
    pulled(isolated_home, checkpoint_dir, "second")
    assert run_cli(isolated_home, "models", "rm", "first").returncode == 0
    assert "removed 0 unused file(s)" in run_cli(isolated_home, "models", "gc").stderr
    assert run_cli(isolated_home, "models", "verify", "second").returncode == 0
    assert run_cli(isolated_home, "models", "rm", "second").returncode == 0
    assert "removed 3 unused file(s)" in run_cli(isolated_home, "models", "gc").stderr
    assert list(store.blobs.iterdir()) == []


def test_gc_waits_for_running_pulls_whose_files_no_manifest_names_yet(
    isolated_home: Path, checkpoint_dir: Path
) -> None:
    store = pulled(isolated_home, checkpoint_dir, "tiny")
    assert run_cli(isolated_home, "models", "rm", "tiny").returncode == 0
    with store.pulling():  # as a pull in another process holds it
        done = run_cli(isolated_home, "models", "gc")
    assert done.returncode == 1
    assert "error: a pull is running" in done.stderr
    assert len(list(store.blobs.iterdir())) == 3  # nothing went while the pull ran
    assert "removed 3 unused file(s)" in run_cli(isolated_home, "models", "gc").stderr


def test_manifest_naming_a_path_outside_the_model_is_refused(
    isolated_home: Path, checkpoint_dir: Path
) -> None:
    store = pulled(isolated_home, checkpoint_dir, "tiny")
    path = store.manifests / "tiny.json"
    manifest = json.loads(path.read_text())
    manifest["files"][0]["path"] = "../../../.bashrc"
    path.write_text(json.dumps(manifest))
    done = run_cli(isolated_home, "models", "show", "tiny")
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "error: refused unsafe file name '../../../.bashrc': it would escape the model store"
    )


def test_unknown_model_is_one_line_naming_the_models_there(isolated_home: Path) -> None:
    for verb in ("show", "rm", "verify"):
        done = run_cli(isolated_home, "models", verb, "nothing")
        assert done.returncode == 1
        assert done.stderr.strip() == "error: no model 'nothing' in the store; models: none"


@pytest.mark.parametrize(
    ("path", "quant"),
    [
        ("DeepSeek-R1-Distill-Qwen-7B-Q4_K_M.gguf", "Q4_K_M"),
        ("Q4_K_M/DeepSeek-V3-Q4_K_M-00001-of-00009.gguf", "Q4_K_M"),
        ("deepseek-llm-7b-chat.q8_0.gguf", "Q8_0"),
        ("DeepSeek-V3-UD-IQ1_S-00001-of-00003.gguf", "IQ1_S"),
        ("model-bf16.gguf", "BF16"),
        ("Qwen2.5-7B.gguf", None),
    ],
)
def test_quant_is_read_from_gguf_file_names(path: str, quant: str | None) -> None:
    assert quant_of(path) == quant


def test_a_sharded_quant_takes_all_its_shards() -> None:
    names = [f"Q2_K/m-Q2_K-0000{i}-of-00002.gguf" for i in (1, 2)] + ["Q8_0/m-Q8_0.gguf"]
    listing = [RemoteFile(name, f"http://x/{name}", 1, "a" * 64) for name in names]
    chosen = choose(listing, PullOptions(quant="q2_k"), "org/repo")
    assert [f.path for f in chosen] == names[:2]
