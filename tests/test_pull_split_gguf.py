"""A GGUF quant published in parts (DeepSeek-V3/R1 come as ``Q2_K/…-00001-of-00005.gguf``…)
is pulled whole — every part, verified, nothing else — into one manifest, read as one model,
and served through its model folder, where llama.cpp finds the parts by name."""

from __future__ import annotations

import hashlib
from pathlib import Path

import psutil
import pytest

from dsdeploy.errors import StoreError
from dsdeploy.modelfile import gguf_bytes_read_per_token, read_gguf_layout
from tests.conftest import start_server
from tests.hub_models import split_gguf
from tests.hub_server import HubServer, Repo
from tests.test_pull_hub import downloads, one_error_line, pull, store_of

REPO = "unsloth/SmolLM2-135M-Instruct-GGUF"
STEM = "SmolLM2-135M-Instruct-Q4_1"
PARTS = [f"Q4_1/{STEM}-0000{i}-of-00002.gguf" for i in (1, 2)]
NAME = "smollm2-135m-instruct-gguf-q4_1"


@pytest.fixture(scope="module")
def whole_gguf(tmp_path_factory: pytest.TempPathFactory, smollm2_bytes: bytes) -> Path:
    path = tmp_path_factory.mktemp("whole") / f"{STEM}.gguf"
    path.write_bytes(smollm2_bytes)
    return path


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory, smollm2_bytes: bytes) -> dict[str, bytes]:
    """The default model in two parts, as llama-gguf-split would write them."""
    split = split_gguf(smollm2_bytes, 2, tmp_path_factory.mktemp("split"), STEM)
    return {f"Q4_1/{name}": data for name, data in split.items()}


@pytest.fixture
def split_repo(hub: HubServer, parts: dict[str, bytes]) -> HubServer:
    """Two quants in folders of parts, as unsloth and bartowski publish DeepSeek-R1."""
    never = b"GGUF never fetched"
    hub.hub.repos[REPO] = Repo(
        files={
            "README.md": b"# SmolLM2 GGUF\n",
            **parts,
            "Q8_0/SmolLM2-135M-Instruct-Q8_0-00001-of-00002.gguf": never,
            "Q8_0/SmolLM2-135M-Instruct-Q8_0-00002-of-00002.gguf": never,
        }
    )
    return hub


def test_a_split_quant_is_pulled_whole_verified_and_nothing_else(
    split_repo: HubServer, isolated_home: Path, parts: dict[str, bytes], whole_gguf: Path
) -> None:
    done = pull(isolated_home, split_repo, f"hf:{REPO}", "--quant", "q4_1")
    assert done.returncode == 0, done.stderr
    store = store_of(isolated_home)
    manifest = store.get(NAME)
    assert [f.path for f in manifest.files] == PARTS
    for file in manifest.files:
        assert file.sha256 == hashlib.sha256(parts[file.path]).hexdigest()
    assert manifest.weights.path == PARTS[0]
    assert manifest.weights_bytes == sum(len(data) for data in parts.values())
    assert (manifest.info.architecture, manifest.info.context_length) == ("llama", 8192)
    fetched = downloads(split_repo)
    assert len([path for path in fetched if path.startswith("/cdn/")]) == 2
    assert not any("Q8_0" in path or "README" in path for path in fetched)

    entry = store.materialize(manifest).entry
    assert entry.name == Path(PARTS[0]).name
    assert read_gguf_layout(entry) == read_gguf_layout(whole_gguf)
    assert gguf_bytes_read_per_token(entry) == gguf_bytes_read_per_token(whole_gguf)


def test_a_split_quant_with_a_part_missing_is_refused_before_any_download(
    split_repo: HubServer, isolated_home: Path
) -> None:
    del split_repo.hub.repos[REPO].files[PARTS[1]]
    line = one_error_line(pull(isolated_home, split_repo, f"hf:{REPO}", "--quant", "Q4_1"))
    assert line == (
        f"error: {REPO} Q4_1 is a GGUF split in 2 parts, and part 2 is not in the pull; "
        f"take every part, e.g. with --include 'Q4_1/{STEM}-*-of-00002.gguf'"
    )
    assert not any(path.startswith("/cdn/") for path in downloads(split_repo))


def test_a_first_part_without_its_other_parts_beside_it_is_named_not_misread(
    parts: dict[str, bytes], tmp_path: Path
) -> None:
    alone = tmp_path / Path(PARTS[0]).name
    alone.write_bytes(parts[PARTS[0]])
    with pytest.raises(StoreError) as missing:
        read_gguf_layout(alone)
    assert str(missing.value) == (
        f"{alone.name}: parts of its split missing next to it: {Path(PARTS[1]).name}"
    )
    renamed = tmp_path / "model.gguf"
    alone.rename(renamed)
    with pytest.raises(StoreError) as unnamed:
        gguf_bytes_read_per_token(renamed)
    assert str(unnamed.value) == (
        "model.gguf is part 1 of a GGUF split in 2, but is not named like one "
        "(…-00001-of-00002.gguf), so its other parts cannot be found"
    )


@pytest.mark.parametrize("corrupted", PARTS)
def test_a_corrupt_part_is_quarantined_and_no_model_is_stored(
    split_repo: HubServer, isolated_home: Path, corrupted: str
) -> None:
    split_repo.hub.corrupt.add(corrupted)
    line = one_error_line(pull(isolated_home, split_repo, f"hf:{REPO}", "--quant", "Q4_1"))
    assert f"error: {corrupted}: hash " in line
    store = store_of(isolated_home)
    assert store.names() == []
    assert not store.dirs.exists()
    quarantined = list(store.quarantine.iterdir())
    assert [q.name.endswith(Path(corrupted).name) for q in quarantined] == [True]
    bad = hashlib.sha256(quarantined[0].read_bytes()).hexdigest()
    assert not store.blob_path(bad).exists()


@pytest.mark.engine
def test_a_pulled_split_gguf_is_served_through_its_model_folder(
    engine_installed: None, split_repo: HubServer, isolated_home: Path, tmp_path: Path
) -> None:
    done = pull(isolated_home, split_repo, f"hf:{REPO}", "--quant", "Q4_1")
    assert done.returncode == 0, done.stderr
    server = start_server(isolated_home, tmp_path / "serve.log", NAME)
    try:
        engine_args = [
            arg
            for child in psutil.Process(server.process.pid).children(recursive=True)
            for arg in child.cmdline()
        ]
        folder = store_of(isolated_home).materialize(store_of(isolated_home).get(NAME))
        assert str(folder.entry) in engine_args
        reply = server.api_client.chat.completions.create(
            model=NAME, messages=[{"role": "user", "content": "Say hello."}], max_tokens=8
        )
        assert reply.choices[0].message.content
        assert reply.usage is not None and reply.usage.completion_tokens > 0
    finally:
        assert server.stop() == 0
