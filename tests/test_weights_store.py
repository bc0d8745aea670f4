"""The weights key comes from a private source, and `dsdeploy encrypt` leaves no plaintext
blob in the store: through the real CLI, on a store built like a pull builds it."""

from __future__ import annotations

import hashlib
import logging
import os
import random
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from dsdeploy.errors import StoreError, WeightsKeyError
from dsdeploy.modelfile import ModelInfo
from dsdeploy.security.weights_key import CREDENTIAL, create_key_file, load_kek
from dsdeploy.security.weights_memory import decrypt_to_memfd
from dsdeploy.settings import SecuritySettings
from dsdeploy.store import HashingWriter, Manifest, Store, StoredFile
from tests.conftest import run_cli

INFO = ModelInfo(architecture="llama", context_length=2048, embedding_model=False)
WEIGHTS = random.Random(11).randbytes(3 * 2**20 + 17)


def stored(store: Store, path: str, data: bytes) -> StoredFile:
    partial = store.new_partial()
    writer = HashingWriter(partial)
    writer.write(data)
    sha256 = writer.close()
    store.commit_blob(partial, sha256, sha256)
    return StoredFile(path=path, sha256=sha256, size=len(data))


def add_model(home: Path, name: str, weights: bytes = WEIGHTS) -> Store:
    store = Store(home / "data" / "models")
    files = [stored(store, "model.gguf", weights), stored(store, "README.md", b"# readme")]
    manifest = Manifest(
        name=name,
        source="hf:org/repo",
        format="gguf",
        files=files,
        info=INFO,
        pulled_at="2026-12-01T00:00:00+00:00",
    )
    store.write_manifest(manifest)
    store.materialize(manifest)
    return store


def store_files(store: Store) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in store.root.rglob("*") if p.is_file() and not p.is_symlink()}


def test_a_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "weights.key"
    create_key_file(path)
    path.chmod(0o644)
    with pytest.raises(WeightsKeyError, match=r"readable by others \(mode 0644\); run `chmod 600"):
        load_kek(SecuritySettings(weights_key_file=path), tmp_path)


def test_keygen_writes_a_private_key_and_never_overwrites_it(isolated_home: Path) -> None:
    made = run_cli(isolated_home, "keygen-weights")
    assert made.returncode == 0, made.stderr
    key = isolated_home / "config" / "weights.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert len(bytes.fromhex(key.read_text())) == 32
    again = run_cli(isolated_home, "keygen-weights")
    assert again.returncode == 1
    assert "already exists" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


def test_key_sources_in_order_file_then_credential_then_environment(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / CREDENTIAL).write_text("11" * 32)
    environment = SecretStr("22" * 32)
    config = tmp_path / "config"
    with_env = SecuritySettings(weights_key=environment)
    with caplog.at_level(logging.WARNING):
        assert load_kek(with_env, config).key == bytes([0x22] * 32)
    assert "DSDEPLOY_WEIGHTS_KEY" in caplog.text
    both = SecuritySettings(weights_key=environment, credentials_directory=credentials)
    assert load_kek(both, config).key == bytes([0x11] * 32)
    file_kek = create_key_file(config / "weights.key")
    assert load_kek(both, config) == file_kek


def test_no_key_anywhere_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(WeightsKeyError, match="dsdeploy keygen-weights"):
        load_kek(SecuritySettings(), tmp_path)


def test_encrypt_leaves_no_plaintext_blob_and_decrypts_to_the_same_sha256(
    isolated_home: Path,
) -> None:
    store = add_model(isolated_home, "secret")
    assert run_cli(isolated_home, "keygen-weights").returncode == 0
    done = run_cli(isolated_home, "encrypt", "secret")
    assert done.returncode == 0, done.stderr
    manifest = store.get("secret")
    weights = manifest.weights
    assert weights.encrypted is not None
    assert weights.encrypted.plain_sha256 == hashlib.sha256(WEIGHTS).hexdigest()
    files = store_files(store)
    assert not any(WEIGHTS[i : i + 4096] in data for data in files.values() for i in (0, 2**20))
    readme = manifest.files[1]
    assert readme.encrypted is None and store.has_blob(readme.sha256, readme.size)
    with pytest.raises(StoreError, match="file model.gguf encrypted"):
        store.materialize(manifest)

    kek = load_kek(SecuritySettings(), isolated_home / "config")
    blob = store.stored_blob(manifest, weights)
    fd = decrypt_to_memfd(blob, kek, "secret", weights.encrypted.plain_sha256)
    try:
        decrypted = Path(f"/proc/self/fd/{fd}").read_bytes()  # as the engine opens it
        assert hashlib.sha256(decrypted).digest() == hashlib.sha256(WEIGHTS).digest()
        with pytest.raises(PermissionError):  # sealed: nobody can change the weights
            os.pwrite(fd, b"x", 0)
    finally:
        os.close(fd)

    again = run_cli(isolated_home, "encrypt", "secret")
    assert "nothing to do" in again.stderr
    back = run_cli(isolated_home, "decrypt", "secret")
    assert back.returncode == 0, back.stderr
    restored = store.get("secret").weights
    assert restored.encrypted is None
    assert store.blob_path(restored.sha256).read_bytes() == WEIGHTS
    assert not store.has_blob(weights.sha256, weights.size)


def test_a_blob_shared_with_another_model_is_encrypted_only_together(
    isolated_home: Path,
) -> None:
    store = add_model(isolated_home, "first")
    add_model(isolated_home, "second")
    assert run_cli(isolated_home, "keygen-weights").returncode == 0
    alone = run_cli(isolated_home, "encrypt", "first")
    assert alone.returncode == 1
    assert "dsdeploy encrypt first second" in alone.stderr
    assert store.get("first").weights.encrypted is None
    together = run_cli(isolated_home, "encrypt", "first", "second")
    assert together.returncode == 0, together.stderr
    assert store.get("first").weights == store.get("second").weights
    assert not store.has_blob(hashlib.sha256(WEIGHTS).hexdigest(), len(WEIGHTS))


def test_decrypting_with_another_key_is_refused_in_one_line(isolated_home: Path) -> None:
    add_model(isolated_home, "secret")
    assert run_cli(isolated_home, "keygen-weights").returncode == 0
    assert run_cli(isolated_home, "encrypt", "secret").returncode == 0
    other = isolated_home / "other.key"
    create_key_file(other)
    refused = run_cli(isolated_home, "decrypt", "secret", "--weights-key-file", str(other))
    assert refused.returncode == 1
    assert "was encrypted with key" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_a_tampered_encrypted_blob_is_refused_at_decryption(isolated_home: Path) -> None:
    store = add_model(isolated_home, "secret")
    assert run_cli(isolated_home, "keygen-weights").returncode == 0
    assert run_cli(isolated_home, "encrypt", "secret").returncode == 0
    blob = store.stored_blob(store.get("secret"), store.get("secret").weights)
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x40
    blob.write_bytes(bytes(data))
    refused = run_cli(isolated_home, "decrypt", "secret")
    assert refused.returncode == 1
    assert "failed authentication" in refused.stderr
    assert list(store.partial.iterdir()) == []
