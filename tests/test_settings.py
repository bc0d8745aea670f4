"""Options are declared once, documented, read from DSDEPLOY_*, and closed by default."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsdeploy.settings import GROUPS, Settings, settings_from
from tests.conftest import run_cli


def test_every_setting_has_a_description() -> None:
    models = (Settings, *GROUPS.values())
    missing = [n for model in models for n, f in model.model_fields.items() if not f.description]
    assert missing == []


def test_each_option_is_declared_in_exactly_one_group() -> None:
    names = [n for model in (Settings, *GROUPS.values()) for n in model.model_fields]
    assert len(names) == len(set(names))


def test_flags_reach_their_group_and_win_over_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DSDEPLOY_PORT", "9123")
    monkeypatch.setenv("DSDEPLOY_THREADS", "3")
    settings = settings_from({"port": 9200, "keep_alive_s": 10.0, "threads": None})
    assert (settings.gateway.port, settings.engine.threads) == (9200, 3)
    assert settings.serving.keep_alive_s == 10.0


def test_api_listens_only_on_loopback_by_default() -> None:
    assert Settings().gateway.host == "127.0.0.1"


def test_environment_variables_set_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSDEPLOY_PORT", "9123")
    monkeypatch.setenv("DSDEPLOY_PARALLEL", "2")
    settings = Settings()
    assert (settings.gateway.port, settings.engine.parallel) == (9123, 2)


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
