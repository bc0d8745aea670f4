"""What a careless or hostile client can cost the server is bounded: body size, idle and
concurrent connections, echoed input, and engine time after the client has gone."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from dsdeploy.settings import GatewaySettings
from tests.conftest import Server, decoding_stream_body, engine_of, engine_socket, start_server

pytestmark = pytest.mark.engine

CAP = GatewaySettings.model_fields["max_body_bytes"].default
HELLO = [{"role": "user", "content": "hi"}]
IDLE_TIMEOUT_S = 1
MAX_CONNECTIONS = 8


@pytest.fixture(scope="module")
def limited_server(model_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One engine slot, a short idle timeout and few connections."""
    server = start_server(
        model_home,
        tmp_path_factory.mktemp("limited") / "serve.log",
        "--parallel",
        "1",
        DSDEPLOY_IDLE_TIMEOUT_S=str(IDLE_TIMEOUT_S),
        DSDEPLOY_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
    )
    yield server
    server.stop()


HEAD = b'{"model": "smollm2", "messages": [{"role": "user", "content": "'
TAIL = b'"}]}'


def body_of(mib: int) -> Iterator[bytes]:
    yield HEAD
    block = b"x" * 2**20
    for _ in range(mib):
        yield block
    yield TAIL


@pytest.mark.parametrize(("mib", "declared"), [(64, True), (256, False)])
def test_body_over_the_cap_is_413_before_the_engine_sees_a_byte(
    shared_server: Server, mib: int, declared: bool
) -> None:
    gateway = psutil.Process(shared_server.process.pid)
    log_size = shared_server.engine_log.stat().st_size
    rss = gateway.memory_info().rss
    size = len(HEAD) + mib * 2**20 + len(TAIL)
    headers = {"content-length": str(size)} if declared else {}  # else chunked
    response = httpx.post(
        shared_server.api + "/chat/completions", content=body_of(mib), headers=headers
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert gateway.memory_info().rss - rss < 2 * CAP
    assert shared_server.engine_log.stat().st_size == log_size


def test_idle_connections_are_closed_after_the_idle_timeout(limited_server: Server) -> None:
    port = int(limited_server.base_url.rsplit(":", 1)[1])
    start = time.monotonic()
    idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(3)]
    try:
        assert [sock.recv(1) for sock in idle] == [b"", b"", b""]  # closed by the server
    finally:
        for sock in idle:
            sock.close()
    assert IDLE_TIMEOUT_S * 0.8 < time.monotonic() - start < IDLE_TIMEOUT_S + 2


def test_connections_beyond_the_limit_are_answered_503_and_closed(
    limited_server: Server,
) -> None:
    port = int(limited_server.base_url.rsplit(":", 1)[1])
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(MAX_CONNECTIONS)]
    try:
        with httpx.Client() as client:
            refused = client.get(limited_server.base_url + "/health")
    finally:
        for sock in held:
            sock.close()
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "busy"
    time.sleep(0.2)
    assert httpx.get(limited_server.base_url + "/health").status_code == 200


def test_huge_headers_are_431_not_held(limited_server: Server) -> None:
    with pytest.raises(httpx.HTTPStatusError) as caught:
        httpx.get(
            limited_server.base_url + "/health", headers={"x-big": "a" * 2**20}
        ).raise_for_status()
    assert caught.value.response.status_code == 431


@pytest.mark.parametrize("split", [None, 1000, 40_000])
def test_a_body_arriving_with_its_headers_is_not_counted_as_headers(
    limited_server: Server, split: int | None
) -> None:
    body = b'{"model": "smollm2", "content": "' + b"word " * 20_000 + b'"}'
    head = b"POST /tokenize HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: %d\r\n\r\n" % len(body)
    request = head + body
    port = int(limited_server.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        parts = [request] if split is None else [request[:split], request[split:]]
        for part in parts:
            sock.sendall(part)
            time.sleep(0.05)
        assert sock.recv(12) == b"HTTP/1.1 200"


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
def test_a_megabyte_model_name_is_not_echoed(shared_server: Server, path: str) -> None:
    name = "m" * 1_000_000
    body = {"model": name, "messages": HELLO, "max_tokens": 2}
    response = httpx.post(shared_server.base_url + path, json=body)
    assert response.status_code == 400
    assert len(response.content) < 500


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
def test_long_unknown_names_and_bad_values_are_echoed_at_most_100_chars(
    shared_server: Server, path: str
) -> None:
    unknown = {"model": "u" * 200, "messages": HELLO, "max_tokens": 2}
    bad_role = {"model": "smollm2", "messages": [{"role": "r" * 10_000}], "max_tokens": 2}
    for body, repeated in ((unknown, "u" * 101), (bad_role, "r" * 101)):
        response = httpx.post(shared_server.base_url + path, json=body)
        assert response.status_code in (400, 404)
        assert repeated not in response.text


def slots_busy(server: Server) -> int:
    transport = httpx.HTTPTransport(uds=str(engine_socket(engine_of(server))))
    with httpx.Client(transport=transport, base_url="http://engine") as engine:
        return sum(slot["is_processing"] for slot in engine.get("/slots").json())


def slot_busy(server: Server) -> bool:
    return slots_busy(server) > 0


def assert_slot_freed_and_next_request_served(server: Server) -> None:
    # One look, 2 s after the client left: llama-server checks a plain request's connection
    # only after a second in which no result came for any request, and a look is a request.
    time.sleep(2.0)
    assert not slot_busy(server)
    start = time.monotonic()
    reply = server.api_client.chat.completions.create(model="smollm2", messages=HELLO, max_tokens=2)
    assert reply.choices[0].message.content is not None
    assert time.monotonic() - start < 15  # the abandoned request alone needs far more


def test_abandoned_plain_request_frees_the_engine_slot(limited_server: Server) -> None:
    body = {**decoding_stream_body(3000), "stream": False}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(limited_server.api + "/chat/completions", json=body, timeout=1.0)
    assert_slot_freed_and_next_request_served(limited_server)


def test_abandoned_plain_request_frees_its_slot_while_another_generates(
    model_home: Path, tmp_path: Path
) -> None:
    """llama-server learns that a plain request's client left only when its wait for results
    times out; our engine build makes that wait end at a deadline, so results streaming to
    another request no longer keep postponing it."""
    server = start_server(model_home, tmp_path / "serve.log", "--parallel", "2")
    try:
        url = server.api + "/chat/completions"
        with httpx.stream("POST", url, json=decoding_stream_body(3000)) as stream:
            lines = stream.iter_lines()
            assert next(line for line in lines if line.startswith("data: {"))
            plain = {**decoding_stream_body(3000), "stream": False}
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(url, json=plain, timeout=1.0)
            time.sleep(2.0)
            assert slots_busy(server) == 1  # the stream's; the abandoned request's is free
    finally:
        server.stop()


def test_abandoned_stream_frees_the_engine_slot(limited_server: Server) -> None:
    url = limited_server.api + "/chat/completions"
    with httpx.stream("POST", url, json=decoding_stream_body(3000)) as response:
        lines = response.iter_lines()
        assert next(line for line in lines if line.startswith("data: {"))
    assert_slot_freed_and_next_request_served(limited_server)
