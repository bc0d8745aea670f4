"""The gateway is closed by default: every route of the live app, and any route added
later, needs a valid key; refusals are 401s in the called API's shape that never repeat the
key; a key's model allowlist holds before an engine is leased. The app runs in front of
stub engines (real processes on Unix sockets), with keys in a real SQLite store."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect

from dsdeploy.gateway.app import create_app
from dsdeploy.gateway.auth import PUBLIC_PATHS, AuthConfig
from dsdeploy.gateway.context import RequestContext
from dsdeploy.runtime.pool import EnginePool, ModelSpec
from dsdeploy.runtime.supervisor import Supervisor
from dsdeploy.security.db import open_database, sqlite_url
from dsdeploy.security.key_cache import KeyCache
from dsdeploy.security.keys import ApiKey, KeyStore
from dsdeploy.settings import GatewaySettings
from tests.stub_engine import StubEngine, stub_supervisor

CHAT_A = {"model": "a", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
CHAT_B = {**CHAT_A, "model": "b"}
MESSAGE_B = {**CHAT_B, "max_tokens": 4}


class Contexts:
    """Outside the app: keeps each request's context once it is answered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.seen: list[RequestContext] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
        if scope["type"] == "http":
            self.seen.append(scope["state"]["ctx"])


@dataclass
class Gateway:
    app: FastAPI
    client: TestClient
    store: KeyStore
    pool: EnginePool
    contexts: Contexts
    key: ApiKey
    presented: str
    """A key for every model."""
    key_a: ApiKey
    presented_a: str
    """A key for model ``a`` only."""
    revoked: str
    expired: str


def stub_spec(folder: Path, name: str) -> ModelSpec:
    (folder / name).mkdir(parents=True, exist_ok=True)

    def make() -> Supervisor:
        return stub_supervisor(StubEngine(), folder / name)

    return ModelSpec(name, make, 100 * 2**20, slots=2)


def build_gateway(folder: Path, metrics_token: str | None = None) -> Iterator[Gateway]:
    store = KeyStore(open_database(sqlite_url(folder / "security.db")))
    key, presented = store.create("everything")
    key_a, presented_a = store.create("only-a", ["a"])
    revoked_key, revoked = store.create("revoked")
    store.revoke(revoked_key.id)
    _, expired = store.create("expired", expires_at=time.time() - 1)
    pool = EnginePool(
        [stub_spec(folder, "a"), stub_spec(folder, "b")],
        budget_bytes=2**30,
        keep_alive_s=None,
        load_wait_s=30,
    )
    auth = AuthConfig(
        keys=KeyCache(store, ttl_s=5.0),
        metrics_token=None if metrics_token is None else SecretStr(metrics_token),
    )
    app = create_app(pool, GatewaySettings(), auth=auth)
    contexts = Contexts(app)
    with TestClient(contexts) as client:
        client.portal.call(pool.start)  # type: ignore[union-attr]
        try:
            yield Gateway(
                app,
                client,
                store,
                pool,
                contexts,
                key,
                presented,
                key_a,
                presented_a,
                revoked,
                expired,
            )
        finally:
            client.portal.call(pool.stop)  # type: ignore[union-attr]
            store.close()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    yield from build_gateway(tmp_path_factory.mktemp("gateway"))


def bearer(key: str | bytes) -> dict[str, Any]:
    return {"authorization": b"Bearer " + (key if isinstance(key, bytes) else key.encode())}


def bad_credentials(gateway: Gateway) -> dict[str, dict[str, Any]]:
    wrong = gateway.presented[:-6] + "AAAAAA"
    return {
        "none": {},
        "wrong": bearer(wrong),
        "wrong x-api-key": {"x-api-key": wrong},
        "revoked": bearer(gateway.revoked),
        "expired": {"x-api-key": gateway.expired},
        "empty": bearer(""),
        "oversized": bearer("dsk-" + "x" * 10_000),
        "non-ascii": bearer("dsk-ключ.секрет".encode()),
        "another scheme": {"authorization": "Basic " + gateway.presented},
    }


def flat_routes(routes: Sequence[BaseRoute], prefix: str = "") -> Iterator[tuple[str, Route]]:
    """FastAPI keeps an included router as one entry; its routes are inside it."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            inner_prefix = prefix + getattr(route.include_context, "prefix", "")  # type: ignore[attr-defined]
            yield from flat_routes(included.routes, inner_prefix)
        else:
            assert isinstance(route, Route), route
            yield prefix + route.path, route


def every_route(app: FastAPI) -> list[tuple[str, str]]:
    """Each (method, path) of the live app, parameters filled in, and an unknown path."""
    found = [("GET", "/no/such/path"), ("POST", "/no/such/path")]
    for path, route in flat_routes(app.routes):
        filled = re.sub(r"\{[^}]+\}", "a", path)
        found += [(method, filled) for method in sorted(route.methods or ())]
    return found


def assert_refused(response: Any, method: str, path: str, presented: bytes) -> None:
    assert response.status_code == 401, (method, path, response.status_code)
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["x-request-id"].startswith("req_")
    if method == "HEAD":
        return
    body = response.json()
    if path.startswith("/v1/messages"):
        assert body["type"] == "error"
        assert body["error"]["type"] == "authentication_error"
    else:
        assert set(body["error"]) == {"message", "type", "param", "code"}
        assert body["error"]["code"] == "invalid_api_key"
    secret = presented.rsplit(b".", 1)[-1][-20:]
    assert not secret or secret not in response.content


def test_every_route_and_method_refuses_every_bad_credential(gateway: Gateway) -> None:
    routes = every_route(gateway.app)
    assert ("POST", "/v1/messages") in routes and ("GET", "/v1/models") in routes
    assert len(routes) >= 18
    answered = []
    for method, path in routes:
        if path in PUBLIC_PATHS:
            continue
        for headers in bad_credentials(gateway).values():
            response = gateway.client.request(method, path, headers=headers, json=CHAT_A)
            sent = b"".join(
                value if isinstance(value, bytes) else value.encode() for value in headers.values()
            )
            presented = re.sub(rb"^(Bearer|Basic) ", b"", sent)
            assert_refused(response, method, path, presented)
            answered.append(response.status_code)
    assert answered and 200 not in answered
    assert gateway.contexts.seen[-1].decision == "unauthenticated"
    assert all(state["state"] == "not loaded" for state in gateway.pool.status())


def test_a_refusal_names_at_most_the_keys_public_id(gateway: Gateway) -> None:
    wrong = gateway.presented[:-6] + "AAAAAA"
    message = gateway.client.get("/v1/models", headers=bearer(wrong)).json()["error"]["message"]
    assert f"dsk-{gateway.key.id}" in message
    assert wrong.split(".", 1)[1][:10] not in message


def test_probes_stay_public(gateway: Gateway) -> None:
    for path in PUBLIC_PATHS:
        assert gateway.client.get(path).status_code == 200


def test_a_route_added_while_serving_is_protected(gateway: Gateway) -> None:
    async def added() -> dict[str, str]:
        return {"secret": "data"}

    gateway.app.add_api_route("/v1/added-later", added, methods=["GET"])
    refused = gateway.client.get("/v1/added-later")
    assert refused.status_code == 401
    assert "secret" not in refused.text
    allowed = gateway.client.get("/v1/added-later", headers=bearer(gateway.presented))
    assert allowed.json() == {"secret": "data"}


@pytest.mark.parametrize("style", ["bearer", "x-api-key"])
def test_both_header_styles_admit_a_valid_key_and_note_it_on_the_context(
    gateway: Gateway, style: str
) -> None:
    headers = bearer(gateway.presented) if style == "bearer" else {"x-api-key": gateway.presented}
    response = gateway.client.get("/v1/models", headers=headers)
    assert response.status_code == 200
    ctx = gateway.contexts.seen[-1]
    assert ctx.key_id == gateway.key.id and ctx.key == gateway.key
    assert ctx.decision == "allowed"


def test_a_key_for_model_a_sees_and_uses_only_a(gateway: Gateway) -> None:
    only_a = bearer(gateway.presented_a)
    listed = gateway.client.get("/v1/models", headers=only_a).json()["data"]
    assert [card["id"] for card in listed] == ["a"]
    every = gateway.client.get("/v1/models", headers=bearer(gateway.presented)).json()["data"]
    assert [card["id"] for card in every] == ["a", "b"]
    assert gateway.client.get("/v1/models/b", headers=only_a).status_code == 404

    refused = gateway.client.post("/v1/chat/completions", headers=only_a, json=CHAT_B)
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "model_not_found"
    anthropic = gateway.client.post("/v1/messages", headers=only_a, json=MESSAGE_B)
    assert anthropic.status_code == 404
    assert anthropic.json()["error"]["type"] == "not_found_error"
    states = {row["model"]: row["state"] for row in gateway.pool.status()}
    assert states["b"] == "not loaded"  # refused before an engine was leased

    served = gateway.client.post("/v1/chat/completions", headers=only_a, json=CHAT_A)
    assert served.status_code == 200, served.text
    assert served.json()["choices"]


def test_metrics_take_their_own_token_and_not_an_api_key(tmp_path: Path) -> None:
    for gateway in build_gateway(tmp_path, metrics_token="metrics-secret"):

        async def metrics() -> dict[str, int]:
            return {"requests": 1}

        gateway.app.add_api_route("/metrics", metrics, methods=["GET"])
        client = gateway.client
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers=bearer(gateway.presented)).status_code == 401
        assert client.get("/metrics", headers=bearer("metrics-secret")).status_code == 200
        assert client.get("/v1/models", headers=bearer("metrics-secret")).status_code == 401


def test_without_a_key_store_the_api_is_open_and_metrics_still_need_their_token(
    tmp_path: Path,
) -> None:
    pool = EnginePool(
        [stub_spec(tmp_path, "a")], budget_bytes=2**30, keep_alive_s=None, load_wait_s=30
    )
    app = create_app(pool, GatewaySettings(), auth=AuthConfig(metrics_token=SecretStr("m")))
    with TestClient(app) as client:
        assert client.get("/v1/models").status_code == 200
        assert client.get("/metrics").status_code == 401


def test_the_first_key_created_closes_an_open_gateway(tmp_path: Path) -> None:
    store = KeyStore(open_database(sqlite_url(tmp_path / "security.db")))
    pool = EnginePool(
        [stub_spec(tmp_path, "a")], budget_bytes=2**30, keep_alive_s=None, load_wait_s=30
    )
    app = create_app(pool, GatewaySettings(), auth=AuthConfig(keys=KeyCache(store, ttl_s=0.2)))
    with TestClient(app) as client:
        assert client.get("/v1/models").status_code == 200
        _, presented = store.create("first")
        time.sleep(0.3)
        assert client.get("/v1/models").status_code == 401
        assert client.get("/v1/models", headers=bearer(presented)).status_code == 200
    store.close()


def test_a_key_in_steady_use_is_checked_in_the_background_not_on_its_requests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = KeyStore(open_database(sqlite_url(tmp_path / "security.db")))
    key, presented = store.create("steady")
    store.create("another")  # keeps keys required once the first is revoked
    pool = EnginePool(
        [stub_spec(tmp_path, "a")], budget_bytes=2**30, keep_alive_s=None, load_wait_s=30
    )
    cache = KeyCache(store, ttl_s=0.4)
    asked_on_requests: list[str] = []
    verify = cache.verify

    def counted_verify(presented: str) -> ApiKey | None:
        asked_on_requests.append(presented)
        return verify(presented)

    monkeypatch.setattr(cache, "verify", counted_verify)
    app = create_app(pool, GatewaySettings(), auth=AuthConfig(keys=cache))
    with TestClient(app) as client:
        for _ in range(15):  # 1.5 s: almost 4 TTLs
            assert client.get("/v1/models", headers=bearer(presented)).status_code == 200
            time.sleep(0.1)
        store.revoke(key.id)
        time.sleep(0.45)
        assert client.get("/v1/models", headers=bearer(presented)).status_code == 401
    assert len(asked_on_requests) == 2  # the first request, and the one after the revoke
    store.close()


def test_a_broken_key_database_refuses_with_503_not_an_open_door(tmp_path: Path) -> None:
    store = KeyStore(open_database(sqlite_url(tmp_path / "security.db")))
    _, presented = store.create("alice")
    pool = EnginePool(
        [stub_spec(tmp_path, "a")], budget_bytes=2**30, keep_alive_s=None, load_wait_s=30
    )
    app = create_app(pool, GatewaySettings(), auth=AuthConfig(keys=KeyCache(store, ttl_s=0)))
    with TestClient(app, raise_server_exceptions=False) as client:
        with store.engine.begin() as connection:
            connection.execute(sqlalchemy.text("DROP TABLE api_keys"))
        for headers in ({}, bearer(presented)):
            refused = client.get("/v1/models", headers=headers)
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "auth_unavailable"
            assert "security.db" not in refused.text
    store.close()


def test_a_websocket_without_a_key_is_closed_before_any_route_sees_it(gateway: Gateway) -> None:
    with pytest.raises(WebSocketDisconnect) as closed, gateway.client.websocket_connect("/v1/ws"):
        pass
    assert closed.value.code == 1008
