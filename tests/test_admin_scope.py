"""The operator routes (/ps, and /metrics when it has no token of its own) need an admin
key: another valid key gets 403 in the API's error shape, no key 401; the APIs take either
kind. The app runs in this process, as seen from this machine, keys in a real SQLite
store."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from dsdeploy.gateway.app import create_app
from dsdeploy.gateway.auth import AuthConfig
from dsdeploy.gateway.context import RequestContext
from dsdeploy.security.db import open_database, sqlite_url
from dsdeploy.security.key_cache import KeyCache
from dsdeploy.security.keys import KeyStore
from dsdeploy.settings import GatewaySettings
from tests.gateway_server import stub_pool
from tests.test_auth import Contexts, bearer


@dataclass
class Gateway:
    client: TestClient
    contexts: Contexts
    user: str
    admin: str


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    folder = tmp_path_factory.mktemp("admin")
    store = KeyStore(open_database(sqlite_url(folder / "security.db")))
    _, user = store.create("client")
    _, admin = store.create("operator", scope="admin")
    app = create_app(stub_pool(folder), GatewaySettings(), auth=AuthConfig(KeyCache(store, 5.0)))
    contexts = Contexts(app)
    with TestClient(contexts, client=("127.0.0.1", 50000)) as client:
        yield Gateway(client, contexts, user, admin)
    store.close()


@pytest.mark.parametrize("path", ["/ps", "/metrics"])
def test_an_operator_route_refuses_a_user_key_with_403_and_serves_an_admin_key(
    gateway: Gateway, path: str
) -> None:
    refused = gateway.client.get(path, headers=bearer(gateway.user))
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("permission_error", "admin_key_required")
    assert "keys create --admin" in error["message"]
    ctx: RequestContext = gateway.contexts.seen[-1]
    assert (ctx.decision, ctx.status) == ("forbidden_scope", 403)

    anonymous = gateway.client.get(path)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"

    served = gateway.client.get(path, headers=bearer(gateway.admin))
    assert served.status_code == 200, served.text
    assert gateway.contexts.seen[-1].decision == "allowed"


def test_the_api_takes_user_and_admin_keys_alike(gateway: Gateway) -> None:
    for key in (gateway.user, gateway.admin):
        listed = gateway.client.get("/v1/models", headers=bearer(key))
        assert listed.status_code == 200
        assert [card["id"] for card in listed.json()["data"]] == ["stub"]


def test_a_user_key_learns_nothing_of_the_engines_from_the_refusal(gateway: Gateway) -> None:
    refused = gateway.client.get("/ps", headers=bearer(gateway.user))
    assert "stub" not in refused.text and "models" not in refused.json()
