"""``dsdeploy pull`` from Hugging Face, ModelScope and plain URLs — the real client code
against a local hub that answers as those hubs do, serving real model bytes."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from dsdeploy.catalog import find
from dsdeploy.pull import target
from dsdeploy.store import Store
from tests.conftest import run_cli
from tests.hub_models import SMOLLM2_SHA256, tiny_checkpoint
from tests.hub_server import Hub, HubServer, Repo, serving

GGUF_REPO = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
CKPT_REPO = "deepseek-ai/tiny-v3"
ESCAPES = "it would escape the model store"


def pull(home: Path, hub: HubServer, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli(home, "pull", *args, HF_ENDPOINT=hub.url, DSDEPLOY_MS_ENDPOINT=hub.url, **env)


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The one error line, last (after the fit summary and the bar when a download began)."""
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert [line for line in lines if line.startswith("error: ")] == lines[-1:], done.stderr
    return " ".join(lines[-1].split())


def store_of(home: Path) -> Store:
    return Store(home / "data" / "models")


def downloads(hub: HubServer) -> list[str]:
    return [path for method, path, _ in hub.hub.requests if method == "GET"]


@pytest.fixture
def gguf_repo(hub: HubServer, smollm2_bytes: bytes) -> HubServer:
    hub.hub.repos[GGUF_REPO] = Repo(
        files={
            "README.md": b"# SmolLM2 GGUF\n",
            "SmolLM2-135M-Instruct-Q4_1.gguf": smollm2_bytes,
            "SmolLM2-135M-Instruct-Q8_0.gguf": b"GGUF never fetched",
        }
    )
    return hub


@pytest.fixture
def ckpt_repo(hub: HubServer) -> HubServer:
    files = tiny_checkpoint()
    hub.hub.repos[CKPT_REPO] = Repo(files={**files, "pytorch_model.bin": b"\x80\x04pickle"})
    return hub


def test_hf_pull_takes_the_asked_quant_verified_by_its_lfs_sha256(
    gguf_repo: HubServer, isolated_home: Path
) -> None:
    done = pull(isolated_home, gguf_repo, f"hf:{GGUF_REPO}", "--quant", "q4_1")
    assert done.returncode == 0, done.stderr
    assert f"sha256 {SMOLLM2_SHA256}" in done.stderr
    assert "free on disk: fits" in " ".join(done.stderr.split())
    manifest = store_of(isolated_home).manifest("smollm2-135m-instruct-gguf-q4_1")
    assert manifest is not None
    assert [f.path for f in manifest.files] == ["SmolLM2-135M-Instruct-Q4_1.gguf"]
    assert (manifest.info.architecture, manifest.format) == ("llama", "gguf")
    assert not any("Q8_0" in path for path in downloads(gguf_repo))
    shown = run_cli(isolated_home, "models", "show", manifest.name)
    assert "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n4" in shown.stdout


def test_hf_spec_can_name_one_file_of_a_repo(gguf_repo: HubServer, isolated_home: Path) -> None:
    spec = f"hf:{GGUF_REPO}@main:SmolLM2-135M-Instruct-Q4_1.gguf"
    done = pull(isolated_home, gguf_repo, spec, "--name", "small")
    assert done.returncode == 0, done.stderr
    assert f"sha256 {SMOLLM2_SHA256}" in done.stderr


def test_hf_repo_with_several_quants_asks_for_one(
    gguf_repo: HubServer, isolated_home: Path
) -> None:
    line = one_error_line(pull(isolated_home, gguf_repo, f"hf:{GGUF_REPO}"))
    assert line == f"error: {GGUF_REPO} has several GGUF quants; pick one with --quant: Q4_1, Q8_0"


def test_hf_unknown_quant_lists_the_quants_that_exist(
    gguf_repo: HubServer, isolated_home: Path
) -> None:
    line = one_error_line(pull(isolated_home, gguf_repo, f"hf:{GGUF_REPO}", "--quant", "Q4_K_M"))
    assert line == f"error: {GGUF_REPO} has no Q4_K_M GGUF; quants there: Q4_1, Q8_0"


def test_hf_missing_repo_is_named(hub: HubServer, isolated_home: Path) -> None:
    line = one_error_line(pull(isolated_home, hub, "hf:nobody/nothing"))
    assert f"no model repo nobody/nothing at {hub.url}" in line


def test_hf_missing_revision_is_named(gguf_repo: HubServer, isolated_home: Path) -> None:
    line = one_error_line(pull(isolated_home, gguf_repo, f"hf:{GGUF_REPO}@v9", "--quant", "Q4_1"))
    assert line == f"error: {GGUF_REPO} has no revision 'v9'"


def test_hf_gated_repo_says_to_accept_the_licence_and_set_hf_token(
    ckpt_repo: HubServer, isolated_home: Path
) -> None:
    repo = ckpt_repo.hub.repos[CKPT_REPO]
    repo.gated, repo.token = True, "hf_secret"
    line = one_error_line(pull(isolated_home, ckpt_repo, f"hf:{CKPT_REPO}"))
    assert "access denied (HTTP 401)" in line
    assert f"accept its licence at {ckpt_repo.url}/{CKPT_REPO} and set HF_TOKEN" in line
    assert store_of(isolated_home).names() == []
    done = pull(isolated_home, ckpt_repo, f"hf:{CKPT_REPO}", HF_TOKEN="hf_secret")
    assert done.returncode == 0, done.stderr


def test_the_token_is_not_sent_on_to_the_cdn_a_file_redirects_to(
    ckpt_repo: HubServer, isolated_home: Path
) -> None:
    repo = ckpt_repo.hub.repos[CKPT_REPO]
    repo.gated, repo.token = True, "hf_secret"
    with serving(Hub(repos={"mirror/of": Repo(files=dict(repo.files))})) as cdn:
        ckpt_repo.hub.cdn = cdn.url
        done = pull(isolated_home, ckpt_repo, f"hf:{CKPT_REPO}", HF_TOKEN="hf_secret")
        assert done.returncode == 0, done.stderr
        assert [path for method, path, _ in cdn.hub.requests if method == "GET"] != []
        assert cdn.hub.with_credentials == []
    assert f"/{CKPT_REPO}/resolve/{repo.commit}/model.safetensors" in (
        ckpt_repo.hub.with_credentials
    )


def test_hf_checkpoint_prefers_safetensors_and_checks_small_files_by_git_blob_id(
    ckpt_repo: HubServer, isolated_home: Path
) -> None:
    done = pull(isolated_home, ckpt_repo, f"hf:{CKPT_REPO}", "--name", "tiny")
    assert done.returncode == 0, done.stderr
    manifest = store_of(isolated_home).manifest("tiny")
    assert manifest is not None
    paths = sorted(f.path for f in manifest.files)
    assert paths == ["config.json", "model.safetensors", "tokenizer_config.json"]
    assert (manifest.format, manifest.info.architecture) == ("safetensors", "deepseek_v3")
    for stored in manifest.files:
        data = ckpt_repo.hub.repos[CKPT_REPO].files[stored.path]
        assert stored.sha256 == hashlib.sha256(data).hexdigest()


def test_pickle_only_repo_is_refused_unless_allowed(hub: HubServer, isolated_home: Path) -> None:
    files = {"config.json": tiny_checkpoint()["config.json"], "pytorch_model.bin": b"\x80\x04."}
    hub.hub.repos["old/pickled"] = Repo(files=files)
    line = one_error_line(pull(isolated_home, hub, "hf:old/pickled"))
    assert "old/pickled has pickle weights (pytorch_model.bin)" in line
    assert "pass --allow-pickle if you trust old/pickled" in line
    assert not any("pytorch_model.bin" in path for path in downloads(hub))
    done = pull(isolated_home, hub, "hf:old/pickled", "--allow-pickle")
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("corrupted", ["model.safetensors", "tokenizer_config.json"])
def test_one_flipped_byte_is_quarantined_and_the_store_untouched(
    ckpt_repo: HubServer, isolated_home: Path, corrupted: str
) -> None:
    ckpt_repo.hub.corrupt.add(corrupted)
    line = one_error_line(pull(isolated_home, ckpt_repo, f"hf:{CKPT_REPO}", "--name", "tiny"))
    assert f"error: {corrupted}: hash " in line
    assert "does not match the source's" in line
    store = store_of(isolated_home)
    quarantined = list(store.quarantine.iterdir())
    assert [q.name.endswith(corrupted) for q in quarantined] == [True]
    assert store.names() == []
    bad = hashlib.sha256(quarantined[0].read_bytes()).hexdigest()
    assert not store.blob_path(bad).exists()
    assert list(store.partial.iterdir()) == []


def test_malicious_name_in_a_hub_listing_is_refused_before_any_download(
    hub: HubServer, isolated_home: Path, smollm2_bytes: bytes
) -> None:
    hub.hub.repos["evil/repo"] = Repo(files={"../../../evil.gguf": smollm2_bytes[:4096]})
    for spec in ("hf:evil/repo", "ms:evil/repo"):
        line = one_error_line(pull(isolated_home, hub, spec))
        assert line == f"error: refused unsafe file name {'../../../evil.gguf'!r}: {ESCAPES}"
    assert [path for path in downloads(hub) if "evil.gguf" in path or "/cdn/" in path] == []
    assert not list(isolated_home.parent.rglob("evil.gguf"))


def test_ms_pull_checks_each_file_against_its_listed_sha256(
    ckpt_repo: HubServer, isolated_home: Path
) -> None:
    done = pull(isolated_home, ckpt_repo, f"ms:{CKPT_REPO}", "--exclude", "*.md")
    assert done.returncode == 0, done.stderr
    manifest = store_of(isolated_home).manifest("tiny-v3")
    assert manifest is not None
    assert "model.safetensors" in [f.path for f in manifest.files]
    ckpt_repo.hub.corrupt.add("model.safetensors")
    other = isolated_home.parent / "other-home"
    line = one_error_line(pull(other, ckpt_repo, f"ms:{CKPT_REPO}"))
    assert "model.safetensors: hash" in line


def test_ms_unknown_repo_reports_modelscopes_message(hub: HubServer, isolated_home: Path) -> None:
    line = one_error_line(pull(isolated_home, hub, "ms:nobody/nothing"))
    assert line == "error: ModelScope refused nobody/nothing@master: model not found"


def test_url_pull_is_checked_against_its_sha256_sidecar(
    hub: HubServer, isolated_home: Path, smollm2_bytes: bytes
) -> None:
    hub.hub.plain["SmolLM2.Q4_1.gguf"] = smollm2_bytes
    done = pull(isolated_home, hub, f"{hub.url}/files/SmolLM2.Q4_1.gguf", "--name", "s")
    assert done.returncode == 0, done.stderr
    assert f"sha256 {SMOLLM2_SHA256}" in done.stderr


def test_url_without_any_hash_is_refused(hub: HubServer, isolated_home: Path) -> None:
    hub.hub.plain["m.gguf"] = b"GGUF"
    hub.hub.sidecars = False
    url = f"{hub.url}/files/m.gguf"
    line = one_error_line(pull(isolated_home, hub, url))
    fix = f"pass --sha256 HEX, or publish {url}.sha256 (the output of sha256sum)"
    assert line == f"error: no sha256 for {url}: {fix}"


def test_url_with_a_wrong_sha256_flag_is_quarantined(hub: HubServer, isolated_home: Path) -> None:
    hub.hub.plain["m.safetensors"] = b"not what was promised"
    line = one_error_line(
        pull(isolated_home, hub, f"{hub.url}/files/m.safetensors", "--sha256", "a" * 64)
    )
    assert "does not match the source's " + "a" * 64 in line
    assert store_of(isolated_home).names() == []


def test_a_malformed_sha256_flag_is_refused_before_anything_is_fetched(
    hub: HubServer, isolated_home: Path
) -> None:
    line = one_error_line(pull(isolated_home, hub, f"{hub.url}/files/m.gguf", "--sha256", "abc"))
    assert line == "error: --sha256 'abc' is not a sha256: 64 hex digits"
    assert hub.hub.requests == []


def test_include_globs_choose_files(ckpt_repo: HubServer, isolated_home: Path) -> None:
    done = pull(
        isolated_home,
        ckpt_repo,
        f"hf:{CKPT_REPO}",
        "--include",
        "*.json",
        "--include",
        "*.safetensors",
        "--exclude",
        "tokenizer*",
    )
    assert done.returncode == 0, done.stderr
    manifest = store_of(isolated_home).manifest("tiny-v3")
    assert manifest is not None
    assert sorted(f.path for f in manifest.files) == ["config.json", "model.safetensors"]
    assert json.loads(store_of(isolated_home).blob_path(manifest.files[0].sha256).read_bytes())


def test_catalog_model_pulls_the_asked_published_quant(
    hub: HubServer, smollm2_bytes: bytes, isolated_home: Path
) -> None:
    repo = "bartowski/DeepSeek-R1-Distill-Qwen-1.5B-GGUF"
    hub.hub.repos[repo] = Repo(
        files={
            "DeepSeek-R1-Distill-Qwen-1.5B-Q8_0.gguf": smollm2_bytes,  # stands in for 1.9 GB
            "DeepSeek-R1-Distill-Qwen-1.5B-Q4_K_M.gguf": b"GGUF never fetched",
        }
    )
    done = pull(isolated_home, hub, "deepseek-r1-distill-qwen-1.5b", "--quant", "q8_0")
    assert done.returncode == 0, done.stderr
    manifest = store_of(isolated_home).manifest("deepseek-r1-distill-qwen-1.5b-q8_0")
    assert manifest is not None
    assert manifest.weights.sha256 == SMOLLM2_SHA256
    assert manifest.source == f"hf:{repo}:DeepSeek-R1-Distill-Qwen-1.5B-Q8_0.gguf"
    assert not any("Q4_K_M" in path for path in downloads(hub))


def test_catalog_model_refuses_a_quant_it_is_not_published_in(
    hub: HubServer, isolated_home: Path
) -> None:
    done = pull(isolated_home, hub, "deepseek-r1-distill-qwen-1.5b", "--quant", "Q1_0")
    assert "published as Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q3_K_M, Q2_K, not Q1_0" in one_error_line(done)
    assert downloads(hub) == []


def test_a_catalog_model_with_one_file_takes_its_own_quant_by_name() -> None:
    entry = find("smollm2")
    assert entry is not None
    chosen = target("smollm2", None, "q4_1")
    assert (chosen.name, chosen.source) == ("smollm2", entry.source)
