"""Options are declared once, documented, read from DSDEPLOY_*, and closed by default."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsdeploy.settings import Settings
from tests.conftest import run_cli


def test_every_setting_has_a_description() -> None:
    missing = [name for name, field in Settings.model_fields.items() if not field.description]
    assert missing == []


def test_api_listens_only_on_loopback_by_default() -> None:
    assert Settings().host == "127.0.0.1"


def test_environment_variables_set_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSDEPLOY_PORT", "9123")
    monkeypatch.setenv("DSDEPLOY_PARALLEL", "2")
    settings = Settings()
    assert (settings.port, settings.parallel) == (9123, 2)


def test_home_holds_data_cache_and_config(tmp_path: Path) -> None:
    dirs = Settings(home=tmp_path, cache_dir=None).dirs
    assert {dirs.data.parent, dirs.cache.parent, dirs.config.parent} == {tmp_path}


def test_xdg_directories_are_honoured_without_a_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("DSDEPLOY_HOME")
    monkeypatch.delenv("DSDEPLOY_CACHE_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xd"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xc"))
    dirs = Settings().dirs
    assert dirs.data == tmp_path / "xd" / "dsdeploy"
    assert dirs.cache == tmp_path / "xc" / "dsdeploy"


def test_a_nonsense_flag_value_is_one_line_and_exit_2(isolated_home: Path) -> None:
    done = run_cli(isolated_home, "serve", "--port", "70000")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: invalid setting port: Input should be less than or equal to 65535"
    ]


def test_a_nonsense_environment_value_is_one_line_and_exit_2(isolated_home: Path) -> None:
    done = run_cli(isolated_home, "serve", DSDEPLOY_THREADS="many")
    assert done.returncode == 2
    assert "invalid setting threads" in done.stderr
