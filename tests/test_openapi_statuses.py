"""/openapi.json lists every status the gateway answers on each operation, in the path's
error shape: the route table is walked and each operation is sent what makes the network
guard, the key check, the failed-attempt throttle, the limits, the body cap and the routes
refuse; every status seen must be documented, and every documented error seen (but the
few named below, which need a real socket or cannot happen here)."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from fastapi import FastAPI
from fastapi.testclient import TestClient

from dsdeploy.gateway.app import create_app
from dsdeploy.gateway.auth import AuthConfig
from dsdeploy.gateway.limits import LimitsHook
from dsdeploy.runtime.pool import EnginePool, ModelSpec
from dsdeploy.runtime.supervisor import Supervisor
from dsdeploy.security.auth_throttle import FailedAuthThrottle
from dsdeploy.security.db import open_database, sqlite_url
from dsdeploy.security.key_cache import KeyCache
from dsdeploy.security.keys import KeyStore
from dsdeploy.security.limits import Limiter
from dsdeploy.settings import GatewaySettings, SecuritySettings
from tests.stub_engine import StubEngine, stub_supervisor
from tests.test_auth import flat_routes

CLIENT = "198.51.100.5"
GUESSER = "198.51.100.66"
FOREIGN = "192.0.2.1"
NOT_PROVOKED = {
    "408": "a body that trickles in needs a real socket (tests/test_limits.py)",
    "422": "FastAPI's own, for parameters; no string parameter fails it",
}

EVERY_ENDPOINTS_FIELDS = {
    "messages": [{"role": "user", "content": "hi"}],
    "max_tokens": 1,
    "prompt": "hi",
    "input": "hi",
    "content": "hi",
    "tokens": [1],
}
"""A body every API endpoint accepts (each ignores the others' fields)."""

OWN_BODIES = {("/health", "503"), ("/health/ready", "503")}
"""Answers in the probe's own shape (a status and a reason), not an API error."""

Observed = dict[tuple[str, str], set[str]]


def spec(folder: Path, name: str, planned_bytes: int, pinned: bool) -> ModelSpec:
    def make() -> Supervisor:
        return stub_supervisor(StubEngine(), folder)

    return ModelSpec(name, make, planned_bytes, slots=1, pinned=pinned)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[FastAPI, KeyStore, dict[str, str]]]:
    """``huge`` is pinned and can never fit the budget: its requests are 503, and so is
    /health (no pinned model runs). Keys are looked up on every request (no cache)."""
    store = KeyStore(open_database(sqlite_url(tmp_path / "security.db")))
    keys = {
        "user": store.create("user")[1],
        "admin": store.create("admin", scope="admin")[1],
        "limited": store.create("limited", rpm=1)[1],
    }
    keys["wrong"] = keys["user"][:-6] + "AAAAAA"
    pool = EnginePool(
        [spec(tmp_path, "stub", 2**20, False), spec(tmp_path, "huge", 2**40, True)],
        budget_bytes=2**30,
        keep_alive_s=None,
        load_wait_s=5,
    )
    security = SecuritySettings(
        allow_ips=[CLIENT, GUESSER],
        trusted_proxies=["127.0.0.1"],
        allowed_hosts=["testserver"],
        cors_origins=["https://app.example"],
    )
    limiter = Limiter.from_url(None, lease_s=60)
    auth = AuthConfig(
        keys=KeyCache(store, ttl_s=0),
        throttle=FailedAuthThrottle(limiter.storage, failures=1, window_s=60),
    )
    settings = GatewaySettings(max_body_bytes=1024)
    created = create_app(pool, settings, [LimitsHook(security, limiter)], auth, security)
    yield created, store, keys
    store.close()


def operations(app: FastAPI) -> Iterator[tuple[str, str]]:
    for path, route in flat_routes(app.routes):
        if getattr(route, "include_in_schema", False):
            for method in sorted(route.methods or ()):
                if method != "HEAD":
                    yield method, path


def requests_for(
    method: str, keys: dict[str, str]
) -> Iterator[tuple[str, str | None, dict[str, str], Any]]:
    """(client address, key, extra headers, body) of each provocation, in order."""
    valid = {"model": "nope", **EVERY_ENDPOINTS_FIELDS}
    yield CLIENT, None, {}, None  # 401
    yield FOREIGN, keys["user"], {}, None  # 403 from the allowlist
    yield CLIENT, keys["user"], {"host": "rebound.example"}, None  # 421
    yield GUESSER, keys["wrong"], {}, None  # 401, counted
    yield GUESSER, keys["user"], {}, None  # 429 before the lookup
    yield CLIENT, keys["user"], {}, valid  # 403 on operator routes; 404 unknown model
    yield CLIENT, keys["admin"], {}, valid
    if method == "POST":
        yield CLIENT, keys["user"], {}, b"{not json"  # 400
        yield CLIENT, keys["user"], {}, {**valid, "pad": "x" * 2048}  # 413
        yield CLIENT, keys["user"], {}, {**valid, "model": "huge"}  # 503: cannot fit
        yield CLIENT, keys["limited"], {}, valid  # 429 once its minute is used


def send(
    client: TestClient, method: str, path: str, request: tuple[Any, ...], query: str = ""
) -> int:
    address, key, headers, body = request
    headers = {"x-forwarded-for": address, **headers}
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    url = re.sub(r"\{[^}]+\}", "nope", path) + query
    if isinstance(body, bytes):
        return client.request(method, url, headers=headers, content=body).status_code
    return client.request(method, url, headers=headers, json=body).status_code


def walk(app: FastAPI, store: KeyStore, keys: dict[str, str]) -> Observed:
    seen: Observed = defaultdict(set)
    with TestClient(app, client=("127.0.0.1", 50000)) as client:
        for method, path in operations(app):
            for request in requests_for(method, keys):
                status = send(client, method, path, request, "?model=nope")  # readiness: 404
                seen[method, path].add(str(status))
        app.state.drain.begin()  # readiness: 503
        with store.engine.begin() as connection:  # every key check: 503 (Anthropic 529)
            connection.execute(sqlalchemy.text("DROP TABLE api_keys"))
        for method, path in operations(app):
            seen[method, path].add(str(send(client, method, path, (CLIENT, None, {}, None))))
    return seen


def test_every_status_an_operation_answers_is_in_the_api_document(
    app: tuple[FastAPI, KeyStore, dict[str, str]],
) -> None:
    gateway, store, keys = app
    document = gateway.openapi()
    seen = walk(gateway, store, keys)
    assert ("POST", "/v1/messages") in seen and ("GET", "/ps") in seen
    for (method, path), statuses in seen.items():
        responses = document["paths"][path][method.lower()]["responses"]
        documented = set(responses) - {"200"}
        errors = statuses - {"200"}
        assert errors <= documented, (method, path, errors - documented)
        assert documented - errors <= set(NOT_PROVOKED), (method, path, documented - errors)


def test_each_documented_error_has_its_apis_error_body(
    app: tuple[FastAPI, KeyStore, dict[str, str]],
) -> None:
    gateway, _, _ = app
    document = gateway.openapi()
    components = document["components"]["schemas"]
    for path, item in document["paths"].items():
        expected = "AnthropicErrorBody" if path.startswith("/v1/messages") else "OpenAIErrorBody"
        for operation in item.values():
            for status, answer in operation["responses"].items():
                if status in ("200", "422") or (path, status) in OWN_BODIES:
                    continue
                schema = answer["content"]["application/json"]["schema"]
                assert schema.get("title", schema.get("$ref", "")).endswith(expected), (
                    path,
                    status,
                )
    assert {"OpenAIErrorDetail", "AnthropicErrorDetail"} <= set(components)
    messages = document["paths"]["/v1/messages"]["post"]["responses"]
    assert "529" in messages and "503" not in messages
