"""A stop signal drains the gateway: answers in flight, streams included, run to their end
while nothing new is taken; past the drain timeout, or at a second signal, what is still
open ends with an error in its API's shape, and the server stops.

These run the gateway in front of the stub engine in a thread, so the signal reaches the
server's handler (``handle_exit``) directly; ``test_stop_under_load.py`` sends real
signals to ``dsdeploy serve`` with the real engine."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dsdeploy.gateway.app import create_app
from dsdeploy.gateway.drain import CUT_GRACE_S
from dsdeploy.gateway.server import uvicorn_config
from dsdeploy.settings import settings_from
from tests.api_clients import ChatClient
from tests.stub_engine import StubEngine
from tests.threaded_gateway import StubGateway, stub_gateway, stub_pool

TOKEN_DELAY_S = 0.05


def chat(tokens: int, *, stream: bool) -> dict[str, Any]:
    prompt = [{"role": "user", "content": "hello there"}]
    return {"model": "stub", "messages": prompt, "max_tokens": tokens, "stream": stream}


@pytest.fixture
def gateway(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[StubGateway]:
    """A gateway whose stub engine takes 50 ms per token; the drain timeout is the
    indirect parameter (30 s when not given)."""
    engine = StubEngine(token_delay_s=TOKEN_DELAY_S)
    drain_timeout_s = getattr(request, "param", 30.0)
    with stub_gateway(tmp_path, engine=engine, drain_timeout_s=drain_timeout_s) as gateway:
        yield gateway


def signal_stop(gateway: StubGateway) -> float:
    """Deliver SIGTERM the way uvicorn's handler receives it; returns when."""
    gateway.server.handle_exit(signal.SIGTERM, None)
    return time.monotonic()


def until(check: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def refuses_connections(base_url: str) -> bool:
    try:
        httpx.get(base_url + "/health/live", timeout=1)
    except httpx.ConnectError:
        return True
    return False


def answer_unless_refused(ask: Callable[[], httpx.Response]) -> httpx.Response | None:
    """The answer, or None once the listener has closed (within 0.1 s of the signal)."""
    try:
        return ask()
    except httpx.ConnectError:
        return None


def in_flight(gateway: StubGateway) -> object:
    return gateway.pool.status()[0]["in_flight"]


def test_stop_lets_streams_in_flight_finish_and_takes_nothing_new(gateway: StubGateway) -> None:
    streams = [ChatClient(gateway.base_url, chat(20, stream=True)) for _ in range(3)]  # ~1 s
    for stream in streams:
        assert stream.first_byte.wait(10)
    signal_stop(gateway)
    ready = answer_unless_refused(lambda: httpx.get(gateway.base_url + "/health/ready"))
    if ready is not None:
        assert (ready.status_code, ready.json()["reason"]) == (503, "the gateway is shutting down")
    late = answer_unless_refused(
        lambda: httpx.post(gateway.base_url + "/v1/chat/completions", json=chat(2, stream=False))
    )
    if late is not None:
        assert (late.status_code, late.json()["error"]["code"]) == (503, "shutting_down")
    for stream in streams:
        stream.wait(10)
        assert stream.finished()
        assert stream.text() == " ".join(f"tok{i}" for i in range(20))
    until(lambda: refuses_connections(gateway.base_url), timeout_s=5)


@pytest.mark.parametrize("gateway", [0.5], indirect=True)
def test_answers_still_open_when_the_drain_runs_out_end_with_an_error(
    gateway: StubGateway,
) -> None:
    stream = ChatClient(gateway.base_url, chat(400, stream=True))  # 20 s
    assert stream.first_byte.wait(10)
    plain = ChatClient(gateway.base_url, chat(400, stream=False))
    until(lambda: in_flight(gateway) == 2, timeout_s=5)
    stopped_at = signal_stop(gateway)
    stream.wait(5)
    plain.wait(5)
    assert stream.ended_at is not None and stream.ended_at - stopped_at < 0.5 + 1.0
    assert (stream.status, stream.error_code()) == (200, "shutting_down")
    assert (plain.status, plain.error_code()) == (503, "shutting_down")
    until(lambda: refuses_connections(gateway.base_url), timeout_s=3)


def test_second_stop_signal_ends_the_drain_at_once(gateway: StubGateway) -> None:
    stream = ChatClient(gateway.base_url, chat(400, stream=True))
    assert stream.first_byte.wait(10)
    signal_stop(gateway)
    time.sleep(0.3)
    assert stream.thread.is_alive()  # draining: the stream goes on
    again = signal_stop(gateway)
    stream.wait(5)
    assert stream.ended_at is not None and stream.ended_at - again < 1.0
    assert stream.error_code() == "shutting_down"
    until(lambda: refuses_connections(gateway.base_url), timeout_s=3)


def test_drain_timeout_is_read_from_the_environment_and_bounds_uvicorn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DSDEPLOY_DRAIN_TIMEOUT_S", "7.5")
    gateway = settings_from({}).gateway
    app = create_app(stub_pool(tmp_path, ["stub"], StubEngine()), gateway)
    assert app.state.drain.timeout_s == 7.5
    backstop = uvicorn_config(app, gateway).timeout_graceful_shutdown
    assert backstop is not None and 7.5 + CUT_GRACE_S <= backstop < 7.5 + CUT_GRACE_S + 1
