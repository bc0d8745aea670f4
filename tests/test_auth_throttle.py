"""Guessing keys is cut off per client address: after a few wrong credentials within the
window, that address gets 429 in the called API's shape with Retry-After before any key is
looked up, while other addresses are served; the refusals are audited. Counts live in the
limits' storage: this process's memory, or a real Redis that replicas share. The app runs
in this process behind its network guard, the client's address coming from a trusted
proxy's X-Forwarded-For, keys in a real SQLite store."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from dsdeploy.bench.launch import free_port
from dsdeploy.gateway.app import create_app
from dsdeploy.gateway.audit import RequestAudit
from dsdeploy.gateway.auth import AuthConfig
from dsdeploy.security.audit import AuditLog
from dsdeploy.security.audit_writer import AuditWriter
from dsdeploy.security.auth_throttle import FailedAuthThrottle
from dsdeploy.security.db import open_database, sqlite_url
from dsdeploy.security.key_cache import KeyCache
from dsdeploy.security.keys import ApiKey, KeyStore
from dsdeploy.security.limits import Limiter
from dsdeploy.settings import GatewaySettings, SecuritySettings
from tests.gateway_server import stub_pool
from tests.real_servers import redis_url

__all__ = ["redis_url"]

ATTACKER = "203.0.113.9"
NEIGHBOUR = "198.51.100.4"
PROXY = ("127.0.0.1", 50000)
SECURITY = SecuritySettings(trusted_proxies=["127.0.0.1"], allowed_hosts=["testserver"])


class CountingStore(KeyStore):
    """The real store, counting the lookups a presented key causes."""

    lookups = 0

    def verify(self, presented: str) -> ApiKey | None:
        self.lookups += 1
        return super().verify(presented)


@dataclass
class Throttled:
    client: TestClient
    store: CountingStore
    key: str
    wrong: str
    writer: AuditWriter
    audit_db: Path

    def call(
        self, address: str, key: str | None, path: str = "/v1/models", method: str = "GET"
    ) -> httpx.Response:
        headers = {"x-forwarded-for": address}
        if key is not None:
            headers["authorization"] = f"Bearer {key}"
        body = {"model": "stub", "messages": [], "max_tokens": 1} if method == "POST" else None
        return self.client.request(method, path, headers=headers, json=body)

    def audited(self) -> list[tuple[str, int, str]]:
        """(client address, status, decision) of each request recorded so far."""
        self.writer.close()
        with sqlite3.connect(self.audit_db) as conn:
            query = "SELECT client_ip, status, decision FROM audit_records ORDER BY seq"
            return [tuple(row) for row in conn.execute(query)]


@contextmanager
def throttled_gateway(
    folder: Path,
    redis_url: str | None,
    *,
    failures: int = 3,
    window_s: int = 60,
    metrics_token: str | None = None,
) -> Iterator[Throttled]:
    """A gateway whose keys are looked up on every request (no cache), so each lookup
    shows; failures counted in this process's memory, or in Redis."""
    folder.mkdir(parents=True, exist_ok=True)
    counts = Limiter.from_url(redis_url, lease_s=60)
    store = CountingStore(open_database(sqlite_url(folder / "security.db")))
    _, presented = store.create("client")
    writer = AuditWriter(AuditLog.open(sqlite_url(folder / "audit.db")))
    writer.start()
    auth = AuthConfig(
        keys=KeyCache(store, ttl_s=0),
        metrics_token=None if metrics_token is None else SecretStr(metrics_token),
        throttle=FailedAuthThrottle(counts.storage, failures, window_s),
    )
    app = create_app(stub_pool(folder), GatewaySettings(), (), auth, SECURITY, RequestAudit(writer))
    wrong = presented[:-6] + "AAAAAA"
    try:
        with TestClient(app, client=PROXY) as client:
            yield Throttled(client, store, presented, wrong, writer, folder / "audit.db")
            client.portal.call(counts.aclose)  # type: ignore[union-attr]
    finally:
        writer.close()
        store.close()


def test_wrong_keys_from_one_address_are_cut_off_with_429_before_any_lookup(
    tmp_path: Path,
) -> None:
    with throttled_gateway(tmp_path, None) as gateway:
        for _ in range(3):
            assert gateway.call(ATTACKER, gateway.wrong).status_code == 401
        looked_up = gateway.store.lookups

        refused = gateway.call(ATTACKER, gateway.wrong)
        assert refused.status_code == 429
        error = refused.json()["error"]
        assert (error["type"], error["code"]) == ("rate_limit_error", "too_many_failed_attempts")
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.headers["x-request-id"].startswith("req_")
        # Whatever the address sends now, its keys are not looked up: not even a valid one.
        assert gateway.call(ATTACKER, gateway.key).status_code == 429
        anthropic = gateway.call(ATTACKER, gateway.wrong, "/v1/messages", "POST")
        assert anthropic.status_code == 429
        assert anthropic.json()["error"]["type"] == "rate_limit_error"
        assert gateway.store.lookups == looked_up

        assert gateway.call(NEIGHBOUR, gateway.key).status_code == 200
        records = gateway.audited()
    assert records[:3] == [(ATTACKER, 401, "unauthenticated")] * 3
    assert records[3:6] == [(ATTACKER, 429, "auth_throttled")] * 3
    assert records[6] == (NEIGHBOUR, 200, "allowed")


def test_an_address_may_try_again_once_its_failures_leave_the_window(tmp_path: Path) -> None:
    with throttled_gateway(tmp_path, None, failures=2, window_s=1) as gateway:
        for _ in range(2):
            assert gateway.call(ATTACKER, gateway.wrong).status_code == 401
        refused = gateway.call(ATTACKER, gateway.key)
        assert refused.status_code == 429
        time.sleep(int(refused.headers["retry-after"]) + 0.1)
        assert gateway.call(ATTACKER, gateway.key).status_code == 200


def test_a_missing_key_is_not_a_guess_and_does_not_count(tmp_path: Path) -> None:
    with throttled_gateway(tmp_path, None, failures=2) as gateway:
        for _ in range(5):
            assert gateway.call(ATTACKER, None).status_code == 401
        assert gateway.call(ATTACKER, gateway.key).status_code == 200


def test_metrics_token_guesses_are_throttled_too(tmp_path: Path) -> None:
    with throttled_gateway(tmp_path, None, metrics_token="m-token") as gateway:
        for _ in range(3):
            assert gateway.call(ATTACKER, "guess", "/metrics").status_code == 401
        assert gateway.call(ATTACKER, "m-token", "/metrics").status_code == 429


def test_replicas_sharing_a_redis_share_the_count(tmp_path: Path, redis_url: str) -> None:
    """Guesses spread over two replicas are counted together: the third one, sent to the
    second replica, is already one too many."""
    with (
        throttled_gateway(tmp_path / "a", redis_url, failures=2) as first,
        throttled_gateway(tmp_path / "b", redis_url, failures=2) as second,
    ):
        assert first.call(ATTACKER, first.wrong).status_code == 401
        assert second.call(ATTACKER, second.wrong).status_code == 401
        assert second.call(ATTACKER, second.key).status_code == 429
        assert first.call(ATTACKER, first.key).status_code == 429
        assert second.call(NEIGHBOUR, second.key).status_code == 200


def test_a_store_that_does_not_answer_stops_the_counting_not_the_api(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The key check still runs: guesses fail, a valid key is served, and the operator is
    told once."""
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    with throttled_gateway(tmp_path, nowhere, failures=1) as gateway:
        for _ in range(3):
            assert gateway.call(ATTACKER, gateway.wrong).status_code == 401
        assert gateway.call(ATTACKER, gateway.key).status_code == 200
    refusals = [r for r in caplog.records if "cannot be counted" in r.getMessage()]
    assert len(refusals) == 1
