"""Several gateway replicas share one key's limits through a real Redis: its requests per
minute and its requests at once hold across them, and a replica that dies does not keep
the slots it held."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from dsdeploy.bench.launch import free_port
from tests.real_servers import redis_url
from tests.stub_gateway import Gateway, post_until_admitted, start_gateway
from tests.test_limits import CHAT, chat

__all__ = ["redis_url"]

LEASE_S = 2


@pytest.fixture(scope="module")
def replicas(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Gateway]]:
    folder = tmp_path_factory.mktemp("replicas")
    started: list[Gateway] = []
    try:
        for name in ("a", "b"):
            started.append(
                start_gateway(
                    folder / f"{name}.log",
                    DSDEPLOY_REDIS_URL=redis_url,
                    DSDEPLOY_SLOT_LEASE_S=str(LEASE_S),
                    STUB_TOKEN_DELAY_S="0.02",
                )
            )
        yield started
    finally:
        for gateway in started:
            gateway.stop()


async def spread(replicas: list[Gateway], headers: dict[str, str], count: int) -> list[int]:
    """``count`` requests at once, alternating between the replicas."""
    clients = [httpx.AsyncClient(base_url=r.base_url, timeout=30) for r in replicas]
    try:
        answers = await asyncio.gather(
            *(
                clients[i % len(clients)].post(CHAT, json=chat(), headers=headers)
                for i in range(count)
            )
        )
    finally:
        for client in clients:
            await client.aclose()
    return [answer.status_code for answer in answers]


def test_two_replicas_admit_60_of_100_requests_for_a_60_rpm_key(replicas: list[Gateway]) -> None:
    codes = asyncio.run(spread(replicas, replicas[0].key(rpm=60), 100))
    assert 59 <= codes.count(200) <= 61
    assert codes.count(429) == 100 - codes.count(200)


def test_a_slot_held_on_one_replica_is_refused_on_the_other(replicas: list[Gateway]) -> None:
    first, second = replicas
    headers = first.key(concurrent=1)
    with (
        httpx.Client(base_url=first.base_url, timeout=30) as client,
        client.stream("POST", CHAT, json=chat(100, stream=True), headers=headers) as stream,
    ):
        lines = stream.iter_lines()
        next(lines)
        refused = httpx.post(second.base_url + CHAT, json=chat(), headers=headers)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limit_exceeded"
        list(lines)  # the answer ends: its slot is given back
    assert httpx.post(second.base_url + CHAT, json=chat(), headers=headers).status_code == 200


def test_slots_of_a_replica_that_died_come_back_after_the_lease(
    redis_url: str, replicas: list[Gateway], tmp_path: Path
) -> None:
    doomed = start_gateway(
        tmp_path / "doomed.log",
        DSDEPLOY_REDIS_URL=redis_url,
        DSDEPLOY_DB_URL=str(replicas[0].store.engine.url),  # the replicas' keys
        DSDEPLOY_SLOT_LEASE_S=str(LEASE_S),
        STUB_TOKEN_DELAY_S="0.05",
    )
    headers = doomed.key(concurrent=1)
    process = psutil.Process(doomed.process.pid)
    try:
        with (
            httpx.Client(base_url=doomed.base_url, timeout=30) as client,
            client.stream("POST", CHAT, json=chat(1000, stream=True), headers=headers) as stream,
        ):
            lines = stream.iter_lines()  # kept open: the slot stays held
            next(lines)
            for child in process.children(recursive=True):  # its engine, then itself
                child.kill()
            process.send_signal(signal.SIGKILL)
            process.wait(10)
    except httpx.HTTPError:
        pass  # the stream broke: its replica is gone
    finally:
        doomed.stop()
    other = replicas[0]
    assert httpx.post(other.base_url + CHAT, json=chat(), headers=headers).status_code == 429
    answer = post_until_admitted(other.base_url + CHAT, chat(), headers, LEASE_S + 3, 0.2)
    assert answer.status_code == 200, "the dead replica's slot never came back"


def test_keyed_requests_are_refused_while_redis_does_not_answer(tmp_path: Path) -> None:
    """Closed, not open: an uncounted key could pass every limit."""
    nowhere = start_gateway(
        tmp_path / "gateway.log", DSDEPLOY_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"
    )
    try:
        keyed = httpx.post(nowhere.base_url + CHAT, json=chat(), headers=nowhere.key(rpm=60))
        assert keyed.status_code == 503
        assert keyed.json()["error"]["code"] == "limits_unavailable"
        unlimited = nowhere.key()  # nothing to count: served
        served = httpx.post(nowhere.base_url + CHAT, json=chat(), headers=unlimited)
        assert served.status_code == 200
    finally:
        nowhere.stop()
