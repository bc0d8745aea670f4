"""`dsdeploy ps` shows a running server's models, and says so in one line when none runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsdeploy.bench.launch import free_port
from tests.conftest import Server, run_cli


@pytest.mark.engine
def test_ps_command_prints_one_row_per_model(shared_server: Server, isolated_home: Path) -> None:
    done = run_cli(isolated_home, "ps", "--url", shared_server.base_url)
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if line.startswith("smollm2"))
    assert row.split()[1:3] == ["ready", "yes"]


def test_ps_without_a_server_is_one_line_and_exit_1(isolated_home: Path) -> None:
    done = run_cli(isolated_home, "ps", "--url", f"http://127.0.0.1:{free_port()}")
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0
    assert "no dsdeploy server answered" in done.stderr
