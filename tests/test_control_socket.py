"""`dsdeploy reload` reaches the server through a Unix socket only its user can open; a
socket left by a killed server neither stops the next one nor fools the client."""

from __future__ import annotations

import asyncio
import socket
import stat
from pathlib import Path

import pytest

from dsdeploy.control import control_socket
from dsdeploy.control.client import request_reload
from dsdeploy.control.server import ControlSocket, bind_private, control_app
from dsdeploy.errors import ConfigError, ReloadFailed, ServerUnreachable
from dsdeploy.runtime.pool import EnginePool, ModelSpec
from dsdeploy.runtime.reload import ReloadOutcome
from dsdeploy.runtime.supervisor import Supervisor
from tests.conftest import run_cli
from tests.stub_engine import StubEngine, stub_supervisor


def stale_socket(path: Path) -> None:
    """What a killed server leaves: the socket file, with nobody listening."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))


def test_a_stale_socket_is_replaced_by_one_only_this_user_can_open(tmp_path: Path) -> None:
    path = control_socket(tmp_path)
    stale_socket(path)
    sock = bind_private(path)
    try:
        assert path.is_socket()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        sock.close()


def test_a_folder_other_users_can_write_is_refused(tmp_path: Path) -> None:
    tmp_path.chmod(0o777)
    with pytest.raises(ConfigError, match=f"chmod 700 {tmp_path}"):
        bind_private(control_socket(tmp_path))


def test_a_client_finding_a_stale_socket_says_no_server_runs(tmp_path: Path) -> None:
    stale_socket(control_socket(tmp_path))
    with pytest.raises(ServerUnreachable, match="no dsdeploy serve is running for data dir"):
        request_reload(tmp_path, None)


def test_reload_without_a_running_server_is_one_line_and_exit_1(isolated_home: Path) -> None:
    done = run_cli(isolated_home, "reload")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: no dsdeploy serve is running for data dir {isolated_home / 'data'}; start it "
        "with `dsdeploy serve`"
    ]


def stub_pool(folder: Path) -> EnginePool:
    def make() -> Supervisor:
        return stub_supervisor(StubEngine(), folder)

    spec = ModelSpec("a", make, 2**20, slots=2, pinned=True, preload=True)
    return EnginePool([spec], budget_bytes=2**30, keep_alive_s=None, load_wait_s=30)


@pytest.mark.anyio
async def test_reload_through_the_control_socket(tmp_path: Path) -> None:
    pool = stub_pool(tmp_path)
    reported: list[ReloadOutcome] = []
    control = ControlSocket(tmp_path, control_app(pool, reported.append))
    await pool.start()
    await control.start()
    try:
        outcomes = await asyncio.to_thread(request_reload, tmp_path, None)
        assert [(o.model, o.mode, o.error) for o in outcomes] == [("a", "blue-green", "")]
        assert reported == outcomes  # the server's log has them too
        with pytest.raises(ReloadFailed, match="'zzz' is not served here; served: a"):
            await asyncio.to_thread(request_reload, tmp_path, "zzz")
    finally:
        await control.stop()
        await pool.stop()
    assert not control.path.exists()


@pytest.mark.anyio
async def test_a_server_leaves_the_socket_that_a_newer_server_took_over(tmp_path: Path) -> None:
    pool = stub_pool(tmp_path)
    older = ControlSocket(tmp_path, control_app(pool, print))
    await older.start()
    newer = ControlSocket(tmp_path, control_app(pool, print))
    await newer.start()
    await older.stop()
    assert control_socket(tmp_path).is_socket()
    await newer.stop()
    assert not control_socket(tmp_path).exists()
