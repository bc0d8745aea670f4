"""The engine is restarted when it dies, stopped when dsdeploy stops, and never orphaned."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest

from dsdeploy.bench.launch import wait_healthy
from tests.conftest import (
    Server,
    decoding_stream_body,
    engine_of,
    engine_socket,
    free_port,
    gone,
    run_cli,
    start_server,
)

pytestmark = pytest.mark.engine

HELLO = [{"role": "user", "content": "hi"}]


def test_engine_is_reachable_only_through_a_private_socket(shared_server: Server) -> None:
    socket_path = engine_socket(engine_of(shared_server))
    assert socket_path.is_socket()
    assert socket_path.parent.stat().st_mode & 0o777 == 0o700
    assert not [c for c in engine_of(shared_server).net_connections("inet") if c.status == "LISTEN"]


def test_killed_engine_is_restarted_and_serves_again(own_server: Server) -> None:
    first = engine_of(own_server)
    first.kill()
    during = httpx.post(
        own_server.base_url + "/v1/chat/completions",
        json={"model": "smollm2", "messages": HELLO, "max_tokens": 2},
    )
    assert during.status_code == 503
    assert during.json()["error"]["code"] == "engine_unavailable"
    wait_healthy(own_server.process, own_server.base_url, own_server.log, timeout_s=60)
    assert engine_of(own_server).pid != first.pid
    reply = own_server.api_client.chat.completions.create(
        model="smollm2", messages=HELLO, max_tokens=2
    )
    assert reply.choices[0].message.content is not None


def test_health_is_503_while_the_engine_restarts(own_server: Server) -> None:
    engine_of(own_server).kill()
    deadline = time.monotonic() + 5
    statuses = set()
    while time.monotonic() < deadline and 503 not in statuses:
        statuses.add(httpx.get(own_server.base_url + "/health").status_code)
    assert 503 in statuses


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_stops_the_engine_and_exits_cleanly(
    own_server: Server, stop_signal: signal.Signals
) -> None:
    engine = engine_of(own_server)
    rundir = engine_socket(engine).parent
    own_server.process.send_signal(stop_signal)
    assert own_server.process.wait(timeout=60) == 0
    assert gone(engine)
    assert not rundir.exists()


def test_killed_gateway_leaves_no_engine_behind(own_server: Server) -> None:
    engine = engine_of(own_server)
    own_server.process.send_signal(signal.SIGKILL)
    own_server.process.wait(timeout=10)
    assert gone(engine)


def test_engine_that_cannot_load_fails_with_its_log_and_leaves_nothing(
    model_home: Path, tmp_path: Path
) -> None:
    fake = tmp_path / "llama-server"
    fake.write_text("#!/bin/sh\necho 'version: 9.9 (fake)'\necho 'error: invalid magic' >&2\n")
    fake.chmod(0o755)
    port = str(free_port())
    done = run_cli(model_home, "serve", "--port", port, DSDEPLOY_LLAMA_SERVER=str(fake))
    assert done.returncode == 1
    assert "failed its smoke test on" in done.stderr
    assert "it exited with code 0" in done.stderr
    assert "invalid magic" in done.stderr
    assert "run `dsdeploy pull` again" in done.stderr
    assert "Traceback" not in done.stderr


def test_second_server_on_a_taken_port_says_so_before_loading(
    shared_server: Server, model_home: Path
) -> None:
    port = shared_server.base_url.rsplit(":", 1)[1]
    done = run_cli(model_home, "serve", "--port", port)
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "--port" in done.stderr


def test_server_started_with_two_slots_still_answers(model_home: Path, tmp_path: Path) -> None:
    server = start_server(model_home, tmp_path / "serve.log", "--parallel", "2", "--threads", "1")
    try:
        argv = engine_of(server).cmdline()
        assert argv[argv.index("--parallel") + 1] == "2"
        assert argv[argv.index("--threads") + 1] == "1"
        reply = server.api_client.completions.create(model="smollm2", prompt="Hi", max_tokens=2)
        assert reply.choices[0].text is not None
    finally:
        server.stop()


def test_engine_dying_mid_stream_ends_the_stream_with_an_error_event(own_server: Server) -> None:
    body = decoding_stream_body(2000)
    engine = engine_of(own_server)
    events = []
    with httpx.stream("POST", own_server.base_url + "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(line)
            if len(events) == 5:
                engine.kill()
    assert len(events) < 2000
    assert '"code": "engine_unavailable"' in events[-1]


HEALTH_INTERVAL_S = 0.5


@pytest.mark.parametrize(
    "own_server", [{"DSDEPLOY_HEALTH_INTERVAL_S": str(HEALTH_INTERVAL_S)}], indirect=True
)
def test_stopped_engine_is_killed_as_hung_and_restarted(own_server: Server) -> None:
    first = engine_of(own_server)
    first.suspend()  # SIGSTOP: the process lives on and answers nothing
    deadline = time.monotonic() + HEALTH_INTERVAL_S * 3 + 10
    health = httpx.get(own_server.base_url + "/health")
    while health.status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.05)
        health = httpx.get(own_server.base_url + "/health")
    assert health.status_code == 503
    assert "health checks in a row" in health.json()["reason"]
    assert gone(first, timeout=1)
    wait_healthy(own_server.process, own_server.base_url, own_server.log, timeout_s=60)
    assert engine_of(own_server).pid != first.pid
    reply = own_server.api_client.chat.completions.create(
        model="smollm2", messages=HELLO, max_tokens=2
    )
    assert reply.choices[0].message.content is not None
