"""``dsdeploy models export`` / ``import``: a store copied to several places and restored
verified; a corrupted or truncated export adds nothing and names the bad file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsdeploy.store import Store
from tests.conftest import run_cli
from tests.hub_models import tiny_checkpoint


@pytest.fixture
def home_with_model(tmp_path: Path) -> Path:
    folder = tmp_path / "tiny-ckpt"
    folder.mkdir()
    for name, data in tiny_checkpoint().items():
        (folder / name).write_bytes(data)
    home = tmp_path / "source-home"
    done = run_cli(home, "pull", str(folder), "--name", "tiny")
    assert done.returncode == 0, done.stderr
    return home


def exported(home: Path, to: Path) -> str:
    done = run_cli(home, "models", "export", "--to", str(to))
    assert done.returncode == 0, done.stderr
    return done.stderr


def the_weights(export: Path) -> Path:
    record = json.loads((export / "dsdeploy-export.json").read_text())
    weights = max(record["blobs"], key=lambda blob: blob["size"])
    return export / "blobs" / f"sha256-{weights['sha256']}"


def test_an_export_in_two_places_restores_the_same_model(
    home_with_model: Path, tmp_path: Path
) -> None:
    first, second = tmp_path / "disk-a", tmp_path / "disk-b"
    exported(home_with_model, first)
    exported(home_with_model, second)
    assert "0 file(s) copied" in exported(home_with_model, first)  # already there, re-hashed
    for place in (first, second):
        home = tmp_path / f"restored-{place.name}"
        done = run_cli(home, "models", "import", str(place))
        assert done.returncode == 0, done.stderr
        original = Store(home_with_model / "data" / "models").get("tiny")
        restored = Store(home / "data" / "models").get("tiny")
        assert restored.files == original.files
        verified = run_cli(home, "models", "verify", "tiny")
        assert verified.returncode == 0, verified.stderr


@pytest.mark.parametrize("damage", ["flip", "truncate", "remove"])
def test_a_damaged_export_is_refused_naming_the_file(
    home_with_model: Path, tmp_path: Path, damage: str
) -> None:
    export = tmp_path / "backup"
    exported(home_with_model, export)
    blob = the_weights(export)
    data = bytearray(blob.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
        blob.write_bytes(data)
    elif damage == "truncate":
        blob.write_bytes(data[:-1])
    else:
        blob.unlink()
    home = tmp_path / "restored"
    done = run_cli(home, "models", "import", str(export))
    assert done.returncode == 1
    assert str(blob) in done.stderr
    assert "Traceback" not in done.stderr
    assert Store(home / "data" / "models").names() == []


def test_importing_over_a_different_model_of_that_name_is_refused(
    home_with_model: Path, tmp_path: Path
) -> None:
    export = tmp_path / "backup"
    exported(home_with_model, export)
    record = json.loads((export / "dsdeploy-export.json").read_text())
    record["models"][0]["files"][0]["size"] += 1
    (export / "dsdeploy-export.json").write_text(json.dumps(record))
    done = run_cli(home_with_model, "models", "import", str(export))
    assert done.returncode == 1
    assert "already has a different 'tiny'" in done.stderr


def test_a_folder_that_is_not_an_export_is_refused(tmp_path: Path) -> None:
    done = run_cli(tmp_path / "home", "models", "import", str(tmp_path))
    assert done.returncode == 1
    assert "is not a dsdeploy export" in done.stderr


def test_an_export_folder_that_cannot_be_made_is_one_line(
    home_with_model: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    done = run_cli(home_with_model, "models", "export", "--to", str(blocker / "x"))
    assert done.returncode == 1
    assert "cannot export to" in done.stderr
    assert "Traceback" not in done.stderr
