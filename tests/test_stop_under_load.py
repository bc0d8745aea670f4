"""``dsdeploy serve`` with the real engine, under load: SIGTERM drains (every stream in
flight ends whole, exit 0), the drain timeout ends what is left, and an engine killed
(SIGKILL) or stopped (SIGSTOP) under load fails each request within seconds, then comes
back. Each test prints what it measured."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dsdeploy.bench.launch import wait_healthy
from tests.api_clients import ChatClient
from tests.conftest import Server, decoding_stream_body, engine_of, gone, start_server

pytestmark = pytest.mark.engine

ENGINE = ["--threads", "1"]
"""One decode thread: two threads that wait for each other at every step slow to a crawl
when other processes keep the cores busy."""
MAX_WAIT_S = 5.0
"""Longest a client may wait for its answer or its error once the engine is gone."""


def plain_body(max_tokens: int) -> dict[str, Any]:
    return {**decoding_stream_body(max_tokens), "stream": False}


def until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def in_flight(server: Server) -> int:
    return int(httpx.get(server.base_url + "/ps").json()["models"][0]["in_flight"])


def refused_or_503(server: Server) -> bool:
    try:
        answer = httpx.post(server.base_url + "/v1/chat/completions", json=plain_body(2))
    except httpx.ConnectError:
        return True
    return answer.status_code == 503


@pytest.fixture
def server(model_home: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Server]:
    """``dsdeploy serve`` with the indirect parameter's flags (and ``DSDEPLOY_*``
    variables, when the parameter is a pair of both)."""
    flags, env = request.param if isinstance(request.param, tuple) else (request.param, {})
    started = start_server(model_home, tmp_path / "serve.log", *ENGINE, *flags, **env)
    yield started
    started.stop()


@pytest.mark.parametrize("server", [["--parallel", "4", "--drain-timeout", "600"]], indirect=True)
def test_sigterm_lets_twenty_streams_finish_then_exits_0(server: Server) -> None:
    clients = [ChatClient(server.base_url, decoding_stream_body(48), 600) for _ in range(20)]
    until(lambda: in_flight(server) == 20, 60, "20 requests in flight")
    stopped_at = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    assert refused_or_503(server)
    assert server.process.wait(timeout=600 + 30) == 0
    exit_s = time.monotonic() - stopped_at
    for client in clients:
        client.wait(5)
    finished = sum(client.finished() for client in clients)
    last_end = max(client.ended_at or 0.0 for client in clients) - stopped_at
    print(
        f"\n20 streams, 4 slots: {finished}/20 whole; last ended {last_end:.1f} s and the "
        f"server exited {exit_s:.1f} s after SIGTERM"
    )
    assert finished == 20
    assert exit_s < 600


@pytest.mark.parametrize("server", [["--parallel", "2", "--drain-timeout", "2"]], indirect=True)
def test_drain_timeout_ends_long_streams_with_an_error_and_exits(server: Server) -> None:
    decoding = [ChatClient(server.base_url, decoding_stream_body(2000)) for _ in range(2)]
    for client in decoding:
        assert client.first_byte.wait(60)
    queued = ChatClient(server.base_url, decoding_stream_body(2000))  # no slot left
    until(lambda: in_flight(server) == 3, 10, "3 requests in flight")
    stopped_at = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0
    exit_s = time.monotonic() - stopped_at
    for client in [*decoding, queued]:
        client.wait(5)
    ends = [(client.ended_at or 0.0) - stopped_at for client in [*decoding, queued]]
    print(
        f"\ndrain timeout 2 s: answers ended {', '.join(f'{s:.2f}' for s in ends)} s and "
        f"the server exited {exit_s:.2f} s after SIGTERM"
    )
    for client in decoding:
        assert (client.status, client.error_code()) == (200, "shutting_down")
    assert (queued.status, queued.error_code()) == (503, "shutting_down")
    assert max(ends) < 2 + 1
    assert exit_s < 2 + 6  # the engine stops in 0.3 s; the rest is the process ending


def load(server: Server) -> list[ChatClient]:
    """Eight clients, four streaming and four not, each with a request in flight (four
    decoding in the engine's slots, four in its queue)."""
    clients = [
        ChatClient(server.base_url, body(400), timeout_s=60)
        for body in [decoding_stream_body, plain_body] * 4
    ]
    until(lambda: in_flight(server) == 8, 60, "8 requests in flight")
    return clients


def outcomes(clients: list[ChatClient], since: float) -> list[tuple[float, str]]:
    """How long after ``since`` each client's answer ended, and how."""
    for client in clients:
        client.wait(30)
    return [
        ((c.ended_at or 0.0) - since, f"{c.status} {c.error_code() or 'whole'}") for c in clients
    ]


def readiness_back(server: Server, since: float) -> tuple[float, float]:
    """Seconds from ``since`` until readiness said 503, then 200 again."""

    def ready() -> bool:
        return httpx.get(server.base_url + "/health/ready").status_code == 200

    until(lambda: not ready(), 5, "readiness to drop")
    dropped = time.monotonic() - since
    until(ready, 60, "readiness to come back")
    return dropped, time.monotonic() - since


@pytest.mark.parametrize("server", [["--parallel", "4"]], indirect=True)
def test_engine_killed_under_load_fails_every_request_within_seconds(server: Server) -> None:
    clients = load(server)
    engine = engine_of(server)
    killed_at = time.monotonic()
    engine.kill()
    dropped_s, ready_s = readiness_back(server, killed_at)
    ended = outcomes(clients, killed_at)
    recovery_s = httpx.get(server.base_url + "/ps").json()["models"][0]["recovery_s"]
    print(
        f"\nSIGKILL under load: clients ended {[f'{s:.2f} s {how}' for s, how in ended]}; "
        f"readiness 503 after {dropped_s:.2f} s, 200 again after {ready_s:.2f} s; "
        f"supervisor's recovery {recovery_s:.2f} s"
    )
    assert max(seconds for seconds, _ in ended) < MAX_WAIT_S
    assert all(how.split()[0] in ("200", "503") and how != "200 whole" for _, how in ended)
    assert "engine ready again after" in server.log.read_text()
    assert 0 < recovery_s < ready_s


HEALTH_INTERVAL_S = 0.5


@pytest.mark.parametrize(
    "server",
    [(["--parallel", "4"], {"DSDEPLOY_HEALTH_INTERVAL_S": str(HEALTH_INTERVAL_S)})],
    indirect=True,
)
def test_engine_stopped_under_load_fails_every_request_once_found_hung(server: Server) -> None:
    clients = load(server)
    engine = engine_of(server)
    stopped_at = time.monotonic()
    engine.suspend()  # SIGSTOP: its sockets stay open and nothing answers
    ended = outcomes(clients, stopped_at)
    assert gone(engine, timeout=1)
    wait_healthy(server.process, server.base_url, server.log, timeout_s=60)
    print(
        f"\nSIGSTOP under load (health every {HEALTH_INTERVAL_S} s, 3 misses): clients "
        f"ended {[f'{s:.2f} s {how}' for s, how in ended]}"
    )
    bound = HEALTH_INTERVAL_S * (3 + 1) + MAX_WAIT_S
    assert max(seconds for seconds, _ in ended) < bound
    assert all(how != "200 whole" for _, how in ended)
